import assert from 'node:assert/strict';
import test from 'node:test';
import { TernError } from '../../errors.ts';
import { rejectsWith } from '../../testing.ts';
import { type AgentStream, followAgentStream } from './agent-stream.ts';
import type { AgentTransport } from './agent-transport.ts';

/**
 * An agent answering with `lines` (each written as one chunk), then staying open (`end: false`)
 * or closing. Aborting the request errors its body, as a real fetch does.
 */
function agent(lines: string[], opts: { end?: boolean; status?: number } = {}) {
  let cancelled = false;
  const transport: AgentTransport = {
    url: 'https://agent.test',
    headers: {},
    fetch: async (_url, init) => {
      if (opts.status)
        return new Response(JSON.stringify({ error: { code: 'conflict', message: 'busy' } }), {
          status: opts.status,
        });
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          for (const l of lines) c.enqueue(new TextEncoder().encode(l));
          if (opts.end ?? true) c.close();
          init?.signal?.addEventListener('abort', () => c.error(init.signal?.reason), { once: true });
        },
        cancel() {
          cancelled = true;
        },
      });
      return new Response(body);
    },
  };
  return { transport, cancelled: () => cancelled };
}

const stream = (over: Partial<AgentStream> = {}): AgentStream => ({
  method: 'POST',
  path: '/agent/v1/x',
  body: {},
  maxLine: 1024,
  silenceMs: 5_000,
  signal: new AbortController().signal,
  during: 'the test',
  ...over,
});

const untilDone = (seen: unknown[]) => (v: unknown) => {
  seen.push(v);
  return (v as { type: string }).type === 'done' ? v : undefined;
};

test('lines are handed over in order, split anywhere, and the last one closes the stream', async () => {
  const a = agent(['{"type":"progress","n":1}\n{"type":"pro', 'gress","n":2}\n', '{"type":"done"}\n'], {
    end: false,
  });
  const seen: unknown[] = [];
  const done = await followAgentStream(a.transport, stream(), untilDone(seen));
  assert.deepEqual(done, { type: 'done' });
  assert.equal(seen.length, 3);
  assert.ok(a.cancelled(), 'the connection is closed once the last line is in');
});

test('a stream that ends before its last line is a lost agent', async () => {
  const a = agent(['{"type":"progress"}\n']);
  await rejectsWith(
    followAgentStream(a.transport, stream(), untilDone([])),
    'unavailable',
    /stopped answering during the test/,
  );
});

test('a silent stream counts as lost after its limit', async () => {
  const a = agent(['{"type":"progress"}\n'], { end: false });
  const started = Date.now();
  await rejectsWith(
    followAgentStream(a.transport, stream({ silenceMs: 100 }), untilDone([])),
    'unavailable',
    /went silent during the test/,
  );
  assert.ok(Date.now() - started < 4_000);
});

test('a line longer than the bound is a protocol error', async () => {
  const a = agent([`{"pad":"${'x'.repeat(2000)}"}\n`], { end: false });
  await rejectsWith(followAgentStream(a.transport, stream(), untilDone([])), 'protocol_error');
});

test("the caller's abort is a cancellation; what the caller throws passes through", async () => {
  const ac = new AbortController();
  const a = agent(['{"type":"progress"}\n'], { end: false });
  const p = followAgentStream(a.transport, stream({ signal: ac.signal }), () => {
    setImmediate(() => ac.abort());
    return undefined;
  });
  await rejectsWith(p, 'cancelled');
  const b = agent(['{"type":"error"}\n'], { end: false });
  await rejectsWith(
    followAgentStream(b.transport, stream(), () => {
      throw new TernError('storage_error', 'the disk is full');
    }),
    'storage_error',
    /disk is full/,
  );
  assert.ok(b.cancelled());
});

test("the agent's error answer is its own error", async () => {
  const a = agent([], { status: 409 });
  await rejectsWith(followAgentStream(a.transport, stream(), untilDone([])), 'conflict', /busy/);
});
