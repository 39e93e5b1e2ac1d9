/**
 * VMs and templates from any library item, through the real manager and its API on simulated
 * hosts (the storage is real: qemu-img makes every volume). A disk image becomes a VM's first
 * disk as a linked clone (its backing file the image's stored qcow2, compressed or not) or a full
 * copy, grown but never shrunk; an ISO goes into a CD-ROM drive that can be ejected and filled
 * again, running or stopped; UEFI VMs get their own variable store and only hosts with OVMF;
 * images that VMs use cannot be deleted; a template can be made from an image; a template name
 * that is an image says how to use it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ovmf } from '../src/agent/firmware.ts';
import type { Task } from '../src/wire/task.ts';
import type { Template } from '../src/wire/template.ts';
import type { Vm, VmSpec } from '../src/wire/vm.ts';
import { runTern } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

const MiB = 1024 * 1024;
let c: SimCluster;
let shared: string;
let uefiHost: string;

/** qemu-img's view of a volume in the shared pool. */
function info(rel: string): { 'virtual-size': number; 'backing-filename'?: string; format: string } {
  return JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '--output=json', path.join(shared, rel)], { encoding: 'utf8' }),
  );
}

/** qemu-img's view of disk `i` of a VM, on its host. */
function diskInfo(vm: Vm, i = 0) {
  const host = c.sim.hosts.find((h) => h.name === vm.host)!;
  const { pool, path: rel } = vm.disks[i].volume;
  return JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '--output=json', path.join(host.pools[pool], rel)], {
      encoding: 'utf8',
    }),
  ) as { 'virtual-size': number; 'backing-filename'?: string };
}

/** An image in the library, its file made here in the shared pool (importing is tested elsewhere). */
async function addImage(name: string, kind: 'disk' | 'iso', make: (file: string) => void): Promise<void> {
  const rel = `images/${name}.${kind === 'iso' ? 'iso' : 'qcow2'}`;
  const file = path.join(shared, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  make(file);
  const virtual = kind === 'iso' ? fs.statSync(file).size : info(rel)['virtual-size'];
  await c.manager.services.images.insert({
    name,
    kind,
    format: kind === 'iso' ? 'raw' : 'qcow2',
    sourceFormat: kind === 'iso' ? 'iso' : 'qcow2',
    hostId: (await c.manager.services.hosts.get(uefiHost)).id,
    pool: 'shared',
    path: rel,
    virtualBytes: virtual,
    actualBytes: fs.statSync(file).size,
    sha256: null,
    createdAt: new Date().toISOString(),
  });
}

async function refusal(method: string, url: string, body?: unknown) {
  const r = await c.api.raw(method, url, {
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  return { status: r.status, code: r.body.error?.code, message: r.body.error?.message ?? '' };
}

async function create(body: Record<string, unknown>): Promise<Vm> {
  const r = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', body);
  const t = await c.api.settle(r.task);
  assert.equal(t.state, 'succeeded', t.error?.message);
  return c.api.request<Vm>('GET', `/api/v1/vms/${r.vm.id}`);
}

async function specOf(vm: string): Promise<VmSpec> {
  return JSON.parse((await c.manager.services.store.row(vm)).spec) as VmSpec;
}

async function succeeds(method: string, url: string, body?: unknown): Promise<Task> {
  const t = await c.api.task(method, url, body);
  assert.equal(t.state, 'succeeded', t.error?.message);
  return t;
}

before(async () => {
  // The first host has OVMF, the second has none.
  c = await startSimCluster(2, { driver: (_name, i) => ({ uefi: i === 0 }) });
  shared = path.join(c.dir, 'shared');
  uefiHost = c.sim.hosts[0].name;
  await addImage('deb', 'disk', (f) => execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', f, '96M']));
  // Compressed like `image import --compress` stores it.
  await addImage('debz', 'disk', (f) => {
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', `${f}.src`, '80M']);
    execFileSync('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', `${f}.src`, f]);
    fs.rmSync(`${f}.src`);
  });
  await addImage('inst', 'iso', (f) => fs.writeFileSync(f, Buffer.alloc(2 * MiB, 1)));
  await addImage('tools', 'iso', (f) => fs.writeFileSync(f, Buffer.alloc(MiB, 2)));
});

after(async () => {
  await c?.close();
});

test('--image: a linked clone on the stored image, grown if asked, never shrunk; a full copy stands alone', async () => {
  const linked = await create({ name: 'img-linked', image: 'deb', diskGiB: 0.125 });
  assert.equal(linked.image, 'deb');
  assert.equal(linked.clone, 'linked');
  assert.equal(linked.template, null);
  // The shared pool as the host mounts it.
  assert.match(diskInfo(linked)['backing-filename']!, /\/shared\/images\/deb\.qcow2$/);
  assert.equal(diskInfo(linked)['virtual-size'], 128 * MiB);
  assert.equal(linked.disks[0].sizeBytes, 128 * MiB);
  // The cloud-init seed is there as with templates: cloud images read it.
  assert.ok((await specOf(linked.id)).seed);

  const z = await create({ name: 'img-compressed', image: 'debz' });
  assert.match(diskInfo(z)['backing-filename']!, /\/shared\/images\/debz\.qcow2$/);
  assert.equal(z.disks[0].sizeBytes, 80 * MiB);

  const full = await create({ name: 'img-full', image: 'deb', full: true });
  assert.equal(full.clone, 'full');
  assert.equal(diskInfo(full)['backing-filename'], undefined);
  assert.equal(diskInfo(full)['virtual-size'], 96 * MiB);

  const smaller = await refusal('POST', '/api/v1/vms', { name: 'img-small', image: 'deb', diskGiB: 0.0625 });
  assert.equal(smaller.status, 400);
  assert.match(smaller.message, /smaller than image deb's virtual size \(0\.09 GiB\); disks only grow/);
  const iso = await refusal('POST', '/api/v1/vms', { name: 'img-iso', image: 'inst' });
  assert.equal(iso.status, 400);
  assert.match(iso.message, /image inst is an ISO/);
  const both = await refusal('POST', '/api/v1/vms', { name: 'img-both', image: 'deb', template: 'sim' });
  assert.equal(both.status, 400);
});

test('an image that linked clones or CD-ROM drives use cannot be deleted; once unused it can', async () => {
  await create({ name: 'uses-img', image: 'deb', diskGiB: 0.125 });
  const r = await refusal('DELETE', '/api/v1/images/deb');
  assert.equal(r.status, 409);
  assert.match(r.message, /image deb is used by .*uses-img/);
  assert.ok(fs.existsSync(path.join(shared, 'images/deb.qcow2')));

  await addImage('spare', 'disk', (f) => execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', f, '16M']));
  const full = await create({ name: 'full-of-spare', image: 'spare', full: true });
  await succeeds('DELETE', '/api/v1/images/spare');
  assert.ok(!fs.existsSync(path.join(shared, 'images/spare.qcow2')));
  await succeeds('DELETE', `/api/v1/vms/${full.id}`);
});

test('--iso: a CD-ROM booted first over a blank disk; ejected and filled again running and stopped', async () => {
  const vm = await create({ name: 'installer', iso: 'inst', diskGiB: 0.0625, start: true });
  assert.deepEqual(vm.cdrom, { medium: { pool: 'shared', path: 'images/inst.iso' }, image: 'inst' });
  const spec = await specOf(vm.id);
  assert.equal(spec.bootOrder, 'cd');
  assert.equal(diskInfo(vm)['backing-filename'], undefined);
  assert.equal(diskInfo(vm)['virtual-size'], 64 * MiB);
  const inUse = await refusal('DELETE', '/api/v1/images/inst');
  assert.equal(inUse.status, 409);

  await c.api.waitVm(vm.id, (v) => v.state === 'running', 10_000, 'running');
  await succeeds('DELETE', `/api/v1/vms/${vm.id}/cdrom`);
  assert.deepEqual((await c.api.request<Vm>('GET', `/api/v1/vms/${vm.id}`)).cdrom, {
    medium: null,
    image: null,
  });
  // The host's running spec says the same as the inventory.
  const agentSpec = await c.manager.services.hosts
    .client((await c.manager.services.store.row(vm.id)).hostId!)
    .vmSpec(vm.id);
  assert.deepEqual(agentSpec?.cdrom, { medium: null });
  await succeeds('POST', `/api/v1/vms/${vm.id}/cdrom`, { image: 'tools' });
  assert.equal((await c.api.request<Vm>('GET', `/api/v1/vms/${vm.id}`)).cdrom?.image, 'tools');

  const disk = await refusal('POST', `/api/v1/vms/${vm.id}/cdrom`, { image: 'deb' });
  assert.equal(disk.status, 400);
  assert.match(disk.message, /disk image, not an ISO/);

  // A running VM without a drive cannot get one; a stopped one can, seen at its next start.
  const plain = await create({ name: 'no-drive', template: 'sim', start: true });
  const noDrive = await refusal('POST', `/api/v1/vms/${plain.id}/cdrom`, { image: 'inst' });
  assert.equal(noDrive.status, 409);
  assert.match(noDrive.message, /runs without a CD-ROM drive/);
  await succeeds('POST', `/api/v1/vms/${plain.id}/stop`, { force: false });
  await succeeds('POST', `/api/v1/vms/${plain.id}/cdrom`, { image: 'inst' });
  const stopped = await specOf(plain.id);
  assert.deepEqual(stopped.cdrom, { medium: { pool: 'shared', path: 'images/inst.iso' } });
  assert.equal(stopped.bootOrder, 'disk');
  await succeeds('POST', `/api/v1/vms/${plain.id}/start`, { force: false });
  const host = c.manager.services.hosts.client((await c.manager.services.store.row(plain.id)).hostId!);
  assert.equal((await host.vmSpec(plain.id))?.cdrom?.medium?.path, 'images/inst.iso');

  for (const id of [vm.id, plain.id]) await succeeds('DELETE', `/api/v1/vms/${id}?force=true`);
  await succeeds('DELETE', '/api/v1/images/tools');
});

test('--firmware uefi: its own variable store, on hosts with OVMF only, gone with the VM', async () => {
  const vms: Vm[] = [];
  for (const name of ['efi-1', 'efi-2', 'efi-3']) {
    vms.push(await create({ name, image: 'deb', firmware: 'uefi', start: true }));
  }
  for (const vm of vms) {
    assert.equal(vm.firmware, 'uefi');
    assert.equal(vm.host, uefiHost, `${vm.name} is on a host with OVMF`);
    const spec = await specOf(vm.id);
    const vars = path.join(shared, spec.efiVars!.path);
    assert.equal(fs.statSync(vars).size, fs.statSync(ovmf.vars).size);
    assert.equal(spec.disks.length, 1, 'the variable store is no disk');
  }
  const hosts = await c.api.request<{ items: { name: string; facts: { uefi?: boolean } }[] }>(
    'GET',
    '/api/v1/hosts',
  );
  assert.deepEqual(
    hosts.items.map((h) => [h.name, h.facts.uefi]),
    [
      [c.sim.hosts[0].name, true],
      [c.sim.hosts[1].name, false],
    ],
  );
  // What --explain shows: the host without OVMF rejected, and why.
  const e = await c.api
    .request<{ host: string; verdicts: { host: string; filter?: string; reason?: string }[] }>(
      'POST',
      '/api/v1/cluster/placement',
      { vcpus: 1, memoryMiB: 512, template: 'deb-tpl-none', image: 'deb', firmware: 'uefi' },
    )
    .catch((err: Error) => err);
  assert.match(String(e), /template deb-tpl-none does not exist/);
  const why = await c.api.request<{
    host: string;
    verdicts: { host: string; filter?: string; reason?: string }[];
  }>('POST', '/api/v1/cluster/placement', { vcpus: 1, memoryMiB: 512, image: 'deb', firmware: 'uefi' });
  assert.equal(why.host, uefiHost);
  const other = why.verdicts.find((v) => v.host === c.sim.hosts[1].name);
  assert.equal(other?.filter, 'firmware');
  assert.match(other?.reason ?? '', /no UEFI firmware/);
  const vars = path.join(shared, (await specOf(vms[0].id)).efiVars!.path);
  for (const vm of vms) await succeeds('DELETE', `/api/v1/vms/${vm.id}?force=true`);
  assert.ok(!fs.existsSync(vars));
});

test('template create --from-image: a flattened copy with the defaults given; its VMs inherit the firmware', async () => {
  await succeeds('POST', '/api/v1/templates', {
    name: 'deb-tpl',
    fromImage: 'debz',
    vcpus: 2,
    memoryMiB: 768,
    diskGiB: 0.125,
    firmware: 'uefi',
    os: 'linux',
  });
  const t = await c.api.request<Template>('GET', '/api/v1/templates/deb-tpl');
  assert.equal(t.firmware, 'uefi');
  assert.equal(t.os, 'linux');
  assert.equal(t.vcpus, 2);
  assert.equal(t.diskSizeBytes, 128 * MiB);
  assert.equal(info(t.disk.path)['backing-filename'], undefined);
  const vm = await create({ name: 'from-deb-tpl', template: 'deb-tpl' });
  assert.equal(vm.firmware, 'uefi');
  assert.equal(vm.vcpus, 2);
  assert.equal(vm.memoryMiB, 768);
  assert.ok((await specOf(vm.id)).efiVars);

  // An image pool of it: its VMs, the maintenance VM of a new version too, have their own stores.
  await succeeds('POST', '/api/v1/image-pools', {
    name: 'efipool',
    template: 'deb-tpl',
    size: 1,
    start: true,
  });
  await succeeds('POST', '/api/v1/image-pools/efipool/versions');
  await succeeds('POST', '/api/v1/vms/efipool-v2/start', { force: false });
  for (const name of ['efipool-1', 'efipool-v2']) assert.ok((await specOf(name)).efiVars, name);

  const vmOnly = await refusal('POST', '/api/v1/templates', { name: 'x', fromVm: 'from-deb-tpl', vcpus: 2 });
  assert.equal(vmOnly.status, 400);
  const shrink = await refusal('POST', '/api/v1/templates', { name: 'x', fromImage: 'deb', diskGiB: 0.0625 });
  assert.equal(shrink.status, 400);
  assert.match(shrink.message, /disks only grow/);
  await succeeds('DELETE', `/api/v1/vms/${vm.id}`);
});

test('a template name that is an image says so and gives both commands', async () => {
  const r = await refusal('POST', '/api/v1/vms', { name: 'oops', template: 'deb' });
  assert.equal(r.status, 404);
  assert.match(r.message, /template deb does not exist, but an image of that name does/);
  assert.ok(r.message.includes('tern vm create NAME --image deb'), r.message);
  assert.ok(r.message.includes('tern template create deb --from-image deb'), r.message);
  const iso = await refusal('POST', '/api/v1/vms', { name: 'oops', template: 'inst' });
  assert.match(iso.message, /--iso inst/);
});

test('the CLI: template from an image, a VM from it with an ISO, eject, and the hint for an image named as a template', async () => {
  const env = c.api.cliEnv;
  const tpl = await runTern(
    [
      'template',
      'create',
      'cli-tpl',
      '--from-image',
      'deb',
      '--vcpus',
      '2',
      '--memory',
      '1G',
      '--firmware',
      'uefi',
      '--os',
      'windows',
    ],
    { env },
  );
  assert.equal(tpl.code, 0, tpl.stderr);
  const made = await runTern(['vm', 'create', 'cli-vm', '--template', 'cli-tpl', '--iso', 'inst'], { env });
  assert.equal(made.code, 0, made.stderr);
  assert.equal((await specOf('cli-vm')).bootOrder, 'disk', 'a VM with an OS boots its disk first');
  const ejected = await runTern(['vm', 'cdrom', 'eject', 'cli-vm'], { env });
  assert.equal(ejected.code, 0, ejected.stderr);
  const shown = await runTern(['vm', 'show', 'cli-vm'], { env });
  assert.match(shown.stdout, /firmware:\s+uefi/);
  assert.match(shown.stdout, /cd-rom:\s+empty/);
  const inserted = await runTern(['vm', 'cdrom', 'insert', 'cli-vm', 'inst'], { env });
  assert.equal(inserted.code, 0, inserted.stderr);
  assert.match((await runTern(['vm', 'show', 'cli-vm'], { env })).stdout, /cd-rom:\s+inst/);
  // Audited like every VM action.
  const log = await c.api.request<{ items: { action: string; object: string; result: string }[] }>(
    'GET',
    '/api/v1/audit?object=vms/cli-vm/cdrom',
  );
  assert.deepEqual(
    log.items.map((e) => [e.action, e.result]),
    [
      ['POST /vms/:vm/cdrom', 'ok'],
      ['DELETE /vms/:vm/cdrom', 'ok'],
    ],
  );
  const oops = await runTern(['vm', 'create', 'oops', '--template', 'deb'], { env });
  assert.notEqual(oops.code, 0);
  assert.match(oops.stderr, /tern vm create NAME --image deb/);
  assert.match(oops.stderr, /tern template create deb --from-image deb/);
});
