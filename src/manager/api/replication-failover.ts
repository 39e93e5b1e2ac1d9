/** /api/v1/replications/{replication}/…: test, planned and unplanned failovers, each a task. */
import { emptyBodyAsObject } from '../../http/errors.ts';
import { replicationFailoverRoutes as routes } from '../../wire/api/replication-failover.ts';
import { submitFailover } from '../replication/failover-submit.ts';
import { submitTestFailover, submitTestStop } from '../replication/test-failover.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function replicationFailoverRoutes(app: App, s: ApiServices): void {
  const opts = { preValidation: emptyBodyAsObject };
  serve(
    app,
    routes.testFailover,
    'replication.write',
    async (req, reply) => {
      const owner = req.principal?.userId ?? null;
      const task = await submitTestFailover(
        s,
        { testFailover: s.kinds.replicationTestFailover, testStop: s.kinds.replicationTestStop },
        req.params.replication,
        req.body ?? {},
        owner,
      );
      return accepted(reply, task);
    },
    opts,
  );
  serve(app, routes.testStop, 'replication.write', async (req, reply) =>
    accepted(
      reply,
      await submitTestStop(
        s,
        { testFailover: s.kinds.replicationTestFailover, testStop: s.kinds.replicationTestStop },
        req.params.replication,
      ),
    ),
  );
  serve(
    app,
    routes.failover,
    'replication.write',
    async (req, reply) => {
      const { task, risk } = await submitFailover(
        s,
        s.kinds.replicationFailover,
        req.params.replication,
        req.body ?? {},
      );
      // A forced failover's risk stays in the audit log beside who took it.
      if (risk) req.auditDetail = `forced: ${risk}`.slice(0, 2000);
      return accepted(reply, task, risk ? { warning: risk } : {});
    },
    opts,
  );
}
