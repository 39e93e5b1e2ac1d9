import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { rejectsWith } from '../../testing.ts';
import { fileChunkBytes, guestExec, guestFileRead } from './guest-exec.ts';
import type { GuestAgent } from './qga-commands.ts';

type Call = { command: string; args?: Record<string, unknown>; opts?: { maxReplyBytes?: number } };

/**
 * A guest agent answering from a script: each handler gets the call and returns the reply (or
 * throws, as QgaClient does for an error reply). guest-ping always answers.
 */
function scripted(handlers: Record<string, (c: Call, n: number) => unknown>) {
  const calls: Call[] = [];
  const counts = new Map<string, number>();
  const ga: GuestAgent = {
    execute: async <T>(command: string, args?: Record<string, unknown>, opts?: object) => {
      calls.push({ command, args, opts });
      const n = (counts.get(command) ?? 0) + 1;
      counts.set(command, n);
      if (command === 'guest-ping') return {} as T;
      const h = handlers[command];
      if (!h)
        throw new TernError('guest_error', `guest agent error: The command ${command} has not been found`);
      return h({ command, args, opts }, n) as T;
    },
  };
  return { ga, calls };
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const notFound = (command: string) =>
  new TernError('guest_error', `guest agent error: Command ${command} has been disabled`, {
    class: 'CommandNotFound',
  });

test('exec runs the command, polls until it exits and decodes both streams', async () => {
  const { ga, calls } = scripted({
    'guest-exec': () => ({ pid: 321 }),
    'guest-exec-status': (_c, n) =>
      n < 3
        ? { exited: false }
        : {
            exited: true,
            exitcode: 3,
            'out-data': b64('out\n'),
            'err-data': b64('err\n'),
            'out-truncated': false,
          },
  });
  const r = await guestExec(ga, 'web-1', { command: ['sh', '-c', 'exit 3'], input: b64('in') });
  assert.equal(r.exitCode, 3);
  assert.equal(r.signal, null);
  assert.equal(Buffer.from(r.stdout, 'base64').toString(), 'out\n');
  assert.equal(Buffer.from(r.stderr, 'base64').toString(), 'err\n');
  assert.equal(r.stdoutTruncated, false);
  assert.equal(r.pid, 321);
  const exec = calls.find((c) => c.command === 'guest-exec');
  assert.deepEqual(exec?.args, {
    path: 'sh',
    arg: ['-c', 'exit 3'],
    'capture-output': true,
    'input-data': b64('in'),
  });
  assert.equal(calls.filter((c) => c.command === 'guest-exec-status').length, 3);
  // The status reply may carry both streams at qemu-ga's bound: its reply limit is raised.
  assert.ok(
    (calls.find((c) => c.command === 'guest-exec-status')?.opts?.maxReplyBytes ?? 0) > 2 * 16 * 1024 * 1024,
  );
});

test('a command ended by a signal has no exit code', async () => {
  const { ga } = scripted({
    'guest-exec': () => ({ pid: 5 }),
    'guest-exec-status': () => ({ exited: true, signal: 9 }),
  });
  const r = await guestExec(ga, 'web-1', { command: ['sleep', '100'] });
  assert.equal(r.exitCode, null);
  assert.equal(r.signal, 9);
  assert.equal(r.stdout, '');
});

test('output beyond maxOutputBytes is cut and says so, as is output qemu-ga cut', async () => {
  const { ga } = scripted({
    'guest-exec': () => ({ pid: 5 }),
    'guest-exec-status': () => ({
      exited: true,
      exitcode: 0,
      'out-data': b64('0123456789'),
      'err-data': b64('e'),
      'err-truncated': true,
    }),
  });
  const r = await guestExec(ga, 'web-1', { command: ['x'], maxOutputBytes: 4 });
  assert.equal(Buffer.from(r.stdout, 'base64').toString(), '0123');
  assert.equal(r.stdoutTruncated, true);
  assert.equal(Buffer.from(r.stderr, 'base64').toString(), 'e');
  assert.equal(r.stderrTruncated, true);
});

test('a command still running at the timeout is reported with its pid', async () => {
  const { ga } = scripted({
    'guest-exec': () => ({ pid: 77 }),
    'guest-exec-status': () => ({ exited: false }),
  });
  const started = Date.now();
  const err = await rejectsWith(
    guestExec(ga, 'web-1', { command: ['sleep', '100'], timeoutSeconds: 1 }),
    'timeout',
    /pid 77.*cannot end/,
  );
  assert.deepEqual(err.details, { pid: 77 });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 990 && elapsed < 3000, `timed out after ${elapsed} ms`);
});

test('hostile exec replies are clear guest errors', async () => {
  const cases: [string, unknown, unknown, RegExp][] = [
    ['no pid', {}, {}, /valid pid/],
    ['pid a string', { pid: '1' }, {}, /valid pid/],
    ['huge pid', { pid: 2 ** 53 }, {}, /valid pid/],
    ['status not an object', { pid: 1 }, 'done', /not an object/],
    ['status an array', { pid: 1 }, [], /not an object/],
    ['no exited', { pid: 1 }, { exitcode: 0 }, /exited/],
    ['exit code a float', { pid: 1 }, { exited: true, exitcode: 1.5 }, /exit code/],
    ['exit code huge', { pid: 1 }, { exited: true, exitcode: 2 ** 40 }, /exit code/],
    ['signal huge', { pid: 1 }, { exited: true, signal: 1e9 }, /signal/],
    ['out-data a number', { pid: 1 }, { exited: true, exitcode: 0, 'out-data': 12 }, /stdout.*not a string/],
    ['out-data not base64', { pid: 1 }, { exited: true, exitcode: 0, 'out-data': 'no!base64' }, /not base64/],
    [
      'err-data bad padding',
      { pid: 1 },
      { exited: true, exitcode: 0, 'err-data': 'abc' },
      /stderr.*not base64/,
    ],
    ['truncated a string', { pid: 1 }, { exited: true, exitcode: 0, 'out-truncated': 'yes' }, /truncation/],
    [
      'out-data beyond qemu-ga bound',
      { pid: 1 },
      { exited: true, exitcode: 0, 'out-data': 'A'.repeat(23 * 1024 * 1024) },
      /beyond/,
    ],
  ];
  for (const [name, execReply, statusReply, message] of cases) {
    const { ga } = scripted({ 'guest-exec': () => execReply, 'guest-exec-status': () => statusReply });
    await assert.doesNotReject(
      rejectsWith(guestExec(ga, 'web-1', { command: ['true'] }), 'guest_error', message),
      name,
    );
  }
});

test('a guest agent that blocks guest-exec says so and names the command', async () => {
  const { ga } = scripted({
    'guest-exec': () => {
      throw notFound('guest-exec');
    },
  });
  await rejectsWith(
    guestExec(ga, 'web-1', { command: ['true'] }),
    'conflict',
    /does not allow guest-exec.*--block-rpcs/,
  );
});

test('a program the guest cannot start is a guest error naming it', async () => {
  const { ga } = scripted({
    'guest-exec': () => {
      throw new TernError(
        'guest_error',
        'guest agent error: Failed to execute child process “nope” (No such file or directory)',
        {
          class: 'GenericError',
        },
      );
    },
  });
  await rejectsWith(
    guestExec(ga, 'web-1', { command: ['nope'] }),
    'guest_error',
    /could not start nope.*No such file/,
  );
});

test('a guest agent that does not answer the ping is unavailable', async () => {
  const ga: GuestAgent = {
    execute: async () => {
      throw new TernError('timeout', 'guest agent did not answer guest-sync-delimited within 3000 ms');
    },
  };
  await rejectsWith(guestExec(ga, 'web-1', { command: ['true'] }), 'unavailable', /qemu-ga running/);
  await rejectsWith(guestFileRead(ga, 'web-1', '/etc/hostname'), 'unavailable', /qemu-ga running/);
});

/** A guest file served in chunks as qemu-ga does. */
function fileAgent(content: Buffer, tweak?: (reply: Record<string, unknown>, n: number) => unknown) {
  let at = 0;
  return scripted({
    'guest-file-open': () => 1000,
    'guest-file-read': (c, n) => {
      const count = Number(c.args?.count);
      const part = content.subarray(at, at + count);
      at += part.length;
      const reply = { count: part.length, 'buf-b64': part.toString('base64'), eof: at >= content.length };
      return tweak ? tweak(reply, n) : reply;
    },
    'guest-file-close': () => ({}),
  });
}

test('a file is read whole in chunks, byte-exact, and its handle closed', async () => {
  const content = Buffer.alloc(fileChunkBytes * 2 + 123);
  for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 0xff;
  const { ga, calls } = fileAgent(content);
  const got = await guestFileRead(ga, 'web-1', '/var/data');
  assert.ok(got.equals(content));
  assert.equal(calls.filter((c) => c.command === 'guest-file-read').length, 3);
  assert.deepEqual(calls.at(-1), { command: 'guest-file-close', args: { handle: 1000 }, opts: undefined });
});

test('a file larger than maxBytes is refused, and its handle still closed', async () => {
  const { ga, calls } = fileAgent(Buffer.alloc(5000));
  await rejectsWith(guestFileRead(ga, 'web-1', '/big', 4096), 'payload_too_large', /larger than 4096/);
  assert.equal(calls.at(-1)?.command, 'guest-file-close');
});

test('hostile file replies are clear guest errors, and the handle is closed each time', async () => {
  const cases: [string, (r: Record<string, unknown>, n: number) => unknown, RegExp][] = [
    ['not an object', () => 'x', /not an object/],
    ['count a string', (r) => ({ ...r, count: '3' }), /count/],
    ['count beyond the chunk', (r) => ({ ...r, count: fileChunkBytes + 1 }), /count/],
    ['count lies', (r) => ({ ...r, count: 1 }), /saying 1/],
    ['bad base64', (r) => ({ ...r, 'buf-b64': '!!!!' }), /not base64/],
    ['no eof', (r) => ({ count: r.count, 'buf-b64': r['buf-b64'] }), /eof/],
    ['endless empty reads', () => ({ count: 0, 'buf-b64': '', eof: false }), /empty reads/],
  ];
  for (const [name, tweak, message] of cases) {
    const { ga, calls } = fileAgent(Buffer.from('hello'), tweak);
    await assert.doesNotReject(rejectsWith(guestFileRead(ga, 'web-1', '/f'), 'guest_error', message), name);
    assert.equal(calls.at(-1)?.command, 'guest-file-close', name);
  }
  const { ga } = scripted({ 'guest-file-open': () => ({ handle: 1 }) });
  await rejectsWith(guestFileRead(ga, 'web-1', '/f'), 'guest_error', /not a handle/);
});

test('a missing file is not_found; a guest agent blocking file reads says so', async () => {
  const missing = scripted({
    'guest-file-open': () => {
      throw new TernError(
        'guest_error',
        "guest agent error: failed to open file '/nope' (mode: 'r'): No such file or directory",
        {
          class: 'GenericError',
        },
      );
    },
  });
  await rejectsWith(guestFileRead(missing.ga, 'web-1', '/nope'), 'not_found', /cannot open \/nope/);
  const blocked = scripted({
    'guest-file-open': () => {
      throw notFound('guest-file-open');
    },
  });
  await rejectsWith(
    guestFileRead(blocked.ga, 'web-1', '/etc/hostname'),
    'conflict',
    /does not allow guest-file-open/,
  );
});
