/**
 * `tern vm exec` and `tern vm file get`: a command run in a VM's guest, a file read from it.
 *
 * The guest's bytes go out as they are into a pipe or a file, so scripts get exactly what the
 * guest wrote. Into a terminal, control characters are written out visibly (as everywhere in
 * the CLI: a guest must not drive the user's terminal with escape sequences) unless `--raw`.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import { vmGuestRoutes } from '../../wire/api/vm-guest.ts';
import { type GuestExecResult, maxExecInputBytes } from '../../wire/guest-command.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printable, printJson } from '../output.ts';

/** Guest bytes onto a stream: as they are, unless a terminal would act on them. */
function writeGuestBytes(stream: NodeJS.WriteStream, bytes: Buffer, raw: boolean): void {
  if (bytes.length === 0) return;
  if (raw || !stream.isTTY) stream.write(bytes);
  else stream.write(printable(bytes.toString('utf8')));
}

function readInput(file: string): string {
  const bytes = fs.readFileSync(file === '-' ? 0 : file);
  if (bytes.length > maxExecInputBytes)
    throw new TernError(
      'invalid_request',
      `--input is ${bytes.length} bytes; a command takes at most ${maxExecInputBytes} on its stdin`,
    );
  return bytes.toString('base64');
}

const maxBytes = (flags: Flags) => {
  const v = flags['max-bytes'];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1)
    throw new TernError('invalid_request', '--max-bytes takes a whole number');
  return Number(v);
};

/**
 * Runs the command and answers its exit code, for the CLI to exit with: a command ended by a
 * signal gives 128 + the signal, as shells do; one still running at the timeout 124.
 */
export async function vmExecCommand(api: ApiClient, args: string[], flags: Flags): Promise<number> {
  const [vm, ...command] = args;
  if (!vm || command.length === 0)
    throw new TernError(
      'invalid_request',
      'usage: tern vm exec VM [--timeout S] [--input FILE|-] [--max-bytes N] [--raw] -- CMD ARGS…',
    );
  const timeoutSeconds = flags.timeout === undefined ? undefined : Number(flags.timeout);
  let r: GuestExecResult;
  try {
    // The answer comes when the command ends: wait for its timeout, and a minute more.
    r = await api.callWithin((timeoutSeconds ?? 30) * 1000 + 60_000, vmGuestRoutes.exec, {
      params: { vm },
      body: {
        command,
        ...(flags.input !== undefined ? { input: readInput(flags.input) } : {}),
        ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
        ...(maxBytes(flags) !== undefined ? { maxOutputBytes: maxBytes(flags) } : {}),
      },
    });
  } catch (err) {
    // As timeout(1) does: scripts can tell a command that ran too long from one that failed.
    if (!(err instanceof TernError) || err.code !== 'timeout') throw err;
    process.stderr.write(`tern: ${printable(err.message, true)}\n`);
    return 124;
  }
  if (flags.output === 'json') printJson(r);
  else {
    writeGuestBytes(process.stdout, Buffer.from(r.stdout, 'base64'), flags.raw);
    writeGuestBytes(process.stderr, Buffer.from(r.stderr, 'base64'), flags.raw);
    for (const [name, cut] of [
      ['stdout', r.stdoutTruncated],
      ['stderr', r.stderrTruncated],
    ] as const)
      if (cut) process.stderr.write(`tern: the command's ${name} was cut short (--max-bytes)\n`);
  }
  return r.exitCode ?? 128 + (r.signal ?? 0);
}

export async function vmFileCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [op, vm, file] = args;
  if (op !== 'get' || !vm || !file || args.length !== 3)
    throw new TernError(
      'invalid_request',
      'usage: tern vm file get VM PATH [--out FILE] [--max-bytes N] [--raw]',
    );
  if (flags.out && fs.existsSync(flags.out))
    throw new TernError('conflict', `${flags.out} exists; give a new file`);
  const bytes = await api.callBytes(vmGuestRoutes.readFile, {
    params: { vm },
    body: { path: file, ...(maxBytes(flags) !== undefined ? { maxBytes: maxBytes(flags) } : {}) },
  });
  if (!flags.out) return writeGuestBytes(process.stdout, bytes, flags.raw);
  fs.writeFileSync(flags.out, bytes, { flag: 'wx' });
  if (flags.output === 'json') printJson({ vm, path: file, file: flags.out, bytes: bytes.length });
  else process.stderr.write(`wrote ${file} of ${vm} to ${flags.out} (${bytes.length} bytes)\n`);
}
