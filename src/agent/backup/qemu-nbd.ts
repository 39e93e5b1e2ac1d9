/**
 * A disk image served over NBD on a unix socket by `qemu-nbd`, for as long as one client uses
 * it: how a restore writes onto a volume no VM runs from (and how a stopped VM's disk is read).
 * `--fork` returns once the socket listens, so nothing waits on a guess; without
 * `--persistent` the server ends when its client disconnects, so an agent that dies mid-way
 * leaves no server holding the image's lock.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { TernError } from '../../errors.ts';

const run = promisify(execFile);

export interface ServedImage {
  socket: string;
  exportName: string;
  /** Ends the server (if the client's disconnect has not) and waits until it is gone. */
  close(): Promise<void>;
}

export interface ServeOptions {
  format: 'qcow2' | 'raw';
  readOnly: boolean;
  /** A persistent dirty bitmap of the image to export (`qemu:dirty-bitmap:NAME`). */
  bitmap?: string;
}

export async function serveImage(file: string, o: ServeOptions): Promise<ServedImage> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-nbd-'));
  const socket = path.join(dir, 'nbd.sock');
  const pidFile = path.join(dir, 'pid');
  const exportName = 'disk';
  const args = ['--fork', `--pid-file=${pidFile}`, '-k', socket, '-x', exportName, '-f', o.format];
  if (o.readOnly) args.push('--read-only');
  // Zeroes written to a fresh image stay holes; writes go through the host's cache, flushed at the end.
  else args.push('--discard=unmap', '--cache=writeback');
  if (o.bitmap) args.push('-B', o.bitmap);
  try {
    await run('qemu-nbd', [...args, file], { timeout: 60_000 });
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    const stderr = String((err as { stderr?: string }).stderr ?? '').trim();
    throw new TernError(
      'storage_error',
      `qemu-nbd could not serve ${file}: ${stderr || (err as Error).message}`,
    );
  }
  const pid = Number(await fs.readFile(pidFile, 'utf8'));
  return {
    socket,
    exportName,
    close: async () => {
      await stopProcess(pid);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Whether the server is still there. A zombie is not: it has let go of the image, and it is not
 * our child (it forked away), so it waits for whoever reaps orphans, which may take a while.
 */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** TERM, then KILL after 10 s; resolves once the process is gone (its image lock released). */
async function stopProcess(pid: number): Promise<void> {
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  // Not our child (it forked away), so there is no exit event to wait on: look, within a bound.
  for (let i = 0; i < 200 && alive(pid); i++) {
    if (i === 100) process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 50 + i));
  }
}
