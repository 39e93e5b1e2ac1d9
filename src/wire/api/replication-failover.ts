/**
 * Failovers of a replicated VM (docs/replication.md, Failover), each a task: a test failover
 * (a copy of a recovery point on an isolated network while replication goes on) and its stop;
 * a planned failover (the primary shut down, its last changes sent, the replica started) and
 * an unplanned one (the replica started on a point chosen, only when the primary cannot run).
 * A relationship is named by its VM or by its id.
 */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { PointId } from '../replication.ts';
import { route } from '../route.ts';
import { Task, TaskAccepted } from '../task.ts';

const Ref = Type.Object({
  replication: Type.String({
    minLength: 1,
    maxLength: 63,
    description: 'the VM name, or the replication id',
  }),
});
const reply = { 202: TaskAccepted, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const tags = ['replication'];

export const TestFailoverBody = Type.Object(
  {
    point: Type.Optional(
      Type.Union([PointId, Type.Literal('latest')], { description: 'default: the newest' }),
    ),
    network: Type.Optional(
      Type.String({
        ...Name,
        description:
          'an isolated network for the copy; default: a new one named <vm>-test, removed with the test',
      }),
    ),
  },
  { additionalProperties: false },
);

export const FailoverBody = Type.Object(
  {
    planned: Type.Optional(
      Type.Boolean({
        description: 'shut the primary down and send its last changes first: nothing is lost',
      }),
    ),
    point: Type.Optional(
      Type.Union([PointId, Type.Literal('latest')], { description: 'unplanned only; default: the newest' }),
    ),
    force: Type.Optional(
      Type.Boolean({
        description:
          'planned: power the primary off if it does not shut down in time; unplanned: fail over although the primary is not confirmed stopped (the risk is logged and audited)',
      }),
    ),
    noReverse: Type.Optional(
      Type.Boolean({
        description:
          "planned: do not start reverse replication (from the new primary back to the old one's host)",
      }),
    ),
    shutdownTimeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
  },
  { additionalProperties: false },
);

/** A failover accepted; a forced one says its risk. */
export const FailoverAccepted = Type.Object({
  task: Task,
  warning: Type.Optional(Type.String({ description: "a forced failover's risk, as logged and audited" })),
});

export const replicationFailoverRoutes = {
  testFailover: route({
    method: 'POST',
    path: '/api/v1/replications/:replication/test-failover',
    summary:
      "Start a copy of a recovery point on the replica's host, on an isolated network; replication goes on",
    tags,
    params: Ref,
    body: Type.Optional(TestFailoverBody),
    reply,
  }),
  testStop: route({
    method: 'POST',
    path: '/api/v1/replications/:replication/test-stop',
    summary: "Stop a test failover: its copy and overlays go, the replica's points stay as they were",
    tags,
    params: Ref,
    reply,
  }),
  failover: route({
    method: 'POST',
    path: '/api/v1/replications/:replication/failover',
    summary: 'Fail over to the replica: planned (no write lost) or unplanned (a point chosen)',
    tags,
    params: Ref,
    body: Type.Optional(FailoverBody),
    reply: { ...reply, 202: FailoverAccepted },
  }),
};
