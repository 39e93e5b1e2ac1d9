import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { rejectsWith } from '../../testing.ts';
import { maxGuestReplyBytes, QgaClient } from './qga.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qga-'));
// Every fake server is closed at the end even when a test fails half-way, so the process can exit.
const fakes = new Set<{ close: () => Promise<void> }>();
after(async () => {
  for (const f of fakes) await f.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

let socketCount = 0;
const socketPath = () => path.join(dir, `g${++socketCount}.sock`);

interface GaCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

interface GaConn {
  index: number;
  socket: net.Socket;
  /** Every byte the client sent on this connection. */
  received: Buffer[];
  write: (data: string | Buffer) => void;
  reply: (value: unknown) => void;
  /** The qemu-ga answer to guest-sync-delimited: a 0xFF sentinel, then the id. */
  syncReply: (cmd: GaCommand) => void;
}

/** Returns true when it handled the command; otherwise the fake behaves like qemu-ga. */
type GaHandler = (cmd: GaCommand, conn: GaConn) => boolean | undefined;

interface FakeAgent {
  path: string;
  /** What arrived, in order: `<connection>:ff` for a 0xFF byte, `<connection>:<command>` for a command. */
  log: string[];
  connections: GaConn[];
  /** Resolves when the count-th command of that name has arrived (1-based). */
  seen: (name: string, count?: number) => Promise<GaCommand>;
  close: () => Promise<void>;
}

/**
 * A guest agent speaking the qemu-ga wire protocol: a 0xFF byte from the host resets its parser,
 * guest-sync-delimited is answered with 0xFF followed by `{"return": id}`, other commands with
 * `{"return": {}}` unless the test's handler takes them.
 */
async function fakeAgent(onCommand?: GaHandler, onConnect?: (conn: GaConn) => void): Promise<FakeAgent> {
  const file = socketPath();
  const log: string[] = [];
  const commands: GaCommand[] = [];
  const connections: GaConn[] = [];
  const watchers: Array<{ name: string; count: number; resolve: (c: GaCommand) => void }> = [];
  const nth = (name: string, count: number) => commands.filter((c) => c.execute === name)[count - 1];
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const conn: GaConn = {
      index: connections.length,
      socket,
      received: [],
      write: (data) => {
        if (!socket.destroyed) socket.write(data);
      },
      reply: (value) => conn.write(`${JSON.stringify({ return: value })}\n`),
      syncReply: (cmd) =>
        conn.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`{"return": ${cmd.arguments?.id}}\n`)])),
    };
    connections.push(conn);
    onConnect?.(conn);
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      conn.received.push(chunk);
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const ff = pending.indexOf(0xff);
        const nl = pending.indexOf(0x0a);
        if (ff < 0 && nl < 0) break;
        if (ff >= 0 && (nl < 0 || ff < nl)) {
          // qemu-ga drops whatever partial command it was parsing.
          log.push(`${conn.index}:ff`);
          pending = pending.subarray(ff + 1);
          continue;
        }
        const line = pending.subarray(0, nl).toString('utf8').trim();
        pending = pending.subarray(nl + 1);
        if (line.length === 0) continue;
        const cmd = JSON.parse(line) as GaCommand;
        log.push(`${conn.index}:${cmd.execute}`);
        commands.push(cmd);
        for (const w of [...watchers]) {
          const hit = w.name === cmd.execute ? nth(w.name, w.count) : undefined;
          if (hit) {
            watchers.splice(watchers.indexOf(w), 1);
            w.resolve(hit);
          }
        }
        if (onCommand?.(cmd, conn)) continue;
        if (cmd.execute === 'guest-sync-delimited') conn.syncReply(cmd);
        else conn.reply({});
      }
    });
  });
  server.listen(file);
  await once(server, 'listening');
  const fake: FakeAgent = {
    path: file,
    log,
    connections,
    seen: (name, count = 1) => {
      const done = nth(name, count);
      if (done) return Promise.resolve(done);
      return new Promise((resolve) => watchers.push({ name, count, resolve }));
    },
    close: async () => {
      for (const c of connections) c.socket.destroy();
      fakes.delete(fake);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  fakes.add(fake);
  return fake;
}

/** Runs a test body against a fresh fake agent and client, closing both afterwards. */
async function withAgent(
  onCommand: GaHandler | undefined,
  body: (fake: FakeAgent, client: QgaClient, problems: string[]) => Promise<void>,
  onConnect?: (conn: GaConn) => void,
): Promise<void> {
  const fake = await fakeAgent(onCommand, onConnect);
  const problems: string[] = [];
  const client = new QgaClient(fake.path, (m) => problems.push(m));
  try {
    await body(fake, client, problems);
  } finally {
    client.close();
    await fake.close();
  }
}

const syncs = (fake: FakeAgent) => fake.log.filter((l) => l.endsWith(':guest-sync-delimited')).length;

test('the first command syncs first, preceded by a 0xFF byte; later commands do not resync', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-info') return false;
      conn.reply({ version: '8.2.0' });
      return true;
    },
    async (fake, client, problems) => {
      assert.deepEqual(await client.execute('guest-info'), { version: '8.2.0' });
      const bytes = Buffer.concat(fake.connections[0].received);
      assert.equal(bytes[0], 0xff);
      assert.deepEqual(fake.log, ['0:ff', '0:guest-sync-delimited', '0:guest-info']);
      const sync = await fake.seen('guest-sync-delimited');
      assert.equal(typeof sync.arguments?.id, 'number');
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.deepEqual(fake.log.slice(3), ['0:guest-ping']);
      assert.deepEqual(problems, []);
    },
  );
});

test('arguments are passed to the guest', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-exec-status') return false;
      conn.reply({ echoed: cmd.arguments });
      return true;
    },
    async (_fake, client) => {
      assert.deepEqual(await client.execute('guest-exec-status', { pid: 42 }), { echoed: { pid: 42 } });
    },
  );
});

test('stale output before the sync sentinel is discarded', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute === 'guest-sync-delimited') {
        // Leftovers of an earlier conversation: junk, an old reply and a partial line, then the sentinel.
        conn.write('garbage {{ not json\n');
        conn.write('{"return": 1}\n{"return": {"half": ');
        conn.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`{"return": ${cmd.arguments?.id}}\n`)]));
        return true;
      }
      if (cmd.execute === 'guest-get-host-name') {
        conn.reply({ 'host-name': 'web-1' });
        return true;
      }
      return false;
    },
    async (_fake, client, problems) => {
      assert.deepEqual(await client.execute('guest-get-host-name'), { 'host-name': 'web-1' });
      assert.deepEqual(problems, []);
    },
    // Output left in the channel before the host connected arrives on its own, ahead of any sentinel.
    (conn) => conn.write('{"return": 1}\nmore garbage\n{"ret'),
  );
});

test('stale sync replies (other ids) are skipped until the reply to this sync', async () => {
  let first = true;
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-sync-delimited' || !first) return false;
      first = false;
      conn.write(Buffer.concat([Buffer.from([0xff]), Buffer.from('{"return": 7}\n')]));
      return true;
    },
    async (fake, client) => {
      // The fake answers the first sync with a stale id only: the command times out...
      await rejectsWith(client.execute('guest-ping', undefined, { timeoutMs: 300 }), 'timeout');
      // ...and the next one resyncs, skipping nothing it should not.
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.equal(syncs(fake), 2);
    },
  );
});

test('a 100 KB string in a reply is returned as is', async () => {
  const huge = 'x'.repeat(100_000);
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-get-osinfo') return false;
      conn.reply({ 'kernel-release': huge, id: 'tern-tiny' });
      return true;
    },
    async (_fake, client, problems) => {
      const info = await client.execute<{ 'kernel-release': string; id: string }>('guest-get-osinfo');
      assert.equal(info['kernel-release'], huge);
      assert.equal(info.id, 'tern-tiny');
      assert.deepEqual(problems, []);
    },
  );
});

test('a reply line over maxGuestReplyBytes fails that command; the next one resyncs and works', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-get-osinfo') return false;
      conn.write(`{"return": {"kernel-release": "${'x'.repeat(maxGuestReplyBytes + 1000)}"}}\n`);
      return true;
    },
    async (fake, client, problems) => {
      await rejectsWith(client.execute('guest-get-osinfo'), 'guest_error', /limit/);
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.equal(syncs(fake), 2);
      assert.ok(problems.some((p) => /limit/.test(p)));
    },
  );
});

test('a malformed reply fails that command; the next one resyncs and works', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-info') return false;
      conn.write('{"return": {"version": oops}\n');
      return true;
    },
    async (fake, client, problems) => {
      await rejectsWith(client.execute('guest-info'), 'guest_error', /malformed/);
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.equal(syncs(fake), 2);
      assert.equal(problems.length, 1);
    },
  );
});

test('a reply that is not an object is rejected', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-info') return false;
      conn.write('42\n');
      return true;
    },
    async (fake, client) => {
      await rejectsWith(client.execute('guest-info'), 'guest_error', /not an object/);
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.equal(syncs(fake), 2);
    },
  );
});

test('an object without return or error is rejected', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-info') return false;
      conn.write('{"something": "else"}\n');
      return true;
    },
    async (_fake, client) => {
      await rejectsWith(client.execute('guest-info'), 'guest_error', /without return or error/);
      assert.deepEqual(await client.execute('guest-ping'), {});
    },
  );
});

test('an error reply is a guest_error with its description', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-fsfreeze-freeze') return false;
      conn.write('{"error": {"class": "GenericError", "desc": "nope"}}\n');
      return true;
    },
    async (_fake, client) => {
      await rejectsWith(client.execute('guest-fsfreeze-freeze'), 'guest_error', /nope/);
      assert.deepEqual(await client.execute('guest-ping'), {});
    },
  );
});

test('no answer times out within timeoutMs; the next command resyncs past the late reply', async () => {
  let syncCount = 0;
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute === 'guest-get-time') return true;
      if (cmd.execute === 'guest-sync-delimited' && ++syncCount === 2) {
        // The answer to the timed-out command finally arrives, just before the sentinel.
        conn.reply(1700000000000000000);
      }
      return false;
    },
    async (fake, client) => {
      await client.execute('guest-ping');
      const started = Date.now();
      await rejectsWith(
        client.execute('guest-get-time', undefined, { timeoutMs: 200 }),
        'timeout',
        /guest-get-time/,
      );
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 190 && elapsed < 1500, `timed out after ${elapsed} ms`);
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.equal(syncs(fake), 2);
    },
  );
});

test('a sync that gets no answer times out', async () => {
  await withAgent(
    (cmd) => cmd.execute === 'guest-sync-delimited',
    async (_fake, client) => {
      await rejectsWith(client.execute('guest-ping', undefined, { timeoutMs: 100 }), 'timeout', /guest-sync/);
    },
  );
});

test('a command without a success reply: silence for errorWithinMs is accepted, and the next command resyncs', async () => {
  await withAgent(
    (cmd) => cmd.execute === 'guest-shutdown',
    async (fake, client) => {
      const started = Date.now();
      await client.executeNoReply('guest-shutdown', { mode: 'powerdown' }, { errorWithinMs: 150 });
      assert.ok(Date.now() - started >= 140, 'it waited for an error that might come');
      const shutdown = await fake.seen('guest-shutdown');
      assert.deepEqual(shutdown.arguments, { mode: 'powerdown' });
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.deepEqual(fake.log, [
        '0:ff',
        '0:guest-sync-delimited',
        '0:guest-shutdown',
        '0:ff',
        '0:guest-sync-delimited',
        '0:guest-ping',
      ]);
    },
  );
});

test("a command without a success reply fails with the guest agent's own error, sanitized and bounded", async () => {
  const desc = `child process has failed to shutdown\r\n\u001b[31mFailed to connect to bus${'!'.repeat(2000)}`;
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-shutdown') return false;
      // qemu-ga answers once its shutdown child has failed: a moment later.
      setTimeout(() => conn.write(`${JSON.stringify({ error: { class: 'GenericError', desc } })}\n`), 30);
      return true;
    },
    async (_fake, client) => {
      const err = await rejectsWith(
        client.executeNoReply('guest-shutdown', { mode: 'reboot' }, { errorWithinMs: 5000 }),
        'guest_error',
        /^guest agent error: child process has failed to shutdown \[31mFailed to connect to bus!+…$/,
      );
      assert.ok(err.message.length < 300, `${err.message.length} characters`);
      assert.deepEqual(await client.execute('guest-ping'), {});
    },
  );
});

test('a command without a success reply is accepted when the channel closes or the guest is seen going down', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-shutdown') return false;
      if (cmd.arguments?.mode === 'powerdown') conn.socket.destroy();
      return true;
    },
    async (_fake, client) => {
      const started = Date.now();
      await client.executeNoReply('guest-shutdown', { mode: 'powerdown' }, { errorWithinMs: 5000 });
      let goingDown = () => {};
      const accepted = new Promise<void>((resolve) => {
        goingDown = resolve;
      });
      const reboot = client.executeNoReply(
        'guest-shutdown',
        { mode: 'reboot' },
        { errorWithinMs: 5000, accepted },
      );
      setTimeout(goingDown, 30);
      await reboot;
      assert.ok(Date.now() - started < 3000, 'neither waited out errorWithinMs');
    },
  );
});

test('an error that comes after the wait is stale: the next command gets its own reply', async () => {
  await withAgent(
    (cmd) => cmd.execute === 'guest-shutdown',
    async (fake, client) => {
      await client.executeNoReply('guest-shutdown', { mode: 'reboot' }, { errorWithinMs: 20 });
      // Written before the next command's sync is even sent, so it arrives first.
      fake.connections[0].write('{"error": {"class": "GenericError", "desc": "too late"}}\n');
      assert.deepEqual(await client.execute('guest-ping'), {});
    },
  );
});

test('commands are serialized: concurrent calls each get their own reply', async () => {
  let outstanding = 0;
  let overlapped = false;
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-a' && cmd.execute !== 'guest-b') return false;
      if (outstanding > 0) overlapped = true;
      outstanding++;
      // Hold the first answer a little, so a client that did not wait would be caught sending early.
      setTimeout(
        () => {
          outstanding--;
          conn.reply({ from: cmd.execute });
        },
        cmd.execute === 'guest-a' ? 20 : 0,
      );
      return true;
    },
    async (fake, client) => {
      const [a, b] = await Promise.all([client.execute('guest-a'), client.execute('guest-b')]);
      assert.deepEqual(a, { from: 'guest-a' });
      assert.deepEqual(b, { from: 'guest-b' });
      assert.equal(overlapped, false);
      assert.deepEqual(fake.log, ['0:ff', '0:guest-sync-delimited', '0:guest-a', '0:guest-b']);
    },
  );
});

test('a failed command does not block the queue', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-bad') return false;
      conn.write('{"error": {"class": "CommandNotFound", "desc": "unknown"}}\n');
      return true;
    },
    async (_fake, client) => {
      const results = await Promise.allSettled([
        client.execute('guest-bad'),
        client.execute('guest-ping'),
        client.execute('guest-ping'),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ['rejected', 'fulfilled', 'fulfilled'],
      );
    },
  );
});

test('the guest closing the channel rejects the pending command; the next command reconnects', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-fsfreeze-thaw') return false;
      conn.socket.destroy();
      return true;
    },
    async (fake, client, problems) => {
      await rejectsWith(client.execute('guest-fsfreeze-thaw'), 'guest_error', /closed/);
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.equal(fake.connections.length, 2);
      assert.deepEqual(fake.log.slice(-3), ['1:ff', '1:guest-sync-delimited', '1:guest-ping']);
      assert.ok(problems.some((p) => /closed/.test(p)));
    },
  );
});

test('no agent listening is a guest_error', async () => {
  const client = new QgaClient(path.join(dir, 'absent.sock'));
  await rejectsWith(
    client.execute('guest-ping', undefined, { timeoutMs: 500 }),
    'guest_error',
    /cannot open/,
  );
  client.close();
});

test('syncs answered late and all at once are skipped in order', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-sync-delimited') return false;
      // As a guest agent that starts late: replies to three earlier syncs, then to this one.
      const id = Number(cmd.arguments?.id);
      const replies = [id - 3, id - 2, id - 1, id].map((n) =>
        Buffer.concat([Buffer.from([0xff]), Buffer.from(`{"return": ${n}}\n`)]),
      );
      conn.write(Buffer.concat(replies));
      return true;
    },
    async (_fake, client, problems) => {
      assert.deepEqual(await client.execute('guest-ping'), {});
      assert.deepEqual(problems, []);
    },
  );
});

test('an error reply carries the guest agent error class', async () => {
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-exec') return false;
      conn.write('{"error": {"class": "CommandNotFound", "desc": "Command guest-exec has been disabled"}}\n');
      return true;
    },
    async (_fake, client) => {
      const err = await rejectsWith(client.execute('guest-exec'), 'guest_error', /disabled/);
      assert.equal(err.details?.class, 'CommandNotFound');
    },
  );
});

test('maxReplyBytes raises the reply bound for that command only', async () => {
  const big = 'x'.repeat(maxGuestReplyBytes + 1000);
  await withAgent(
    (cmd, conn) => {
      if (cmd.execute !== 'guest-exec-status' && cmd.execute !== 'guest-info') return false;
      conn.reply({ 'out-data': big });
      return true;
    },
    async (_fake, client) => {
      const r = await client.execute<{ 'out-data': string }>('guest-exec-status', undefined, {
        maxReplyBytes: 2 * maxGuestReplyBytes,
      });
      assert.equal(r['out-data'].length, big.length);
      await rejectsWith(client.execute('guest-info'), 'guest_error', /limit/);
    },
  );
});
