/**
 * The HA watchdog process (see watchdog.ts for the protocol): `watchdog-main.ts <ha dir>
 * [--idle-exit-ms N]`. Deliberately minimal — Node built-ins only, no framework, no logger
 * library — so that what keeps the fence when the agent hangs has as little as possible that
 * could hang itself. Every message is validated; bad input gets an error reply, never a crash.
 */
import fs from 'node:fs';
import net from 'node:net';
import { maxLineBytes, type ProtectedProcess, type WatchdogStatus, watchdogPaths } from './watchdog.ts';

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const maxVms = 10_000;
const maxTimeoutMs = 3_600_000;

type Message = { disarm: true } | { timeoutMs: number; vms: ProtectedProcess[] };

/** Returns the message, or why it is refused. */
function parseMessage(line: string): Message | string {
  let m: unknown;
  try {
    m = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not a JSON object';
  const o = m as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(',');
  if (keys === 'disarm') return o.disarm === true ? { disarm: true } : 'disarm must be true';
  if (keys !== 'timeoutMs,vms') return 'expected {timeoutMs, vms} or {disarm: true}';
  if (
    !Number.isInteger(o.timeoutMs) ||
    (o.timeoutMs as number) < 1 ||
    (o.timeoutMs as number) > maxTimeoutMs
  ) {
    return `timeoutMs must be an integer from 1 to ${maxTimeoutMs}`;
  }
  if (!Array.isArray(o.vms) || o.vms.length > maxVms) return `vms must be an array of at most ${maxVms}`;
  const vms: ProtectedProcess[] = [];
  for (const v of o.vms as unknown[]) {
    const e = v as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || typeof e.id !== 'string' || !uuid.test(e.id)) {
      return 'every vm needs an id (a UUID)';
    }
    if (!Number.isInteger(e.pid) || (e.pid as number) < 2 || (e.pid as number) > 2 ** 22) {
      return `vm ${e.id}: pid must be an integer from 2 to ${2 ** 22}`;
    }
    vms.push({ id: e.id, pid: e.pid as number });
  }
  return { timeoutMs: o.timeoutMs as number, vms };
}

function main(): void {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: watchdog-main.ts <ha dir> [--idle-exit-ms N]\n');
    process.exit(2);
  }
  const idleArg = process.argv.indexOf('--idle-exit-ms');
  const idleExitMs = idleArg > 0 ? Number(process.argv[idleArg + 1]) : 60_000;
  const paths = watchdogPaths(dir);

  const log = (msg: string, fields: Record<string, unknown> = {}) => {
    try {
      fs.appendFileSync(paths.log, `${JSON.stringify({ time: new Date().toISOString(), msg, ...fields })}\n`);
    } catch {
      // A full disk must not stop the watchdog from acting.
    }
  };
  // Whatever goes wrong, the watchdog keeps its timer: dying would leave the host unfenced.
  process.on('uncaughtException', (err) => log('unexpected error', { error: String(err?.stack ?? err) }));

  let deadline: number | null = null;
  let timer: NodeJS.Timeout | null = null;
  let protectedVms: ProtectedProcess[] = [];
  let fired = 0;
  let clients = 0;
  let idleTimer: NodeJS.Timeout | null = null;

  const status = (error?: string): WatchdogStatus => ({
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    armed: deadline !== null,
    remainingMs: deadline === null ? null : Math.max(0, Math.round(deadline - performance.now())),
    fired,
  });

  const disarm = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    deadline = null;
    protectedVms = [];
  };

  const fire = () => {
    const vms = protectedVms;
    const late = deadline === null ? 0 : Math.round(performance.now() - deadline);
    disarm();
    fired++;
    log('not fed in time: fencing the protected VMs', { vms: vms.length, lateMs: late });
    for (const vm of vms) {
      let cmdline: string;
      try {
        cmdline = fs.readFileSync(`/proc/${vm.pid}/cmdline`, 'utf8');
      } catch {
        log('already gone', { vm: vm.id, pid: vm.pid });
        continue;
      }
      // A pid is recycled once its process is reaped; only the QEMU of that VM names it.
      if (!cmdline.includes(vm.id) || vm.pid === process.pid) {
        log('pid is no longer the VM; not killed', { vm: vm.id, pid: vm.pid });
        continue;
      }
      try {
        process.kill(vm.pid, 'SIGKILL');
        log('killed', { vm: vm.id, pid: vm.pid });
      } catch (err) {
        log('cannot kill', { vm: vm.id, pid: vm.pid, error: (err as Error).message });
      }
    }
    idleCheck();
  };

  const handle = (line: string): WatchdogStatus => {
    const m = parseMessage(line);
    if (typeof m === 'string') {
      log('refused a message', { why: m });
      return status(m);
    }
    if ('disarm' in m) {
      if (deadline !== null) log('disarmed');
      disarm();
    } else if (m.vms.length === 0) {
      // Nothing to protect is the same as disarmed, and nothing to log when the time comes.
      disarm();
    } else {
      if (deadline === null) log('armed', { timeoutMs: m.timeoutMs, vms: m.vms.length });
      if (timer) clearTimeout(timer);
      protectedVms = m.vms;
      deadline = performance.now() + m.timeoutMs;
      timer = setTimeout(fire, m.timeoutMs);
    }
    idleCheck();
    return status();
  };

  // A disarmed watchdog no agent talks to has nothing to do; an armed one never leaves.
  const idleCheck = () => {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = null;
    if (deadline !== null || clients > 0) return;
    idleTimer = setTimeout(() => {
      log('idle and disarmed: exiting');
      cleanUp();
      process.exit(0);
    }, idleExitMs);
  };

  const server = net.createServer((sock) => {
    clients++;
    idleCheck();
    let buf = '';
    let refused = false;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (refused) return;
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const reply = handle(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        sock.write(`${JSON.stringify(reply)}\n`);
      }
      if (buf.length > maxLineBytes) {
        log('refused an over-long line');
        refused = true;
        buf = '';
        sock.end(`${JSON.stringify(status(`line longer than ${maxLineBytes} bytes`))}\n`);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clients--;
      idleCheck();
    });
    sock.write(`${JSON.stringify(status())}\n`);
  });

  const cleanUp = () => {
    try {
      if (fs.readFileSync(paths.pidfile, 'utf8').trim() === String(process.pid)) {
        fs.rmSync(paths.pidfile, { force: true });
        fs.rmSync(paths.socket, { force: true });
      }
    } catch {}
  };

  const ready = () => {
    fs.chmodSync(paths.socket, 0o600);
    fs.writeFileSync(paths.pidfile, `${process.pid}\n`);
    log('listening', { socket: paths.socket, watchdogPid: process.pid });
    // Said once, then stdout is closed, so no later write can fail on a pipe whose reader
    // (the agent that started us) is long gone.
    process.stdout.end('ready\n');
    idleCheck();
  };

  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  server.once('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EADDRINUSE') {
      log('cannot listen', { error: err.message });
      process.exit(1);
    }
    // One watchdog per state directory: if the socket answers, that one keeps the watch.
    const probe = net.createConnection(paths.socket);
    probe.once('connect', () => {
      probe.destroy();
      process.stdout.end('running\n', () => process.exit(0));
    });
    probe.once('error', () => {
      // A socket left behind by a watchdog that died.
      fs.rmSync(paths.socket, { force: true });
      server.once('error', (e) => {
        log('cannot listen', { error: e.message });
        process.exit(1);
      });
      server.listen(paths.socket, ready);
    });
  });
  server.listen(paths.socket, ready);
}

main();
