/**
 * /api/v1/vms/{vm}/exec and /files/read: a command run in a VM's guest and a file read from it,
 * through the guest agent. Interactive and bounded in time and size, so they answer at once
 * rather than through a task (nothing changes in Tern's inventory); both are audited with what
 * was run or read, never with the input given.
 */
import { TernError } from '../../errors.ts';
import { vmGuestRoutes as routes } from '../../wire/api/vm-guest.ts';
import { forceOffFirst, refuseUnreachable } from '../vms/unreachable.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

/** The agent of a VM whose guest can be asked: running on a host. */
async function runningVm(s: ApiServices, ref: string) {
  const row = await s.store.row(ref);
  refuseUnreachable(row, forceOffFirst(row.name));
  if (row.state !== 'running' || !row.hostId)
    throw new TernError('conflict', `VM ${row.name} is ${row.state}: start it to run commands in its guest`);
  return { row, agent: s.hosts.client(row.hostId) };
}

/** An argv as one line for the audit log: each word JSON-quoted, so spaces stay visible. */
const argvText = (argv: string[]) => argv.map((a) => JSON.stringify(a)).join(' ');

export function vmGuestRoutes(app: App, s: ApiServices): void {
  serve(
    app,
    routes.exec,
    'vm.write',
    async (req) => {
      req.auditDetail = `command: ${argvText(req.body.command)}`.slice(0, 2000);
      const { row, agent } = await runningVm(s, req.params.vm);
      return agent.guestExec(row.id, req.body);
    },
    { bodyLimit: 2 * 1024 * 1024 },
  );

  serve(app, routes.readFile, 'vm.write', async (req, reply) => {
    req.auditDetail = `path: ${JSON.stringify(req.body.path)}`.slice(0, 2000);
    const { row, agent } = await runningVm(s, req.params.vm);
    const bytes = await agent.guestFileRead(row.id, req.body);
    // The bytes as they are; the response schemas describe only the error bodies.
    return reply.header('content-type', 'application/octet-stream').send(bytes as never);
  });
}
