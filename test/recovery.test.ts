/**
 * A manager killed in the middle of tasks: after its restart every task ends (resumed to
 * success or failed with its partial work undone), none stays running forever.
 * (A whole all-in-one killed during creations: test/orphans.test.ts.)
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, startCluster } from './harness.ts';

let c: Cluster;
before(async () => {
  c = await startCluster('recover');
});
after(async () => {
  c?.agent.signal('SIGCONT');
  await c?.stop();
});

async function waitRunning(id: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  // The task reaches "running" as soon as the manager picks it up; the event stream says so.
  await new Promise<void>((resolve, reject) => {
    const stop = new AbortController();
    const timer = setTimeout(() => {
      stop.abort();
      reject(new Error(`task ${id} not running by ${new Date(deadline).toISOString()}`));
    }, 20_000);
    const check = (t: Task) => {
      if (t.state === 'running') {
        clearTimeout(timer);
        stop.abort();
        resolve();
      }
    };
    c.api.events(`task=${id}`, (e) => e.type === 'task' && check(e.task), stop.signal).catch(() => {});
    c.api.request<Task>('GET', `/api/v1/tasks/${id}`).then(check, reject);
  });
}

test('tasks interrupted by a manager crash resume or fail cleanly', async () => {
  const made = await c.api.task('POST', '/api/v1/vms', { name: 'survivor', template: 'tiny', start: true });
  assert.equal(made.state, 'succeeded', JSON.stringify(made.error));

  // Freeze the host so the tasks below stay in flight, then kill the manager under them.
  c.agent.signal('SIGSTOP');
  const stop = (await c.api.request<{ task: Task }>('POST', '/api/v1/vms/survivor/stop')).task;
  const create = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
    name: 'halfway',
    template: 'tiny',
  });
  await waitRunning(stop.id);
  await waitRunning(create.task.id);
  await c.manager.kill();
  // The manager comes back before its host: recovery waits for the host instead of failing.
  await c.startManager();
  c.agent.signal('SIGCONT');

  const stopped = await c.api.settle(stop);
  assert.equal(stopped.state, 'succeeded', JSON.stringify(stopped.error));
  assert.ok(stopped.log?.some((l) => /resuming/.test(l.line)));
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/survivor')).state, 'stopped');

  // A creation resumes once its host is back, remaking what may be partial.
  const created = await c.api.settle(create.task);
  assert.equal(created.state, 'succeeded', JSON.stringify(created.error));
  assert.ok(created.log?.some((l) => /resuming/.test(l.line)));
  assert.ok(created.log?.some((l) => l.line === 'waiting for host local to connect'));
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/halfway')).state, 'stopped');
  assert.ok(fs.existsSync(path.join(c.pool, 'vms', create.vm.id, 'disk0.qcow2')), 'with its disk');

  const running = await c.api.request<{ items: Task[] }>('GET', '/api/v1/tasks?state=running');
  const queued = await c.api.request<{ items: Task[] }>('GET', '/api/v1/tasks?state=queued');
  assert.deepEqual([...running.items, ...queued.items], []);
});
