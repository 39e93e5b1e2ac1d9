import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { createLogger } from '../../log.ts';
import { openDatabase } from '../db/database.ts';
import { EventBus } from '../events/bus.ts';
import { TaskEngine, type TaskKind } from './engine.ts';

const log = createLogger('test', 'silent');

async function setup() {
  const db = await openDatabase(':memory:');
  const bus = new EventBus();
  return { db, bus, engine: new TaskEngine(db, bus, log) };
}

/** A task that runs until released, so tests control exactly when it ends. */
function gated(kind: string, onInterrupt: 'resume' | 'fail' = 'fail') {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const cleaned: string[] = [];
  const k: TaskKind<{ n: number }> = {
    kind,
    onInterrupt,
    async run(ctx, p) {
      await ctx.step('working', 50);
      await Promise.race([
        gate,
        new Promise((_, reject) => {
          if (ctx.signal.aborted) reject(ctx.signal.reason);
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        }),
      ]);
      return { doubled: p.n * 2, resumed: ctx.resumed };
    },
    async cleanup(_ctx, p, err) {
      cleaned.push(`${p.n}:${err.code}`);
    },
  };
  return { k, release, cleaned };
}

test('a task runs, reports progress and logs, and releases its lock', async () => {
  const { engine } = await setup();
  const { k, release } = gated('demo');
  const t = await engine.submit(k, { n: 2 }, ['vm:a']);
  await assert.rejects(engine.submit(k, { n: 3 }, ['vm:a']), (e: TernError) => e.code === 'locked');
  release();
  const done = await engine.settled(t.id);
  assert.equal(done.state, 'succeeded');
  assert.deepEqual(done.result, { doubled: 4, resumed: false });
  assert.equal(done.progress, 100);
  assert.ok(done.log?.some((l) => l.line === 'working'));
  const again = await engine.submit(k, { n: 3 }, ['vm:a']);
  assert.equal(again.state, 'queued');
});

test('cancellation runs cleanup and ends cancelled', async () => {
  const { engine } = await setup();
  const { k, cleaned } = gated('demo');
  const t = await engine.submit(k, { n: 1 }, ['vm:b']);
  await engine.cancel(t.id);
  const done = await engine.settled(t.id);
  assert.equal(done.state, 'cancelled');
  assert.deepEqual(cleaned, ['1:cancelled']);
});

test('after a crash, resumable tasks resume and the others fail with cleanup', async () => {
  const { db, bus, engine } = await setup();
  const resumable = gated('resumable', 'resume');
  const failing = gated('failing', 'fail');
  const r = await engine.submit(resumable.k, { n: 5 }, ['vm:r']);
  const f = await engine.submit(failing.k, { n: 6 }, ['vm:f']);
  engine.abandon();
  assert.equal((await engine.get(r.id)).state, 'running');

  const next = new TaskEngine(db, bus, log);
  const resumable2 = gated('resumable', 'resume');
  const failing2 = gated('failing', 'fail');
  next.register(resumable2.k);
  next.register(failing2.k);
  await next.recover();
  const failed = await next.settled(f.id);
  assert.equal(failed.state, 'failed');
  assert.match(failed.error?.message ?? '', /partial work was undone/);
  assert.deepEqual(failing2.cleaned, ['6:internal']);
  resumable2.release();
  const done = await next.settled(r.id);
  assert.equal(done.state, 'succeeded');
  assert.deepEqual(done.result, { doubled: 10, resumed: true });
  const running = await next.list({ state: 'running', limit: 10 });
  assert.equal(running.length, 0);
});

test('a failing task records its error', async () => {
  const { engine } = await setup();
  const k: TaskKind<null> = {
    kind: 'boom',
    onInterrupt: 'fail',
    async run() {
      throw new TernError('conflict', 'nope');
    },
  };
  const t = await engine.submit(k, null, []);
  const done = await engine.settled(t.id);
  assert.equal(done.state, 'failed');
  assert.deepEqual(done.error, { code: 'conflict', message: 'nope' });
});

test('recovered tasks wait for their gate; an undo that fails says so', async () => {
  const { db, bus, engine } = await setup();
  const r = await engine.submit(gated('resumable', 'resume').k, { n: 1 }, ['vm:r']);
  const f = await engine.submit(gated('failing', 'fail').k, { n: 2 }, ['vm:f']);
  const u = await engine.submit(gated('unreachable', 'fail').k, { n: 3 }, ['vm:u']);
  const l = await engine.submit(gated('late', 'resume').k, { n: 4 }, ['vm:l']);
  engine.abandon();

  const next = new TaskEngine(db, bus, log);
  const resumable = gated('resumable', 'resume');
  const failing = gated('failing', 'fail');
  const unreachable = gated('unreachable', 'fail');
  const late = gated('late', 'resume');
  for (const x of [resumable, failing, unreachable, late]) next.register(x.k);
  let open!: () => void;
  const hostBack = new Promise<void>((resolve) => {
    open = resolve;
  });
  await next.recover(async (objects) => {
    if (objects.includes('vm:u') || objects.includes('vm:l'))
      throw new TernError('unavailable', 'host h did not connect within 120 s');
    await hostBack;
  });
  // Nothing is undone or resumed before the host is back; the tasks still hold their locks.
  assert.equal((await next.get(f.id)).state, 'running');
  assert.deepEqual(failing.cleaned, []);
  await assert.rejects(next.submit(failing.k, { n: 9 }, ['vm:f']), (e: TernError) => e.code === 'locked');

  const stuck = await next.settled(u.id);
  assert.equal(stuck.state, 'failed');
  assert.match(stuck.error?.message ?? '', /undoing its partial work failed: host h did not connect/);
  assert.deepEqual(unreachable.cleaned, []);
  // A resumed task goes on without its host, as it would without a restart.
  late.release();
  const goneOn = await next.settled(l.id);
  assert.equal(goneOn.state, 'succeeded');
  assert.ok(goneOn.log?.some((x) => /did not connect within 120 s; going on without it/.test(x.line)));

  open();
  resumable.release();
  assert.equal((await next.settled(f.id)).state, 'failed');
  assert.deepEqual(failing.cleaned, ['2:internal']);
  assert.equal((await next.settled(r.id)).state, 'succeeded');
});

test('a manager that stops leaves tasks waiting for their hosts to the next one', async () => {
  const { db, bus, engine } = await setup();
  const f = await engine.submit(gated('failing', 'fail').k, { n: 1 }, ['vm:f']);
  const r = await engine.submit(gated('resumable', 'resume').k, { n: 2 }, ['vm:r']);
  engine.abandon();
  const next = new TaskEngine(db, bus, log);
  const failing = gated('failing', 'fail');
  next.register(failing.k);
  next.register(gated('resumable', 'resume').k);
  await next.recover(
    (_objects, ctx) =>
      new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
  );
  const started = performance.now();
  await next.close(10_000);
  assert.ok(performance.now() - started < 5000, 'close does not wait for hosts');
  assert.equal((await next.get(f.id)).state, 'running');
  assert.equal((await next.get(r.id)).state, 'running');
  assert.deepEqual(failing.cleaned, []);
});
