/**
 * Every qemu-ga (guest agent) command Tern sends, each wrapped once: callers never spell a
 * command name. The guest is untrusted, so replies stay `unknown` here; the callers check them
 * field by field (guest-info.ts, guest-exec.ts).
 */
import type { QgaClient } from './qga.ts';

/** What runs a guest agent command: the guest agent's channel (qga.ts), or a test's fake. */
export type GuestAgent = Pick<QgaClient, 'execute'>;

type Timeout = { timeoutMs?: number };

/** Names of the commands a refusal message may have to name (guest-exec.ts). */
export const commandNames = Object.freeze({
  exec: 'guest-exec',
  execStatus: 'guest-exec-status',
  fileOpen: 'guest-file-open',
});

export async function ping(ga: GuestAgent, opts?: Timeout): Promise<void> {
  await ga.execute('guest-ping', undefined, opts);
}

// --- facts (checked by guest-info.ts) --------------------------------------------------------

/** One guest fact's command; its name is what a note about a bad reply names. */
export interface GuestFact {
  command: string;
  read(ga: GuestAgent, opts?: Timeout): Promise<unknown>;
}

function fact(command: string): GuestFact {
  return { command, read: (ga, opts) => ga.execute(command, undefined, opts) };
}

/** The guest facts Tern reads. */
export const facts = Object.freeze({
  os: fact('guest-get-osinfo'),
  hostname: fact('guest-get-host-name'),
  interfaces: fact('guest-network-get-interfaces'),
  disks: fact('guest-get-disks'),
});

// --- files -----------------------------------------------------------------------------------

/** Opens a guest file for reading; the reply should be a handle. */
export function fileOpen(ga: GuestAgent, path: string): Promise<unknown> {
  return ga.execute(commandNames.fileOpen, { path, mode: 'r' });
}

/** Up to `count` bytes of an open file: `{count, buf-b64, eof}`. */
export function fileRead(ga: GuestAgent, handle: number, count: number): Promise<unknown> {
  return ga.execute('guest-file-read', { handle, count });
}

export async function fileClose(ga: GuestAgent, handle: number): Promise<void> {
  await ga.execute('guest-file-close', { handle });
}

// --- commands --------------------------------------------------------------------------------

/** Starts a program in the guest with its output captured; the reply should carry its pid. */
export function exec(ga: GuestAgent, path: string, args: string[], inputBase64?: string): Promise<unknown> {
  return ga.execute(commandNames.exec, {
    path,
    arg: args,
    'capture-output': true,
    ...(inputBase64 !== undefined ? { 'input-data': inputBase64 } : {}),
  });
}

/** Whether a started program exited, and its output; `maxReplyBytes` bounds the reply. */
export function execStatus(ga: GuestAgent, pid: number, maxReplyBytes: number): Promise<unknown> {
  return ga.execute(commandNames.execStatus, { pid }, { maxReplyBytes });
}

// --- filesystem freeze -----------------------------------------------------------------------

export async function fsfreezeFreeze(ga: GuestAgent, opts?: Timeout): Promise<void> {
  await ga.execute('guest-fsfreeze-freeze', undefined, opts);
}

export async function fsfreezeThaw(ga: GuestAgent, opts?: Timeout): Promise<void> {
  await ga.execute('guest-fsfreeze-thaw', undefined, opts);
}

/** `frozen` or `thawed`. */
export function fsfreezeStatus(ga: GuestAgent, opts?: Timeout): Promise<unknown> {
  return ga.execute('guest-fsfreeze-status', undefined, opts);
}

// --- power -----------------------------------------------------------------------------------

/**
 * The guest's own shutdown or reboot. qemu-ga answers only when it fails, so the answer is
 * awaited for `errorWithinMs`; `accepted` settling first (the guest seen going down) ends the wait.
 */
export function shutdown(
  qga: QgaClient,
  mode: 'reboot' | 'powerdown',
  opts: { errorWithinMs: number; accepted?: Promise<unknown> },
): Promise<void> {
  return qga.executeNoReply('guest-shutdown', { mode }, opts);
}
