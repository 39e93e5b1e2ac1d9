/** /api/v1/events: server-sent events of task progress and VM changes, optionally filtered. */
import { eventRoutes as routes } from '../../wire/api/events.ts';
import type { ManagerEvent } from '../../wire/event.ts';
import { principalOf, seesAllVms } from '../auth/principal.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

const maxBufferedBytes = 4 * 1024 * 1024;

export function eventRoutes(app: App, s: ApiServices): void {
  serve(app, routes.stream, 'event.read', async (req, reply) => {
    const { task, vm } = req.query;
    const p = principalOf(req);
    // Self-service users hear of their own VMs and tasks only.
    const mine = seesAllVms(p)
      ? null
      : new Set(
          (
            await s.db
              .selectFrom('vms')
              .select('id')
              .where('ownerId', '=', p.userId ?? '-')
              .execute()
          ).map((r) => r.id),
        );
    const allowed = (e: ManagerEvent) => {
      if (!mine) return true;
      if (e.type === 'vm') {
        if (p.userId !== null && e.vm.ownerId === p.userId) mine.add(e.vm.id);
        return mine.has(e.vm.id);
      }
      if (e.type === 'vm.deleted') return mine.has(e.id);
      if (e.type === 'task') return e.task.requestedBy !== null && e.task.requestedBy === p.userId;
      return false;
    };
    const wanted = (e: ManagerEvent) => {
      if (!allowed(e)) return false;
      if (task) return e.type === 'task' && e.task.id === task;
      if (vm) return (e.type === 'vm' && e.vm.id === vm) || (e.type === 'vm.deleted' && e.id === vm);
      return true;
    };
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    // HEAD asks whether the stream is there, not for the stream.
    if (req.method === 'HEAD') return void reply.raw.end();
    reply.raw.write(': connected\n\n');
    const unsubscribe = s.bus.subscribe((e) => {
      if (!wanted(e)) return;
      reply.raw.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      // A client that does not read would make us buffer without end: drop it instead.
      if (reply.raw.writableLength > maxBufferedBytes) reply.raw.destroy();
    });
    const keepalive = setInterval(() => reply.raw.write(': keepalive\n\n'), 15_000);
    req.raw.on('close', () => {
      clearInterval(keepalive);
      unsubscribe();
    });
  });
}
