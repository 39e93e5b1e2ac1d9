import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventBus } from './bus.ts';

test('waiting with an already cancelled signal ends at once', async () => {
  const bus = new EventBus();
  const controller = new AbortController();
  controller.abort(new Error('cancelled'));
  const started = Date.now();
  await assert.rejects(
    bus.waitFor(() => undefined, 10_000, controller.signal),
    /cancelled/,
  );
  assert.ok(Date.now() - started < 1000);
});

test('a wait resolves on the first matching event and stops listening', async () => {
  const bus = new EventBus();
  const waiting = bus.waitFor((e) => (e.type === 'vm.deleted' && e.id === 'b' ? e.id : undefined), 1000);
  bus.publish({ type: 'vm.deleted', id: 'a' });
  bus.publish({ type: 'vm.deleted', id: 'b' });
  assert.equal(await waiting, 'b');
});
