/**
 * Provisioning from templates: every clone gets its own identity (hostname, machine id,
 * client machine id, network config, user-data) through its NoCloud seed, seen through the
 * guest agent; linked clones share the template disk, full clones do not; a template in use
 * cannot be deleted; a running VM is generalized and sealed into a template of its own.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Template } from '../src/wire/template.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, repoRoot, startCluster } from './harness.ts';

let c: Cluster;
before(async () => {
  c = await startCluster('prov');
});
after(async () => {
  await c?.stop();
});

const answering = (name: string) => (v: Vm) =>
  v.state === 'running' &&
  v.guest.agent === 'responding' &&
  v.guest.hostname === name &&
  v.guest.machineId !== null;

function backingOf(pool: string, volumePath: string): string | null {
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '--output=json', path.join(pool, volumePath)], {
      encoding: 'utf8',
    }),
  ) as { 'backing-filename'?: string };
  return info['backing-filename'] ?? null;
}

test('two linked clones of one template have different identities', async () => {
  const [a, b] = await Promise.all(
    ['clone-a', 'clone-b'].map((name) =>
      c.api.task('POST', '/api/v1/vms', { name, template: 'tiny', start: true }),
    ),
  );
  assert.equal(a.state, 'succeeded', JSON.stringify(a.error));
  assert.equal(b.state, 'succeeded', JSON.stringify(b.error));
  const [va, vb] = await Promise.all(
    ['clone-a', 'clone-b'].map((n) => c.api.waitVm(n, answering(n), 120_000, 'up')),
  );
  assert.equal(va.guest.hostname, 'clone-a');
  assert.equal(vb.guest.hostname, 'clone-b');
  assert.match(va.guest.machineId!, /^[0-9a-f]{32}$/);
  assert.notEqual(va.guest.machineId, vb.guest.machineId, 'machine ids differ');
  assert.ok(va.clientMachineId && vb.clientMachineId && va.clientMachineId !== vb.clientMachineId);
  assert.equal(va.clone, 'linked');
  const tiny = await c.api.request<Template>('GET', '/api/v1/templates/tiny');
  assert.equal(backingOf(c.pool, va.disks[0].volume.path), path.join(c.pool, tiny.disk.path));
});

test('a full clone stands alone and takes its static address and user-data', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', {
    name: 'full-1',
    template: 'tiny',
    full: true,
    ip: { address: '10.0.2.50/24', gateway: '10.0.2.2', dns: ['10.0.2.3'] },
    userData: '#!/bin/sh\necho "USER-DATA-RAN on $(hostname)" >/dev/console\n',
    start: true,
  });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const vm = await c.api.waitVm(
    'full-1',
    (v) => answering('full-1')(v) && v.ipAddresses.includes('10.0.2.50'),
    120_000,
    'up',
  );
  assert.equal(vm.clone, 'full');
  assert.equal(backingOf(c.pool, vm.disks[0].volume.path), null);
  assert.ok(!vm.ipAddresses.includes('10.0.2.15'), 'no DHCP address besides the static one');
  const { text } = await c.api.request<{ text: string }>('GET', '/api/v1/vms/full-1/console?bytes=200000');
  assert.match(text, /USER-DATA-RAN on full-1/);
});

test('a template used by linked clones cannot be deleted, and says by which', async () => {
  const r = await c.api.raw('DELETE', '/api/v1/templates/tiny');
  assert.equal(r.status, 409);
  assert.match(r.body.error!.message, /2 linked clone\(s\): clone-a, clone-b/);
});

/** The tiny guest's root is ext4 directly on the disk: read a file or a directory of it offline. */
function readTemplateDisk(file: string, request: string): string {
  const raw = path.join(c.dir, 'template-disk.raw');
  try {
    execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', file, raw]);
    return execFileSync('debugfs', ['-R', request, raw], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

test('a running VM is generalized through its guest agent, then sealed; its clones get new identities', async () => {
  const before = await c.api.request<Vm>('GET', '/api/v1/vms/clone-a');
  assert.match(before.guest.machineId ?? '', /^[0-9a-f]{32}$/, 'a machine id written at first boot');
  // The tiny guest has no SSH server: host keys are planted to be seen gone.
  const plant = await c.api.request<{ exitCode: number }>('POST', '/api/v1/vms/clone-a/exec', {
    command: [
      'sh',
      '-c',
      'mkdir -p /etc/ssh && echo k >/etc/ssh/ssh_host_ed25519_key && echo k >/etc/ssh/ssh_host_ed25519_key.pub',
    ],
  });
  assert.equal(plant.exitCode, 0);
  const sealed = await c.api.task('POST', '/api/v1/templates', { name: 'sealed', fromVm: 'clone-a' });
  assert.equal(sealed.state, 'succeeded', JSON.stringify(sealed.error));
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/clone-a')).state, 'stopped');
  const t = await c.api.request<Template>('GET', '/api/v1/templates/sealed');
  assert.equal(t.generalization, 'guest-agent');
  assert.equal(t.risk, null);
  assert.equal(t.os, 'linux', 'the generalization ran on Linux');
  assert.equal(
    backingOf(c.pool, t.disk.path),
    null,
    'the template does not depend on the VM or its template',
  );
  const disk = path.join(c.pool, t.disk.path);
  assert.match(readTemplateDisk(disk, 'stat /etc/machine-id'), /Size: 0\b/, 'machine-id kept, empty');
  assert.equal(readTemplateDisk(disk, 'cat /etc/machine-id'), '');
  const ssh = readTemplateDisk(disk, 'ls -l /etc/ssh');
  assert.doesNotMatch(ssh, /ssh_host_/, 'no SSH host key left');

  const made = await c.api.task('POST', '/api/v1/vms', {
    name: 'from-sealed',
    template: 'sealed',
    start: true,
  });
  assert.equal(made.state, 'succeeded', JSON.stringify(made.error));
  const vm = await c.api.waitVm('from-sealed', answering('from-sealed'), 120_000, 'up');
  assert.notEqual(vm.guest.machineId, before.guest.machineId);
  const { text } = await c.api.request<{ text: string }>(
    'GET',
    '/api/v1/vms/from-sealed/console?bytes=200000',
  );
  // The sealed disk carries clone-a's boots; the clone continues the count on its own disk.
  assert.match(text, /TERN-GUEST-READY hostname=from-sealed instance=\S+ boot=2\b/);

  const inUse = await c.api.raw('DELETE', '/api/v1/templates/sealed');
  assert.equal(inUse.status, 409);
  assert.equal((await c.api.task('DELETE', '/api/v1/vms/from-sealed?force=true')).state, 'succeeded');
  const gone = await c.api.task('DELETE', '/api/v1/templates/sealed');
  assert.equal(gone.state, 'succeeded', JSON.stringify(gone.error));
  assert.equal(fs.existsSync(path.join(c.pool, t.disk.path)), false);
});

test('bulk creation from the CLI makes one VM per name', () => {
  const r = spawnSync(
    path.join(repoRoot, 'bin', 'tern'),
    ['vm', 'create', 'bulk-{1..3}', '--template', 'tiny'],
    {
      encoding: 'utf8',
      env: { ...process.env, ...c.api.cliEnv },
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /3 of 3 VMs created/);
  const list = JSON.parse(
    spawnSync(path.join(repoRoot, 'bin', 'tern'), ['vm', 'list', '--name', 'bulk-', '-o', 'json'], {
      encoding: 'utf8',
      env: { ...process.env, ...c.api.cliEnv },
    }).stdout,
  ) as { items: Vm[] };
  assert.deepEqual(
    list.items.map((v) => v.name),
    ['bulk-1', 'bulk-2', 'bulk-3'],
  );
  assert.equal(new Set(list.items.map((v) => v.clientMachineId)).size, 3);
});
