/**
 * The files a VM's QEMU leaves on the host (runtime directory, sockets, pidfile, logs) and the
 * checks on its process: is the pid alive, and is it still our QEMU rather than a recycled pid.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { TernError } from '../../errors.ts';
import type { RuntimePaths } from './command-line.ts';

export interface VmPaths extends RuntimePaths {
  runDir: string;
  spec: string;
  qemuLog: string;
  /** Present while we are stopping QEMU on purpose, so a later agent knows the exit was wanted. */
  quitting: string;
  /** Block nodes of disks that moved to another volume while the VM ran (see blockNodes). */
  nodes: string;
  /** The guest's boots this QEMU has seen, kept so an agent restart does not count afresh. */
  boots: string;
}

/** Unix socket paths are limited to 107 bytes by the kernel. */
const maxSocketPath = 107;

export function vmPaths(stateDir: string, id: string): VmPaths {
  const runDir = path.join(stateDir, 'run', id);
  const logDir = path.join(stateDir, 'logs', id);
  const p: VmPaths = {
    runDir,
    spec: path.join(runDir, 'spec.json'),
    qmp: path.join(runDir, 'qmp.sock'),
    qga: path.join(runDir, 'qga.sock'),
    serial: path.join(runDir, 'serial.sock'),
    pidfile: path.join(runDir, 'qemu.pid'),
    quitting: path.join(runDir, 'quitting'),
    nodes: path.join(runDir, 'nodes.json'),
    boots: path.join(runDir, 'boots'),
    consoleLog: path.join(logDir, 'console.log'),
    qemuLog: path.join(logDir, 'qemu.log'),
  };
  if (Buffer.byteLength(p.serial) > maxSocketPath) {
    throw new TernError('invalid_request', `agent state directory ${stateDir} is too long for unix sockets`);
  }
  return p;
}

/** The boots recorded for a VM's QEMU; 0 when there is no record (one from an older agent). */
export function readBoots(file: string): number {
  try {
    const n = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
    return Number.isInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function writeBoots(file: string, boots: number): void {
  fs.writeFileSync(`${file}.new`, String(boots));
  fs.renameSync(`${file}.new`, file);
}

/**
 * Marks QEMU as ending on purpose, before it is asked to, so that a later agent that finds it
 * gone knows the exit was wanted; `released` when the VM lives on another host now and no
 * record of it is kept here.
 */
export function writeQuitting(file: string, released: boolean): void {
  fs.writeFileSync(file, released ? releasedMark : '');
}

/** Why QEMU was ending on purpose (writeQuitting), or null when it was not. */
export function readQuitting(file: string): 'stopped' | 'released' | null {
  if (!fs.existsSync(file)) return null;
  return fs.readFileSync(file, 'utf8') === releasedMark ? 'released' : 'stopped';
}

const releasedMark = 'released';

export function tailFile(file: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

export function lastLines(file: string, n: number): string {
  return tailFile(file, 16 * 1024)
    .trimEnd()
    .split('\n')
    .slice(-n)
    .join('\n');
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Our QEMU, not a recycled pid: its command line names the VM's QMP socket. */
export function isOurQemu(pid: number, qmpPath: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(qmpPath);
  } catch {
    return false;
  }
}

/** The VM's QEMU (pid `pid`, ours by its QMP socket) still runs. */
export function qemuRuns(pid: number | null, qmpPath: string): pid is number {
  return pid !== null && pidAlive(pid) && isOurQemu(pid, qmpPath);
}

/**
 * Waits until the VM's QEMU is gone, asking it by SIGTERM first when `term` (it exits cleanly
 * when it can); one that is still there after 10 s is killed.
 */
export async function waitQemuEnded(pid: number, qmpPath: string, term: boolean): Promise<void> {
  if (term && qemuRuns(pid, qmpPath)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (qemuRuns(pid, qmpPath)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      break;
    }
    await delay(5);
  }
}

export function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
