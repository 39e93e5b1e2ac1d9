/**
 * The real cloud guest (guest/cloud: Debian 12 with systemd, cloud-init, qemu-guest-agent and
 * OpenSSH, a self-booting disk as a user brings one) taken through Tern with the CLI only:
 * imported, booted, customised through the guest agent, its disk grown inside the guest,
 * sealed into a template and cloned twice. The clones have identities of their own and keep
 * the customisation; a reboot is done only once the guest has booted again; a guest that
 * cannot power off makes reboot and shutdown fail with the guest agent's own reason.
 *
 * Debian boots in one to three minutes under TCG, so the file boots one base VM and two
 * clones (in parallel), and every step has a bound.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { type CloudGuest, type Cluster, cloudGuest, runTern, startCluster, type TernRun } from './harness.ts';

let c: Cluster;
let guest: CloudGuest;

before(async () => {
  guest = cloudGuest();
  // The image directory is the one place an import by path may read from.
  c = await startCluster('cloud-guest', { importDirs: [guest.dir] });
});
/** Scenarios that ran to their end: the cluster's 1.2 GB of disks are kept only if one did not. */
let completed = 0;
const scenarios = 5;
after(async () => {
  await c?.stop();
  if (c && completed === scenarios) fs.rmSync(c.dir, { recursive: true, force: true });
});

/** A run of the CLI that must end within `ms`. */
async function tern(ms: number, ...args: string[]): Promise<TernRun> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`tern ${args.join(' ')}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([runTern(args, { env: c.api.cliEnv }), bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** The CLI run succeeded; its stdout. */
async function ok(ms: number, ...args: string[]): Promise<string> {
  const r = await tern(ms, ...args);
  assert.equal(r.code, 0, `tern ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** stdout of a command in the guest (`tern vm exec`), which must succeed. */
const inGuest = (vm: string, ...command: string[]) =>
  ok(90_000, 'vm', 'exec', vm, '--timeout', '60', '--', ...command);

async function bootId(vm: string): Promise<string> {
  const id = (await ok(60_000, 'vm', 'file', 'get', vm, '/proc/sys/kernel/random/boot_id')).trim();
  assert.match(id, /^[0-9a-f-]{36}$/);
  return id;
}

/** The guest's agent answers and cloud-init has finished its first boot. */
async function booted(vm: string): Promise<void> {
  await c.api.waitVm(vm, (v) => v.guest.agent === 'responding', 600_000, 'answering through its guest agent');
  const status = await ok(
    420_000,
    'vm',
    'exec',
    vm,
    '--timeout',
    '360',
    '--',
    'cloud-init',
    'status',
    '--wait',
  );
  assert.match(status, /status: done/);
}

/** What tells a clone from another: machine-id and the SSH host key fingerprints. */
async function identity(vm: string): Promise<{ machineId: string; hostKeys: string }> {
  const machineId = (await ok(60_000, 'vm', 'file', 'get', vm, '/etc/machine-id')).trim();
  assert.match(machineId, /^[0-9a-f]{32}$/, `${vm}: a machine-id`);
  const hostKeys = await inGuest(
    vm,
    'sh',
    '-c',
    'for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$k"; done',
  );
  assert.match(hostKeys, /ED25519/, `${vm}: SSH host keys`);
  return { machineId, hostKeys };
}

let baseIdentity: { machineId: string; hostKeys: string };

test('import the cloud image, boot a VM from it and customise it through the guest agent', {
  timeout: 900_000,
}, async () => {
  await ok(300_000, 'image', 'import', 'debian12', '--path', guest.disk);
  await ok(300_000, 'vm', 'create', 'base', '--image', 'debian12', '--memory', '1G', '--start');
  await booted('base');
  baseIdentity = await identity('base');
  await inGuest('base', 'sh', '-c', 'echo customised-in-base > /etc/tern-custom');
  assert.equal(
    (await ok(60_000, 'vm', 'file', 'get', 'base', '/etc/tern-custom')).trim(),
    'customised-in-base',
  );
  completed++;
});

test('a disk grown with --grow-fs is grown inside the guest: partition and root filesystem', async () => {
  const rootSize = async () =>
    Number((await inGuest('base', 'df', '-B1', '--output=size', '/')).split('\n')[1]);
  const before = await rootSize();
  await ok(300_000, 'vm', 'disk', 'resize', 'base', '0', '4G', '--grow-fs');
  const grown = await rootSize();
  // From a 2 GiB disk to 4 GiB: the root filesystem, the last partition, takes the new space.
  assert.ok(grown > before + 1.5 * 2 ** 30, `root filesystem ${before} -> ${grown} bytes`);
  assert.match(await inGuest('base', 'lsblk', '-bno', 'SIZE', '/dev/vda'), /^4294967296$/m);
  completed++;
});

test('sealing generalizes: two clones of the template have their own machine-id and SSH host keys', {
  timeout: 1_200_000,
}, async () => {
  await ok(600_000, 'template', 'create', 'deb-t', '--from-vm', 'base');
  // Both clones boot at once: under TCG that is the longest wait of the file.
  await Promise.all(
    ['c1', 'c2'].map((n) =>
      ok(300_000, 'vm', 'create', n, '--template', 'deb-t', '--memory', '1G', '--start'),
    ),
  );
  await Promise.all(['c1', 'c2'].map(booted));
  const [i1, i2] = await Promise.all(['c1', 'c2'].map(identity));
  assert.notEqual(i1.machineId, i2.machineId, 'the clones have different machine-ids');
  assert.notEqual(i1.machineId, baseIdentity.machineId);
  assert.notEqual(i1.hostKeys, i2.hostKeys, 'the clones have different SSH host keys');
  assert.notEqual(i1.hostKeys, baseIdentity.hostKeys);
  for (const vm of ['c1', 'c2'])
    assert.equal(
      (await ok(60_000, 'vm', 'file', 'get', vm, '/etc/tern-custom')).trim(),
      'customised-in-base',
    );
  completed++;
});

const rebootOneClone = async () => {
  const before = await bootId('c1');
  await ok(400_000, 'vm', 'reboot', 'c1', '--timeout', '360');
  // Right after the reboot reported success, the guest answers from its new boot.
  assert.notEqual(await bootId('c1'), before, 'a new boot id');
  completed++;
};

const powerOffImpossible = async () => {
  // No logind (so the ACPI power button does nothing) and a shutdown command that fails, as on
  // a guest whose agent cannot power it off. /sbin/shutdown, what qemu-ga runs, is a link to
  // systemctl on Debian: it now points at false instead.
  await inGuest(
    'c2',
    'sh',
    '-c',
    'systemctl mask --now systemd-logind && ln -sfn /bin/false /usr/sbin/shutdown && ! /sbin/shutdown -h now',
  );
  const before = await bootId('c2');

  const reboot = await tern(200_000, 'vm', 'reboot', 'c2', '--timeout', '120');
  assert.notEqual(reboot.code, 0, `reboot must fail: ${reboot.stdout}`);
  assert.match(reboot.stderr, /guest agent/i);
  assert.match(reboot.stderr, /failed to shutdown/);
  assert.doesNotMatch(reboot.stdout + reboot.stderr, /succeeded/);

  const shutdown = await tern(200_000, 'vm', 'shutdown', 'c2', '--timeout', '20');
  assert.notEqual(shutdown.code, 0, `shutdown must fail: ${shutdown.stdout}`);
  assert.match(shutdown.stderr, /guest agent/i);
  assert.match(shutdown.stderr, /failed to shutdown/);

  // Nothing happened: the same boot, still running.
  assert.equal(await bootId('c2'), before);
  assert.match(await ok(60_000, 'vm', 'show', 'c2'), /running/);
  completed++;
};

// The two clones' power actions are independent: they run at the same time.
test('the clones: power actions', { concurrency: 2, timeout: 600_000 }, async (t) => {
  await Promise.all([
    t.test('vm reboot is done only once the guest has booted again', rebootOneClone),
    t.test(
      'a guest that cannot power off: reboot and shutdown fail with the guest agent reason',
      powerOffImpossible,
    ),
  ]);
});
