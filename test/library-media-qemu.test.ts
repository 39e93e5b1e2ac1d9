/**
 * The library's media with real QEMU: the tiny guest's live ISO boots from a VM's CD-ROM over a
 * blank disk, and its medium is ejected and put back while the guest runs (the guest sees it);
 * a VM made from the tiny guest's disk image is a linked clone on the image's stored file; a
 * UEFI VM runs under OVMF with its own variable store, which goes with the VM.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { GuestExecResult } from '../src/wire/guest-command.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, guestDir, startCluster } from './harness.ts';
import { until } from './sim-harness.ts';

interface Manifest {
  disk: string;
  iso: string;
  iso_marker: string;
}

let c: Cluster;
let manifest: Manifest;

async function succeeds(method: string, url: string, body?: unknown): Promise<Task> {
  const t = await c.api.task(method, url, body);
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  return t;
}

const consoleText = async (vm: string) =>
  (await c.api.request<{ text: string }>('GET', `/api/v1/vms/${vm}/console?bytes=65536`)).text;

/** The QEMU command line of a VM, from /proc. */
function qemuArgs(vmId: string): string[] {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args[0].includes('qemu-system') && args.includes(vmId)) return args;
    } catch {
      // It ended while we looked.
    }
  }
  return [];
}

before(async () => {
  const dir = guestDir();
  manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
  c = await startCluster('library-media', { importDirs: [dir] });
  await succeeds('POST', '/api/v1/images', {
    name: 'live',
    kind: 'iso',
    sourcePath: path.join(dir, manifest.iso),
  });
  await succeeds('POST', '/api/v1/images', { name: 'tinydisk', sourcePath: path.join(dir, manifest.disk) });
});

after(async () => {
  await c?.stop();
});

test('--iso: the live CD boots over a blank disk; eject and insert while it runs, seen by the guest', async () => {
  await succeeds('POST', '/api/v1/vms', {
    name: 'cd1',
    iso: 'live',
    diskGiB: 0.0625,
    memoryMiB: 256,
    start: true,
  });
  await c.api.waitVm('cd1', (v) => v.guest.agent === 'responding', 120_000, 'booted from the CD');
  assert.ok((await consoleText('cd1')).includes(`TERN-ISO-BOOT marker=${manifest.iso_marker}`));
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/cd1');
  assert.equal(vm.cdrom?.image, 'live');
  assert.ok(vm.vncPort, 'a VNC console to install through');

  const exec = (command: string[]) =>
    c.api.request<GuestExecResult>('POST', '/api/v1/vms/cd1/exec', { command });
  /** What the guest finds in its CD drive: a readable medium, or why not. */
  const drive = async () => {
    const r = await exec(['dd', 'if=/dev/sr0', 'of=/dev/null', 'bs=2048', 'count=1', 'iflag=direct']);
    return r.exitCode === 0 ? 'medium' : Buffer.from(r.stderr, 'base64').toString().trim();
  };
  assert.equal(await drive(), 'medium');

  // The live system has the CD mounted, so its tray is locked: forced open.
  const locked = await c.api.task('DELETE', '/api/v1/vms/cd1/cdrom');
  assert.equal(locked.state, 'failed');
  assert.match(locked.error!.message, /keeps its CD-ROM tray locked.*force/);
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/cd1')).cdrom?.image, 'live');
  await succeeds('DELETE', '/api/v1/vms/cd1/cdrom?force=true');
  assert.deepEqual((await c.api.request<Vm>('GET', '/api/v1/vms/cd1')).cdrom, { medium: null, image: null });
  assert.match(await drive(), /No medium found/);

  await succeeds('POST', '/api/v1/vms/cd1/cdrom', { image: 'live' });
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/cd1')).cdrom?.image, 'live');
  // The guest learns of the new medium from its drive's media-change event.
  await until('the guest reading the medium again', 20_000, async () =>
    (await drive()) === 'medium' ? true : undefined,
  );
  await succeeds('DELETE', '/api/v1/vms/cd1?force=true');
});

test('--image: the first disk is a linked clone on the image stored file, which cannot go while it is used', async () => {
  const linked = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
    name: 'img1',
    image: 'tinydisk',
    diskGiB: 1,
  });
  assert.equal((await c.api.settle(linked.task)).state, 'succeeded');
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/img1');
  const file = path.join(c.pool, vm.disks[0].volume.path);
  const chain = JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '--backing-chain', '--output=json', file], { encoding: 'utf8' }),
  ) as { filename: string; 'virtual-size': number; 'backing-filename'?: string }[];
  assert.equal(chain.length, 2);
  assert.equal(chain[0]['virtual-size'], 1024 ** 3);
  assert.equal(chain[1].filename, path.join(c.pool, 'images/tinydisk.qcow2'));
  assert.equal(vm.disks[0].sizeBytes, 1024 ** 3);

  const gone = await c.api.raw('DELETE', '/api/v1/images/tinydisk');
  assert.equal(gone.status, 409);
  await succeeds('DELETE', '/api/v1/vms/img1');
});

test('--firmware uefi: OVMF from two pflash units; the variable store moves with a live migration and goes with the VM', async () => {
  await succeeds('POST', '/api/v1/vms', {
    name: 'efi1',
    diskGiB: 0.0625,
    memoryMiB: 256,
    firmware: 'uefi',
    start: true,
  });
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/efi1');
  assert.equal(vm.firmware, 'uefi');
  const vars = path.join(c.pool, `vms/${vm.id}/efivars.fd`);
  assert.equal(fs.statSync(vars).size, fs.statSync('/usr/share/OVMF/OVMF_VARS_4M.fd').size);
  const args = qemuArgs(vm.id);
  assert.ok(
    args.some((a) => a.endsWith(',pflash0=pflash0,pflash1=pflash1')),
    args.join(' '),
  );
  assert.ok(args.some((a) => a.includes('OVMF_CODE_4M.fd') && a.includes('read-only=on')));
  assert.ok(args.some((a) => a.includes(vars) && a.includes('read-only=off')));
  // OVMF's boot manager reports on the serial console as it tries the boot devices, having
  // recorded them as variables in the VM's own store.
  await until('OVMF at its boot manager', 90_000, async () =>
    /BdsDxe/.test(await consoleText('efi1')) ? true : undefined,
  );
  const bootOrder = Buffer.from('BootOrder', 'utf16le');
  assert.ok(fs.readFileSync(vars).includes(bootOrder), 'the guest wrote its boot order');
  assert.ok(!fs.readFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd').includes(bootOrder));

  // On local storage the target makes an empty store; QEMU carries its content with the guest.
  const b = await c.addHost('b');
  await succeeds('POST', '/api/v1/vms/efi1/migrate', { to: 'b' });
  const moved = await c.api.request<Vm>('GET', '/api/v1/vms/efi1');
  assert.equal(moved.host, 'b');
  assert.equal(moved.state, 'running');
  const target = path.join(b.pool, `vms/${vm.id}/efivars.fd`);
  await until('the variables written to the target store', 20_000, async () =>
    fs.readFileSync(target).includes(bootOrder) ? true : undefined,
  );
  assert.ok(!fs.existsSync(vars), 'the source store went with the source');
  await succeeds('DELETE', '/api/v1/vms/efi1?force=true');
  assert.ok(!fs.existsSync(target));
});
