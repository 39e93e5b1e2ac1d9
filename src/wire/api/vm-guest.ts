/**
 * /api/v1/vms/{vm}/exec and /files/read: a command run in a VM's guest and a file read from it,
 * through the guest agent. Interactive and bounded in time and size, so they answer at once
 * rather than through a task (nothing changes in Tern's inventory); both are audited with what
 * was run or read, never with the input given.
 */
import { VmRef } from '../api/vms.ts';
import { ErrorBody } from '../common.ts';
import { GuestExecRequest, GuestExecResult, GuestFileReadRequest } from '../guest-command.ts';
import { route } from '../route.ts';

const errors = {
  400: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  502: ErrorBody,
  503: ErrorBody,
  504: ErrorBody,
};

export const vmGuestRoutes = {
  exec: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/exec',
    summary:
      'Run a command in the guest through its guest agent and wait for it to end (no shell: give one, e.g. ["sh", "-c", "…"])',
    tags: ['vm guest'],
    params: VmRef,
    body: GuestExecRequest,
    reply: { 200: GuestExecResult, ...errors },
  }),
  readFile: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/files/read',
    summary: 'Read a file of the guest through its guest agent; the answer is its bytes',
    tags: ['vm guest'],
    params: VmRef,
    body: GuestFileReadRequest,
    reply: errors,
    rawReply: {
      contentType: 'application/octet-stream',
      description: "the file's bytes as they are in the guest",
    },
  }),
};
