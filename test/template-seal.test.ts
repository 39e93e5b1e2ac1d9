/**
 * Sealing a VM into a template, on simulated hosts: what can be generalized is, what cannot is
 * refused with the way out, `force` seals it as it is and the template (and every clone's
 * creation) says what its clones share. The generalization itself, inside a real guest, is in
 * provisioning.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Task } from '../src/wire/task.ts';
import type { Template } from '../src/wire/template.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let c: SimCluster;
before(async () => {
  c = await startSimCluster(1, { driver: { bootDelayMs: 20 } });
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'gold', template: 'sim', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('gold', (v) => v.guest.agent === 'responding', 30_000, 'its guest agent answering');
});
after(async () => {
  await c?.close();
});

const post = (body: unknown) =>
  c.api.raw('POST', '/api/v1/templates', {
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
const copiesOf = (name: string) => fs.existsSync(path.join(c.dir, 'shared', 'templates', name));
const logOf = async (t: Task) =>
  ((await c.api.request<Task>('GET', `/api/v1/tasks/${t.id}?log=true`)).log ?? []).map((l) => l.line);

test('a running VM whose generalization fails is not sealed, and stays running', async () => {
  // The simulated guest runs no commands: the generalization cannot happen, so neither does the seal.
  const t = await c.api.task('POST', '/api/v1/templates', { name: 'gold-t', fromVm: 'gold', force: true });
  assert.equal(t.state, 'failed');
  assert.match(t.error!.message, /simulated guest of VM gold runs no commands/);
  assert.equal((await c.api.raw('GET', '/api/v1/templates/gold-t')).status, 404);
  assert.equal(copiesOf('gold-t'), false, 'nothing copied');
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/gold')).state, 'running');
});

test('a stopped VM is refused with the way out, before any task', async () => {
  assert.equal((await c.api.task('POST', '/api/v1/vms/gold/stop')).state, 'succeeded');
  const r = await post({ name: 'gold-t', fromVm: 'gold' });
  assert.equal(r.status, 409);
  assert.match(
    r.body.error!.message,
    /VM gold is stopped.*start the VM so its guest agent can generalize it, or use --force to seal it as it is/,
  );
  assert.equal((await c.api.raw('GET', '/api/v1/templates/gold-t')).status, 404);
  assert.equal(copiesOf('gold-t'), false);
});

test('with force it is sealed as it is: the template records the risk, and clones warn of it', async () => {
  const t = await c.api.task('POST', '/api/v1/templates', { name: 'gold-t', fromVm: 'gold', force: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.ok((await logOf(t)).some((l) => /warning: sealed as it is, not generalized/.test(l)));
  const tpl = await c.api.request<Template>('GET', '/api/v1/templates/gold-t');
  assert.equal(tpl.generalization, 'none');
  assert.equal(tpl.risk, 'clones share machine-id and SSH host keys');
  const { items } = await c.api.request<{ items: Template[] }>('GET', '/api/v1/templates');
  assert.equal(items.find((x) => x.name === 'gold-t')?.generalization, 'none');
  assert.equal(items.find((x) => x.name === 'sim')?.generalization, null, 'not sealed by Tern');

  const clone = await c.api.task('POST', '/api/v1/vms', { name: 'gold-1', template: 'gold-t' });
  assert.equal(clone.state, 'succeeded', JSON.stringify(clone.error));
  assert.ok(
    (await logOf(clone)).includes(
      'warning: template gold-t was sealed without being generalized: clones share machine-id and SSH host keys',
    ),
  );
  const plain = await c.api.task('POST', '/api/v1/vms', { name: 'plain-1', template: 'sim' });
  assert.ok(!(await logOf(plain)).some((l) => l.startsWith('warning:')));
});

test('a VM last seen running Windows is refused with sysprep as the fix', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'win', template: 'sim' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/win');
  // What its guest agent reported while it ran, kept by the inventory once it stopped.
  await c.manager.services.store.update(vm.id, {
    guest: JSON.stringify({ ...vm.guest, os: { id: 'mswindows', name: 'Microsoft Windows' } }),
  });
  const r = await post({ name: 'win-t', fromVm: 'win' });
  assert.equal(r.status, 409);
  assert.match(r.body.error!.message, /runs Windows.*`sysprep \/generalize \/oobe \/shutdown`.*--force/);
});
