import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { rejectsWith } from '../../testing.ts';
import { QmpClient, type QmpEvent } from './qmp.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qmp-'));
// Every fake server is closed at the end even when a test fails half-way, so the process can exit.
const fakes = new Set<{ close: () => Promise<void> }>();
after(async () => {
  for (const f of fakes) await f.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

let socketCount = 0;
const socketPath = () => path.join(dir, `s${++socketCount}.sock`);

const greeting = {
  QMP: { version: { qemu: { major: 8, minor: 2, micro: 1 }, package: 'Debian' }, capabilities: ['oob'] },
};

interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
}

interface FakeConn {
  socket: net.Socket;
  send: (msg: unknown) => void;
}

/** Returns true when it handled the command; otherwise the fake answers `{"return": {}}`. */
type Handler = (cmd: QmpCommand, conn: FakeConn) => boolean | undefined;

interface FakeQmp {
  path: string;
  commands: QmpCommand[];
  connections: net.Socket[];
  /** Resolves with the first command of that name (already received or still to come). */
  seen: (name: string) => Promise<QmpCommand>;
  /** Resolves when the count-th connection has been closed by the client (1-based). */
  disconnected: (count: number) => Promise<void>;
  close: () => Promise<void>;
}

/** A QMP server speaking just enough of the protocol for the client, scriptable per test. */
async function fakeQmp(opts: { greeting?: unknown | null; onCommand?: Handler } = {}): Promise<FakeQmp> {
  const file = socketPath();
  const commands: QmpCommand[] = [];
  const connections: net.Socket[] = [];
  const closed: Array<Promise<void>> = [];
  const watchers: Array<{ name: string; resolve: (c: QmpCommand) => void }> = [];
  const server = net.createServer((socket) => {
    connections.push(socket);
    closed.push(once(socket, 'close').then(() => undefined));
    socket.on('error', () => {});
    const conn: FakeConn = {
      socket,
      send: (msg) => {
        if (!socket.destroyed) socket.write(`${JSON.stringify(msg)}\n`);
      },
    };
    const hello = opts.greeting === undefined ? greeting : opts.greeting;
    if (hello !== null) conn.send(hello);
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const cmd = JSON.parse(line) as QmpCommand;
        commands.push(cmd);
        for (const w of watchers.filter((x) => x.name === cmd.execute)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(cmd);
        }
        if (opts.onCommand?.(cmd, conn)) continue;
        conn.send({ return: {}, id: cmd.id });
      }
    });
  });
  server.listen(file);
  await once(server, 'listening');
  const fake: FakeQmp = {
    path: file,
    commands,
    connections,
    seen: (name) => {
      const done = commands.find((c) => c.execute === name);
      if (done) return Promise.resolve(done);
      return new Promise((resolve) => watchers.push({ name, resolve }));
    },
    disconnected: async (count) => {
      while (closed.length < count) await once(server, 'connection');
      await closed[count - 1];
    },
    close: async () => {
      for (const s of connections) s.destroy();
      fakes.delete(fake);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  fakes.add(fake);
  return fake;
}

test('handshake: greeting, qmp_capabilities first, version parsed', async () => {
  const fake = await fakeQmp();
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    assert.equal(client.version, '8.2.1');
    assert.equal(client.closed, false);
    assert.equal(fake.commands[0].execute, 'qmp_capabilities');
    assert.equal(typeof fake.commands[0].id, 'number');
    const status = await client.execute('query-status');
    assert.deepEqual(status, {});
    assert.deepEqual(
      fake.commands.map((c) => c.execute),
      ['qmp_capabilities', 'query-status'],
    );
  } finally {
    client.close();
    await fake.close();
  }
});

test('a greeting without a version still connects', async () => {
  const fake = await fakeQmp({ greeting: { QMP: { capabilities: [] } } });
  const client = await QmpClient.connect(fake.path, 2000);
  assert.equal(client.version, 'unknown');
  client.close();
  await fake.close();
});

test('arguments are sent and replies are matched by id even out of order', async () => {
  const held: Array<{ cmd: QmpCommand; conn: FakeConn }> = [];
  const fake = await fakeQmp({
    onCommand: (cmd, conn) => {
      if (cmd.execute !== 'slow' && cmd.execute !== 'fast') return false;
      held.push({ cmd, conn });
      if (held.length === 2) {
        // Both received: answer in reverse order.
        for (const h of [...held].reverse()) {
          h.conn.send({ return: { name: h.cmd.execute, echo: h.cmd.arguments }, id: h.cmd.id });
        }
      }
      return true;
    },
  });
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    const slow = client.execute('slow', { n: 1 });
    const fast = client.execute('fast', { n: 2 });
    assert.deepEqual(await slow, { name: 'slow', echo: { n: 1 } });
    assert.deepEqual(await fast, { name: 'fast', echo: { n: 2 } });
    const ids = held.map((h) => h.cmd.id);
    assert.equal(new Set(ids).size, 2, 'each command carries its own id');
  } finally {
    client.close();
    await fake.close();
  }
});

test('an error reply becomes a hypervisor_error carrying the desc and class', async () => {
  const fake = await fakeQmp({
    onCommand: (cmd, conn) => {
      if (cmd.execute !== 'device_del') return false;
      conn.send({ error: { class: 'DeviceNotFound', desc: "Device 'disk9' not found" }, id: cmd.id });
      return true;
    },
  });
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    const err = await rejectsWith(
      client.execute('device_del', { id: 'disk9' }),
      'hypervisor_error',
      /disk9' not found/,
    );
    assert.match(err.message, /device_del/);
    assert.deepEqual(err.details, { qmpClass: 'DeviceNotFound' });
    assert.deepEqual(await client.execute('query-status'), {});
  } finally {
    client.close();
    await fake.close();
  }
});

test('a command without a reply times out; later commands still work and a late reply is ignored', async () => {
  let hung: QmpCommand | null = null;
  const fake = await fakeQmp({
    onCommand: (cmd, conn) => {
      if (cmd.execute === 'hang') {
        hung = cmd;
        return true;
      }
      if (cmd.execute === 'after' && hung) {
        // The late answer to the timed-out command comes first and must not be taken for this one.
        conn.send({ return: 'late', id: hung.id });
        conn.send({ return: 'fresh', id: cmd.id });
        return true;
      }
      return false;
    },
  });
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    const started = Date.now();
    await rejectsWith(client.execute('hang', undefined, 100), 'timeout', /hang/);
    assert.ok(Date.now() - started >= 90);
    assert.equal(await client.execute('after'), 'fresh');
    assert.equal(client.closed, false);
  } finally {
    client.close();
    await fake.close();
  }
});

test('events are emitted and waitForEvent resolves on the matching one', async () => {
  const fake = await fakeQmp({
    onCommand: (cmd, conn) => {
      if (cmd.execute !== 'emit') return false;
      const timestamp = { seconds: 1700000000, microseconds: 1 };
      conn.send({ event: 'RESUME', data: {}, timestamp });
      conn.send({ event: 'BLOCK_JOB_COMPLETED', data: { device: 'other' }, timestamp });
      conn.send({ event: 'BLOCK_JOB_COMPLETED', data: { device: 'job1', len: 5 }, timestamp });
      conn.send({ return: {}, id: cmd.id });
      return true;
    },
  });
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    const seen: string[] = [];
    client.on('event', (e: QmpEvent) => seen.push(e.event));
    const job = client.waitForEvent('BLOCK_JOB_COMPLETED', 2000, (e) => e.data.device === 'job1');
    const resume = client.waitForEvent('RESUME', 2000);
    await client.execute('emit');
    assert.deepEqual((await job).data, { device: 'job1', len: 5 });
    assert.equal((await resume).timestamp.seconds, 1700000000);
    assert.deepEqual(seen, ['RESUME', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_COMPLETED']);
    await rejectsWith(client.waitForEvent('SHUTDOWN', 50), 'timeout', /SHUTDOWN/);
    // The waiters removed their listeners.
    assert.equal(client.listenerCount('event'), 1);
    assert.equal(client.listenerCount('close'), 0);
  } finally {
    client.close();
    await fake.close();
  }
});

test('the server closing the connection rejects pending commands and waiters and emits close', async () => {
  const fake = await fakeQmp({
    onCommand: (cmd) => cmd.execute === 'hang',
  });
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    const closed = once(client, 'close');
    const pending = client.execute('hang');
    const waiting = client.waitForEvent('SHUTDOWN', 5000);
    await fake.seen('hang');
    fake.connections[0].destroy();
    await rejectsWith(pending, 'hypervisor_error', /closed during hang/);
    await rejectsWith(waiting, 'hypervisor_error', /SHUTDOWN/);
    await closed;
    assert.equal(client.closed, true);
    await rejectsWith(client.execute('query-status'), 'hypervisor_error', /closed/);
  } finally {
    client.close();
    await fake.close();
  }
});

test('close() rejects pending commands and emits close once', async () => {
  const fake = await fakeQmp({ onCommand: (cmd) => cmd.execute === 'hang' });
  const client = await QmpClient.connect(fake.path, 2000);
  let closes = 0;
  client.on('close', () => closes++);
  const pending = client.execute('hang');
  await fake.seen('hang');
  client.close();
  client.close();
  await rejectsWith(pending, 'hypervisor_error');
  await fake.disconnected(1);
  assert.equal(closes, 1);
  await fake.close();
});

test('a peer that sends no greeting makes connect time out', async () => {
  const fake = await fakeQmp({ greeting: null });
  const started = Date.now();
  await rejectsWith(QmpClient.connect(fake.path, 150), 'timeout', /greeting/);
  assert.ok(Date.now() - started < 2000);
  await fake.disconnected(1);
  await fake.close();
});

test('a peer whose first message is not a greeting is a protocol error', async () => {
  const fake = await fakeQmp({ greeting: { return: {} } });
  await rejectsWith(QmpClient.connect(fake.path, 2000), 'protocol_error');
  await fake.disconnected(1);
  await fake.close();
});

test('a peer that greets but never answers qmp_capabilities: connect fails within its timeout and hangs up', async () => {
  const fake = await fakeQmp({ onCommand: (cmd) => cmd.execute === 'qmp_capabilities' });
  const started = Date.now();
  await rejectsWith(QmpClient.connect(fake.path, 150), 'timeout', /qmp_capabilities/);
  assert.ok(Date.now() - started < 2000);
  // The half-open connection is not left behind (QEMU serves one monitor client at a time).
  await fake.disconnected(1);
  await fake.close();
});

test('nothing listening on the path is a hypervisor_error', async () => {
  await rejectsWith(
    QmpClient.connect(path.join(dir, 'absent.sock'), 500),
    'hypervisor_error',
    /cannot connect/,
  );
});

test('an oversized line does not crash the client: pending commands fail and the monitor can be reopened', async () => {
  const fake = await fakeQmp({
    onCommand: (cmd, conn) => {
      if (cmd.execute !== 'query-qmp-schema') return false;
      // One line just over the 16 MiB reader limit.
      conn.socket.write(`{"return": "${'x'.repeat(16 * 1024 * 1024)}", "id": ${cmd.id}}\n`);
      return true;
    },
  });
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    const closed = once(client, 'close');
    await rejectsWith(client.execute('query-qmp-schema'), 'hypervisor_error');
    await closed;
    assert.equal(client.closed, true);
    const again = await QmpClient.connect(fake.path, 2000);
    assert.deepEqual(await again.execute('query-status'), {});
    again.close();
  } finally {
    client.close();
    await fake.close();
  }
});

test('malformed output from the monitor closes the client cleanly', async () => {
  const fake = await fakeQmp({
    onCommand: (cmd, conn) => {
      if (cmd.execute !== 'garble') return false;
      conn.socket.write('{"return": nonsense\n');
      return true;
    },
  });
  const client = await QmpClient.connect(fake.path, 2000);
  try {
    await rejectsWith(client.execute('garble'), 'hypervisor_error');
    assert.equal(client.closed, true);
  } finally {
    client.close();
    await fake.close();
  }
});

const qemuBinary = 'qemu-system-x86_64';
const haveQemu = spawnSync(qemuBinary, ['--version'], { stdio: 'ignore' }).status === 0;

test('against a real QEMU: query-status, query-version, quit', {
  skip: !haveQemu && `${qemuBinary} not installed`,
}, async () => {
  const sock = path.join(dir, 'q.sock');
  let child: ChildProcess | null = null;
  let client: QmpClient | null = null;
  try {
    child = spawn(
      qemuBinary,
      ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', `unix:${sock},server=on,wait=off`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const exited = once(child, 'exit');
    const deadline = Date.now() + 5000;
    // QEMU creates its monitor socket shortly after starting; wait for the file, bounded.
    while (!fs.existsSync(sock)) {
      assert.equal(child.exitCode, null, `QEMU exited early: ${stderr}`);
      assert.ok(Date.now() < deadline, `QEMU did not create ${sock} within 5 s: ${stderr}`);
      await delay(20);
    }
    for (;;) {
      try {
        client = await QmpClient.connect(sock, Math.max(100, deadline - Date.now()));
        break;
      } catch (err) {
        if (Date.now() >= deadline) throw err;
        await delay(20);
      }
    }
    assert.match(client.version, /^\d+\.\d+\.\d+$/);
    const status = await client.execute<{ status: string; running: boolean }>('query-status');
    assert.equal(typeof status.status, 'string');
    assert.equal(typeof status.running, 'boolean');
    const version = await client.execute<{ qemu: { major: number; minor: number; micro: number } }>(
      'query-version',
    );
    assert.equal(client.version, `${version.qemu.major}.${version.qemu.minor}.${version.qemu.micro}`);
    await rejectsWith(client.execute('no-such-command'), 'hypervisor_error', /no-such-command/);
    const closed = once(client, 'close');
    // QEMU may hang up before or after answering quit; either is fine, the close is what matters.
    await client.execute('quit').catch(() => undefined);
    await closed;
    assert.equal(client.closed, true);
    await exited;
  } finally {
    client?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
});
