/**
 * Commands run inside a guest and files read from it, through qemu-ga's guest-exec and
 * guest-file-* commands. The guest is untrusted: every field of every reply is checked, sizes
 * are bounded before anything is decoded, and a reply that does not fit is a clear guest_error.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { TernError } from '../../errors.ts';
import {
  defaultExecOutputBytes,
  defaultFileReadBytes,
  type GuestExecRequest,
  type GuestExecResult,
  maxExecOutputBytes,
} from '../../wire/guest-command.ts';
import type { GuestAgent } from './qga-commands.ts';
import * as qga from './qga-commands.ts';

const base64Length = (bytes: number) => Math.ceil(bytes / 3) * 4;
/** qemu-ga keeps at most 16 MiB of each stream: a status reply carries at most both, in base64. */
const statusReplyBytes = 2 * base64Length(maxExecOutputBytes) + 64 * 1024;
/** A file is read in chunks whose base64 fits the guest agent's ordinary reply bound. */
export const fileChunkBytes = 256 * 1024;

const isBase64 = (s: string) => s.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(s);
const isInt = (v: unknown, min: number, max: number): v is number =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;

function hostile(vm: string, what: string): TernError {
  return new TernError('guest_error', `the guest agent of VM ${vm} sent ${what}`);
}

/** The guest agent's refusal of a command it was told not to run, named as such. */
function blocked(vm: string, command: string, err: unknown): unknown {
  if (!(err instanceof TernError) || err.details?.class !== 'CommandNotFound') return err;
  return new TernError(
    'conflict',
    `the guest agent of VM ${vm} does not allow ${command} (${err.message}): it was started with that command blocked (qemu-ga --block-rpcs, --allow-rpcs without it, or its configuration file); allow ${command} in the guest to use this`,
    { command },
  );
}

async function ping(ga: GuestAgent, vm: string): Promise<void> {
  try {
    await qga.ping(ga, { timeoutMs: 3000 });
  } catch (err) {
    throw new TernError(
      'unavailable',
      `the guest agent of VM ${vm} does not answer (${(err as Error).message}): is qemu-ga running in the guest?`,
    );
  }
}

/** One captured stream: at most `max` bytes kept, decoded from no more base64 than that needs. */
function stream(vm: string, raw: unknown, truncatedRaw: unknown, name: string, max: number) {
  if (raw !== undefined && typeof raw !== 'string') throw hostile(vm, `a ${name} that is not a string`);
  if (truncatedRaw !== undefined && typeof truncatedRaw !== 'boolean')
    throw hostile(vm, `a ${name} truncation flag that is not a boolean`);
  const data = raw ?? '';
  if (data.length > base64Length(maxExecOutputBytes)) throw hostile(vm, `a ${name} beyond qemu-ga's bound`);
  if (!isBase64(data)) throw hostile(vm, `a ${name} that is not base64`);
  const keep = data.slice(0, base64Length(max));
  const bytes = Buffer.from(keep, 'base64').subarray(0, max);
  const cut = keep.length < data.length || Buffer.byteLength(keep, 'base64') > max;
  return { data: bytes.toString('base64'), truncated: truncatedRaw === true || cut };
}

/**
 * Runs `req.command` in the guest and waits for it to end, polling with backoff up to the
 * timeout. A command still running then is reported with its pid: qemu-ga (7.2) cannot end it.
 */
export async function guestExec(ga: GuestAgent, vm: string, req: GuestExecRequest): Promise<GuestExecResult> {
  const [path, ...args] = req.command;
  const timeoutMs = (req.timeoutSeconds ?? 30) * 1000;
  const maxOutput = req.maxOutputBytes ?? defaultExecOutputBytes;
  await ping(ga, vm);
  const started = Date.now();
  let reply: unknown;
  try {
    reply = await qga.exec(ga, path, args, req.input);
  } catch (err) {
    const e = blocked(vm, qga.commandNames.exec, err);
    if (e !== err) throw e;
    if (err instanceof TernError && err.code === 'guest_error')
      throw new TernError('guest_error', `VM ${vm} could not start ${path}: ${err.message}`);
    throw err;
  }
  const pid = (reply as { pid?: unknown } | null)?.pid;
  if (!isInt(pid, 1, 2 ** 31 - 1)) throw hostile(vm, 'a guest-exec reply without a valid pid');
  const deadline = started + timeoutMs;
  for (let wait = 10; ; wait = Math.min(wait * 2, 1000)) {
    let status: unknown;
    try {
      status = await qga.execStatus(ga, pid, statusReplyBytes);
    } catch (err) {
      throw blocked(vm, qga.commandNames.execStatus, err);
    }
    if (typeof status !== 'object' || status === null || Array.isArray(status))
      throw hostile(vm, 'a guest-exec-status reply that is not an object');
    const s = status as Record<string, unknown>;
    if (typeof s.exited !== 'boolean') throw hostile(vm, 'a guest-exec-status reply without `exited`');
    if (s.exited) {
      const { exitcode, signal } = s;
      if (exitcode !== undefined && !isInt(exitcode, -(2 ** 31), 2 ** 31 - 1))
        throw hostile(vm, 'an exit code that is not a 32-bit integer');
      if (signal !== undefined && !isInt(signal, 0, 255)) throw hostile(vm, 'a signal number out of range');
      const out = stream(vm, s['out-data'], s['out-truncated'], 'stdout', maxOutput);
      const err = stream(vm, s['err-data'], s['err-truncated'], 'stderr', maxOutput);
      return {
        exitCode: exitcode ?? null,
        signal: signal ?? null,
        stdout: out.data,
        stderr: err.data,
        stdoutTruncated: out.truncated,
        stderrTruncated: err.truncated,
        pid,
        durationMs: Date.now() - started,
      };
    }
    const left = deadline - Date.now();
    if (left <= 0)
      throw new TernError(
        'timeout',
        `${path} did not end within ${timeoutMs / 1000} s in VM ${vm}; it keeps running there as pid ${pid}: the guest agent cannot end a command (qemu-ga has no command for that), so end it from inside, e.g. \`tern vm exec ${vm} -- kill ${pid}\``,
        { pid },
      );
    await delay(Math.min(wait, left));
  }
}

/**
 * Reads a file of the guest, chunk by chunk, refusing one longer than `maxBytes`. The guest's
 * file handle is closed whatever happens (qemu-ga keeps open handles until it restarts).
 */
export async function guestFileRead(
  ga: GuestAgent,
  vm: string,
  path: string,
  maxBytes = defaultFileReadBytes,
): Promise<Buffer> {
  await ping(ga, vm);
  let handle: unknown;
  try {
    handle = await qga.fileOpen(ga, path);
  } catch (err) {
    const e = blocked(vm, qga.commandNames.fileOpen, err);
    if (e !== err) throw e;
    if (err instanceof TernError && err.code === 'guest_error')
      throw new TernError(
        /No such file or directory/.test(err.message) ? 'not_found' : 'guest_error',
        `VM ${vm} cannot open ${path}: ${err.message}`,
      );
    throw err;
  }
  if (!isInt(handle, 0, Number.MAX_SAFE_INTEGER))
    throw hostile(vm, 'a guest-file-open reply that is not a handle');
  const chunks: Buffer[] = [];
  let total = 0;
  let idle = 0;
  try {
    for (;;) {
      const r = await qga.fileRead(ga, handle, fileChunkBytes);
      if (typeof r !== 'object' || r === null)
        throw hostile(vm, 'a guest-file-read reply that is not an object');
      const { count, 'buf-b64': b64, eof } = r as Record<string, unknown>;
      if (!isInt(count, 0, fileChunkBytes)) throw hostile(vm, 'a read count out of range');
      if (typeof eof !== 'boolean') throw hostile(vm, 'a guest-file-read reply without `eof`');
      if (typeof b64 !== 'string' || b64.length > base64Length(fileChunkBytes) || !isBase64(b64))
        throw hostile(vm, 'file data that is not base64');
      const bytes = Buffer.from(b64, 'base64');
      if (bytes.length !== count) throw hostile(vm, `${bytes.length} bytes of file data, saying ${count}`);
      total += count;
      if (total > maxBytes)
        throw new TernError(
          'payload_too_large',
          `${path} in VM ${vm} is larger than ${maxBytes} bytes; read it with a larger bound (--max-bytes)`,
          { maxBytes },
        );
      chunks.push(bytes);
      if (eof) break;
      // A guest that keeps answering "nothing yet" would keep us here for ever.
      idle = count === 0 ? idle + 1 : 0;
      if (idle >= 3) throw hostile(vm, 'empty reads without an end of file');
    }
  } finally {
    await qga.fileClose(ga, handle).catch(() => {});
  }
  return Buffer.concat(chunks);
}
