/**
 * Backups through the manager against a simulated host, whose backups are real chunk files,
 * indexes and manifests (src/agent/sim/backup.ts): datastores and their key kept as a secret,
 * a VM backed up full then incrementally and listed with its figures, pruning, restoring as a
 * new VM, and the manager SIGKILLed in the middle of a backup and of a restore: after its
 * restart the task has failed and the inventory lists exactly the backups (and VMs) that exist.
 *
 * A real manager process (so the kill is a real one) drives a simulated host in this process.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { SimHost, SimHosts } from '../src/agent/sim/cluster.ts';
import { Datastore } from '../src/backup/datastore/datastore.ts';
import { DEFAULT_CHUNK_SIZE, FixedIndex } from '../src/backup/datastore/fixed-index.ts';
import type { TernError } from '../src/errors.ts';
import { openDatabase } from '../src/manager/db/database.ts';
import { openKeyStore } from '../src/manager/secrets/keystores/open.ts';
import { SecretStore } from '../src/manager/secrets/store.ts';
import { type Backup, backupRoutes, type Datastore as DatastoreWire } from '../src/wire/api/backups.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { runTern, type TestApi, tempDir } from './harness.ts';
import { KillableSimCluster, until } from './sim-harness.ts';

const dir = tempDir('tern-backup-sim');
const MiB = 1024 * 1024;
let c: KillableSimCluster;
let api: TestApi;
let sim: SimHosts;
let host: SimHost;

before(async () => {
  c = await KillableSimCluster.start(dir, 1, 50);
  api = c.api;
  sim = c.sim!;
  host = sim.hosts[0];
});

after(async () => {
  await c?.close();
});

const ended = (t: Task) => t.state === 'succeeded' || t.state === 'failed' || t.state === 'cancelled';
const tern = (...args: string[]) => runTern(args, { env: api.cliEnv });

async function makeVm(name: string, start = true): Promise<Vm> {
  // 64 MiB disks: 1024 chunks of 64 KiB (the default chunk size).
  const t = await api.task('POST', '/api/v1/vms', { name, diskGiB: 64 / 1024, start });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  return api.request<Vm>('GET', `/api/v1/vms/${name}`);
}

async function backupsOf(vm: string): Promise<Backup[]> {
  return (await api.call(backupRoutes.list, { query: { vm } })).items;
}

/** What the datastore itself holds (through its files, with its key), as `group/id`. */
async function stored(ds: DatastoreWire, key: Buffer | undefined): Promise<string[]> {
  const store = await Datastore.open(ds.path, { key });
  return (await store.listBackups()).map((b) => `${b.group}/${b.id}`).sort();
}

/** A parameter of a task, as the manager recorded it (read while no manager runs). */
async function paramOf(taskId: string, name: string): Promise<string> {
  const db = await openDatabase(path.join(dir, 'tern.db'));
  try {
    const row = await db
      .selectFrom('tasks')
      .select('params')
      .where('id', '=', taskId)
      .executeTakeFirstOrThrow();
    return (JSON.parse(row.params) as Record<string, string>)[name];
  } finally {
    await db.destroy();
  }
}

/** A datastore's key, read as the manager keeps it (the API never shows it). */
async function keyOf(ds: DatastoreWire): Promise<Buffer | undefined> {
  if (!ds.encrypted) return undefined;
  const db = await openDatabase(path.join(dir, 'tern.db'));
  try {
    const keys = openKeyStore({ kind: 'file', path: path.join(dir, 'keys', 'kek.json') });
    const secrets = await SecretStore.open(db, keys);
    return Buffer.from(await secrets.reveal(`datastore-${ds.id}-key`), 'base64');
  } finally {
    await db.destroy();
  }
}

let plain: DatastoreWire;

test('datastore create: a plain one, and an encrypted one whose key is a secret of the manager, never written on the host', async () => {
  const r = await tern(
    'backup',
    'datastore',
    'create',
    'plain',
    '--path',
    path.join(dir, 'ds-plain'),
    '--host',
    host.name,
  );
  assert.equal(r.code, 0, r.stderr);
  plain = await api.call(backupRoutes.showDatastore, { params: { datastore: 'plain' } });
  assert.equal(plain.encrypted, false);
  assert.equal(plain.host, host.name);
  assert.equal(plain.chunkSize, DEFAULT_CHUNK_SIZE);
  assert.ok(plain.status && plain.status.freeBytes > 0, JSON.stringify(plain));

  const enc = await api.call(backupRoutes.createDatastore, {
    body: { name: 'secret', path: path.join(dir, 'ds-secret'), encrypt: true },
  });
  assert.equal(enc.encrypted, true);
  assert.equal(enc.host, null, 'no host named: a shared datastore');
  const secrets = await api.request<{ items: { name: string; kind: string; object: string | null }[] }>(
    'GET',
    '/api/v1/secrets',
  );
  const key = secrets.items.find((s) => s.object === `datastore:${enc.id}`);
  assert.deepEqual(key && { kind: key.kind, name: key.name }, {
    kind: 'datastore-key',
    name: `datastore-${enc.id}-key`,
  });
  const shown = await api.request('POST', `/api/v1/secrets/${key?.name}/reveal`).then(
    () => 'shown',
    (err: Error) => err.message,
  );
  assert.match(shown, /never shown/);
  const raw = (await keyOf(enc))!;
  assert.equal(raw.length, 32);
  for (const f of fs.readdirSync(enc.path, { recursive: true }) as string[]) {
    const file = path.join(enc.path, f);
    if (!fs.statSync(file).isFile()) continue;
    const bytes = fs.readFileSync(file);
    assert.ok(!bytes.includes(raw) && !bytes.includes(raw.toString('base64')), `${f} holds the key`);
  }
  await assert.rejects(Datastore.open(enc.path), 'the datastore does not open without its key');
  await Datastore.open(enc.path, { key: raw });

  const dup = await tern('backup', 'datastore', 'create', 'plain', '--path', path.join(dir, 'other'));
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /datastore plain exists/);
  const list = await tern('backup', 'datastore', 'list');
  assert.match(list.stdout, /^plain +\S+ +sim-\S+ +no +64\.0 KiB +0$/m);
  assert.match(list.stdout, /^secret +\S+ +shared +yes +64\.0 KiB +0$/m);
});

test('backup run: a full backup, then an incremental reading only what the guest wrote, both listed with their figures', async () => {
  const vm = await makeVm('b1');
  const first = await tern('backup', 'run', 'b1', '--datastore', 'plain');
  assert.equal(first.code, 0, first.stderr);
  host.driver.writeDisk(vm.id, 0, 5 * MiB, 4096);
  host.driver.writeDisk(vm.id, 0, 40 * MiB, 4096);
  const second = await api.task('POST', '/api/v1/backups', { vm: 'b1', datastore: 'plain' });
  assert.equal(second.state, 'succeeded', JSON.stringify(second.error));
  const [inc, full] = await backupsOf('b1');
  assert.equal(full.mode, 'full');
  assert.equal(full.sizeBytes, 64 * MiB);
  assert.ok(full.newBytes > 0);
  assert.equal(inc.mode, 'incremental');
  assert.ok(inc.id > full.id, `${inc.id} after ${full.id}`);
  // Two 64 KiB granules dirty, two 64 KiB chunks read.
  assert.equal(inc.changedBytes, 2 * 64 * 1024);
  assert.equal(inc.readBytes, 2 * DEFAULT_CHUNK_SIZE);
  assert.equal(inc.disks[0].newChunks, 2);
  assert.ok(inc.dedupRatio !== null && inc.dedupRatio > 1, `dedup ${inc.dedupRatio}`);
  assert.equal(inc.verified, null);
  assert.equal(inc.proven, null);
  assert.deepEqual(await stored(plain, undefined), [`${vm.id}/${full.id}`, `${vm.id}/${inc.id}`].sort());

  const log = await api.request<Task>('GET', `/api/v1/tasks/${second.id}?log=true`);
  assert.ok(
    log.log?.some((l) =>
      /^disk0: incremental; 128\.0 KiB changed, 128\.0 KiB read, 2 of 1024 chunks new/.test(l.line),
    ),
    JSON.stringify(log.log),
  );
  const list = await tern('backup', 'list', 'b1');
  assert.match(list.stdout, new RegExp(`^b1/${inc.id} +plain +incremental +64\\.0 MiB +128\\.0 KiB `, 'm'));
  const show = await tern('backup', 'show', `b1/${inc.id}`);
  assert.match(show.stdout, /^verified: +never$/m);
});

test('backup prune: the backup leaves the inventory and the datastore; a datastore with backups is not deleted', async () => {
  const [, oldest] = await backupsOf('b1');
  const refused = await tern('backup', 'datastore', 'delete', 'plain');
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /holds 2 backup\(s\)/);
  const r = await tern('backup', 'prune', `b1/${oldest.id}`);
  assert.equal(r.code, 0, r.stderr);
  const left = await backupsOf('b1');
  assert.deepEqual(
    left.map((b) => b.id),
    left.filter((b) => b.id !== oldest.id).map((b) => b.id),
  );
  assert.equal(left.length, 1);
  assert.deepEqual(await stored(plain, undefined), [`${left[0].vm}/${left[0].id}`]);
  const missing = await tern('backup', 'show', `b1/${oldest.id}`);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no backup/);
});

test('manager SIGKILLed during backup.run: the task fails, the datastore keeps only what the inventory lists, the next backup succeeds', async () => {
  const vm = await makeVm('b-kill');
  const enc = await api.call(backupRoutes.createDatastore, {
    body: { name: 'kills', path: path.join(dir, 'ds-kills'), encrypt: true },
  });
  const key = await keyOf(enc);
  host.driver.faults.hangNext('backupVm');
  const { task } = await api.call(backupRoutes.run, { body: { vm: 'b-kill', datastore: 'kills' } });
  await until('the backup at its host', 30_000, async () => host.driver.faults.hanging > 0 || undefined);
  await c.manager.kill();
  host.driver.faults.releaseHangs();
  // The worst moment: the host committed the backup and the manager died before recording it
  // (the manifest written as the host's writer writes it, under the id the task was given).
  const backupId = await paramOf(task.id, 'backupId');
  const store = await Datastore.open(enc.path, { key });
  const index = new FixedIndex(4 * MiB, 4 * MiB);
  index.setDigest(0, (await store.chunks.insert(Buffer.alloc(4 * MiB, 7))).digest);
  await store.commitBackup(vm.id, backupId, [{ name: 'disk0', index }]);
  assert.deepEqual(await stored(enc, key), [`${vm.id}/${backupId}`]);
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  assert.equal(done.state, 'failed');
  assert.deepEqual(await backupsOf('b-kill'), []);
  assert.deepEqual(
    (await stored(enc, key)).filter((b) => b.startsWith(vm.id)),
    [],
    'the backup the host committed unrecorded is gone',
  );
  const again = await api.task('POST', '/api/v1/backups', { vm: 'b-kill', datastore: 'kills' });
  assert.equal(again.state, 'succeeded', JSON.stringify(again.error));
  const [b] = await backupsOf('b-kill');
  assert.equal(b.datastore, 'kills');
  assert.deepEqual(
    (await stored(enc, key)).filter((x) => x.startsWith(vm.id)),
    [`${vm.id}/${b.id}`],
  );
});

/** SHA-256 of a disk's bytes as a guest sees them. */
function diskSha256(file: string): string {
  const raw = `${file}.raw`;
  execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', file, raw]);
  try {
    return createHash('sha256').update(fs.readFileSync(raw)).digest('hex');
  } finally {
    fs.rmSync(raw);
  }
}

/** SHA-256 of a backed-up disk, read chunk by chunk from the datastore. */
async function backupSha256(ds: DatastoreWire, group: string, id: string, disk: string): Promise<string> {
  const store = await Datastore.open(ds.path, { key: await keyOf(ds) });
  const index = await store.readIndex(await store.readManifest(group, id), disk);
  const hash = createHash('sha256');
  for (let i = 0; i < index.count; i++) hash.update(await store.readChunk(index, i));
  return hash.digest('hex');
}

test('backup restore: a new VM from a backup, its disk byte for byte the backed-up one, started on request', async () => {
  const vm = await makeVm('r1');
  host.driver.writeDisk(vm.id, 0, 0, 64 * MiB);
  host.driver.writeDisk(vm.id, 0, 7 * MiB, 4096);
  const b = await api.task('POST', '/api/v1/backups', { vm: 'r1', datastore: 'secret' });
  assert.equal(b.state, 'succeeded', JSON.stringify(b.error));
  const [backup] = await backupsOf('r1');
  const r = await tern(
    'backup',
    'restore',
    `r1/${backup.id}`,
    '--name',
    'r1-copy',
    '--host',
    host.name,
    '--start',
    '-o',
    'json',
  );
  assert.equal(r.code, 0, r.stderr);
  const task = JSON.parse(r.stdout) as Task;
  assert.equal(task.kind, 'backup.restore');
  const copy = await api.request<Vm>('GET', '/api/v1/vms/r1-copy');
  assert.equal(copy.state, 'running');
  assert.notEqual(copy.id, vm.id);
  assert.equal(copy.disks.length, 1);
  assert.equal(copy.disks[0].sizeBytes, 64 * MiB);
  assert.notEqual(copy.nics[0].mac, vm.nics[0].mac, 'a new MAC');
  const file = path.join(host.pools[copy.disks[0].volume.pool], copy.disks[0].volume.path);
  const expected = await backupSha256(
    await api.call(backupRoutes.showDatastore, { params: { datastore: 'secret' } }),
    vm.id,
    backup.id,
    'disk0',
  );
  assert.equal(diskSha256(file), expected);
  assert.equal((task.result as { disks: { sha256: string }[] }).disks[0].sha256, expected);

  const inPlace = await tern('backup', 'restore', `r1/${backup.id}`, '--in-place');
  assert.notEqual(inPlace.code, 0);
  assert.match(inPlace.stderr, /add --yes/);
  const running = await api
    .call(backupRoutes.restore, {
      params: { vm: 'r1', backup: backup.id },
      body: { mode: 'in-place', confirm: true },
    })
    .then(
      () => 'accepted',
      (err: Error) => err.message,
    );
  assert.match(running, /shut it down before restoring it in place/);
});

test('manager SIGKILLed during backup.restore: the task fails and the half-restored VM and its volumes are gone', async () => {
  const [backup] = await backupsOf('r1');
  const { task } = await api.call(backupRoutes.restore, {
    params: { vm: 'r1', backup: backup.id },
    // 64 MiB at 8 MiB/s: the restore is under way when the manager dies.
    body: { name: 'r1-killed', bandwidth: 8 * MiB },
  });
  const target = await api.request<Vm>('GET', '/api/v1/vms/r1-killed');
  const file = path.join(host.pools[target.disks[0].volume.pool], target.disks[0].volume.path);
  // Under way, its step telling bytes written, speed and time left.
  const restoring = await api.waitTask(
    task.id,
    (t) => /^disk0: .* of 64\.0 MiB written, .* written, [\d.]+ \S+\/s, ETA \d/.test(t.step) || ended(t),
    30_000,
    'restoring',
  );
  assert.equal(restoring.state, 'running', JSON.stringify(restoring));
  assert.ok(fs.existsSync(file));
  await c.manager.kill();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  assert.equal(done.state, 'failed');
  const vms = await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000');
  assert.deepEqual(
    vms.items.filter((v) => v.name === 'r1-killed'),
    [],
  );
  await until('the volume removed', 10_000, async () => !fs.existsSync(file) || undefined);
  const vmDir = path.dirname(file);
  assert.ok(!fs.existsSync(vmDir) || fs.readdirSync(vmDir).length === 0, 'nothing left of the VM');
});

test('verify and gc: every backup checks out, a damaged chunk fails verify and is named; gc keeps what backups name', async () => {
  const v = await tern('backup', 'verify', 'secret');
  assert.equal(v.code, 0, v.stderr);
  const [b] = await backupsOf('r1');
  assert.equal(b.verified?.ok, true);
  const g = await api.task('POST', `/api/v1/backup/datastores/secret/gc`);
  assert.equal(g.state, 'succeeded', JSON.stringify(g.error));
  // Damage one chunk the backup names.
  const ds = await api.call(backupRoutes.showDatastore, { params: { datastore: 'secret' } });
  const store = await Datastore.open(ds.path, { key: await keyOf(ds) });
  const index = await store.readIndex(await store.readManifest(b.vm, b.id), 'disk0');
  const chunk = store.chunks.pathOf(index.digest(1));
  const bytes = fs.readFileSync(chunk);
  bytes[bytes.length - 1] ^= 0xff;
  fs.writeFileSync(chunk, bytes);
  const bad = await api.task('POST', `/api/v1/backup/datastores/secret/verify`, { vm: 'r1' });
  assert.equal(bad.state, 'failed');
  assert.match(bad.error?.message ?? '', /failed verification/);
  const [after] = await backupsOf('r1');
  assert.equal(after.verified?.ok, false);
  assert.ok(after.verified?.problems.length, JSON.stringify(after.verified));
});

test('refusals are clear and leave nothing behind: a path already a datastore, a chunk size, an unconfirmed in-place restore, a missing pool', async () => {
  const before = await api.request<{ items: { name: string }[] }>('GET', '/api/v1/secrets');
  const again = await api
    .call(backupRoutes.createDatastore, {
      body: { name: 'again', path: path.join(dir, 'ds-secret'), encrypt: true },
    })
    .then(
      () => 'made',
      (err: TernError) => `${err.code}: ${err.message}`,
    );
  assert.match(again, /^conflict: /);
  const after = await api.request<{ items: { name: string }[] }>('GET', '/api/v1/secrets');
  assert.deepEqual(
    after.items.map((s) => s.name).sort(),
    before.items.map((s) => s.name).sort(),
    'no key left',
  );
  assert.equal((await api.call(backupRoutes.datastores)).items.filter((d) => d.name === 'again').length, 0);

  const odd = await api
    .call(backupRoutes.createDatastore, {
      body: { name: 'odd', path: path.join(dir, 'ds-odd'), chunkSize: 3 * MiB },
    })
    .then(
      () => 'made',
      (err: TernError) => `${err.code}: ${err.message}`,
    );
  assert.match(odd, /^invalid_request: chunkSize must be a power of two/);

  const [backup] = await backupsOf('r1');
  const unconfirmed = await api
    .call(backupRoutes.restore, { params: { vm: 'r1', backup: backup.id }, body: { mode: 'in-place' } })
    .then(
      () => 'accepted',
      (err: TernError) => `${err.code}: ${err.message}`,
    );
  assert.match(unconfirmed, /^invalid_request: an in-place restore overwrites/);
  const noPool = await api
    .call(backupRoutes.restore, { params: { vm: 'r1', backup: backup.id }, body: { pool: 'nowhere' } })
    .then(
      () => 'accepted',
      (err: TernError) => `${err.code}: ${err.message}`,
    );
  assert.match(noPool, /^no_capacity: no host is online to run VMs with storage pool nowhere/);
  const vms = await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000');
  assert.deepEqual(
    vms.items.filter((v) => v.name.startsWith('r1-restored')),
    [],
  );
  const noBackup = await tern('backup', 'show', 'r1/2020-01-01T00-00-00Z');
  assert.notEqual(noBackup.code, 0);
  assert.match(noBackup.stderr, /no backup 2020-01-01T00-00-00Z of VM r1/);
});

test('host down mid-backup: the task fails once the host is back and has removed the backup; the next backup reads the crashed VM whole and says why', async () => {
  const vm = await makeVm('b-power');
  await makeVm('b-other', false);
  host.driver.writeDisk(vm.id, 0, 0, 8 * MiB);
  const first = await api.task('POST', '/api/v1/backups', { vm: 'b-power', datastore: 'plain' });
  assert.equal(first.state, 'succeeded', JSON.stringify(first.error));
  host.driver.faults.hangNext('backupVm');
  const { task } = await api.call(backupRoutes.run, { body: { vm: 'b-power', datastore: 'plain' } });
  await until('the backup at its host', 30_000, async () => host.driver.faults.hanging > 0 || undefined);
  host.driver.powerOff();
  host.driver.faults.releaseHangs();
  await api.waitTask(task.id, (t) => t.step.startsWith('waiting for host') || ended(t), 60_000, 'waiting');
  // Another VM of the host meanwhile is refused at once: nothing was asked, nothing to wait for.
  await api.waitHost(host.name, (h) => h.state === 'offline', 30_000, 'offline');
  const asked = Date.now();
  const refused = await api.task('POST', '/api/v1/backups', { vm: 'b-other', datastore: 'plain' });
  assert.equal(refused.state, 'failed');
  assert.equal(refused.error?.code, 'conflict', JSON.stringify(refused.error));
  assert.ok(Date.now() - asked < 10_000, `refused after ${Date.now() - asked} ms`);
  host.driver.powerOn();
  await host.settled();
  await c.hostsOnline();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  assert.equal(done.state, 'failed');
  const backups = await backupsOf('b-power');
  assert.equal(backups.length, 1);
  assert.deepEqual(
    (await stored(plain, undefined)).filter((b) => b.startsWith(vm.id)),
    [`${vm.id}/${backups[0].id}`],
  );
  const crashed = await api.waitVm(
    'b-power',
    (v) => v.state === 'crashed' || v.state === 'stopped',
    30_000,
    'down',
  );
  if (crashed.state === 'crashed') {
    const start = await api.task('POST', '/api/v1/vms/b-power/start');
    assert.equal(start.state, 'succeeded', JSON.stringify(start.error));
  }
  const next = await api.task('POST', '/api/v1/backups', { vm: 'b-power', datastore: 'plain' });
  assert.equal(next.state, 'succeeded', JSON.stringify(next.error));
  const [latest] = await backupsOf('b-power');
  assert.equal(latest.mode, 'full');
  assert.ok(latest.disks[0].fullReason, 'a full read says why');
  // Read whole, stored almost nothing new: the chunks were there.
  assert.equal(latest.disks[0].newChunks, 0, JSON.stringify(latest.disks[0]));
});

test('restore in place: from a damaged backup it fails loudly and says the disks are partly restored; from a whole one the VM gets it back, and its next backup builds on nothing, saying why', async () => {
  const stop = await api.task('POST', '/api/v1/vms/r1/stop');
  assert.equal(stop.state, 'succeeded', JSON.stringify(stop.error));
  // The backup whose chunk the verify test damaged (and set aside).
  const [damaged] = await backupsOf('r1');
  const bad = await tern('backup', 'restore', `r1/${damaged.id}`, '--in-place', '--yes');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /needs chunk 1: chunk [0-9a-f]{64} is missing/);
  assert.match((await api.request<Vm>('GET', '/api/v1/vms/r1')).stateReason ?? '', /partly restored/);

  const fresh = await api.task('POST', '/api/v1/backups', { vm: 'r1', datastore: 'secret' });
  assert.equal(fresh.state, 'succeeded', JSON.stringify(fresh.error));
  const [backup] = await backupsOf('r1');
  assert.equal(backup.mode, 'full');
  const r = await tern('backup', 'restore', `r1/${backup.id}`, '--in-place', '--yes');
  assert.equal(r.code, 0, r.stderr);
  const vm = await api.request<Vm>('GET', '/api/v1/vms/r1');
  assert.equal(vm.state, 'stopped');
  assert.equal(vm.stateReason, null);
  const file = path.join(host.pools[vm.disks[0].volume.pool], vm.disks[0].volume.path);
  const ds = await api.call(backupRoutes.showDatastore, { params: { datastore: 'secret' } });
  assert.equal(diskSha256(file), await backupSha256(ds, vm.id, backup.id, 'disk0'));
  const next = await api.task('POST', '/api/v1/backups', { vm: 'r1', datastore: 'secret' });
  assert.equal(next.state, 'succeeded', JSON.stringify(next.error));
  const [latest] = await backupsOf('r1');
  assert.equal(latest.mode, 'full');
  const log = await api.request<Task>('GET', `/api/v1/tasks/${next.id}?log=true`);
  assert.ok(
    log.log?.some((l) => /^read whole: the disks were restored in place at /.test(l.line)),
    JSON.stringify(log.log),
  );
});

test('manager SIGKILLed during a live restore: the task resumes, the VM runs restored, once', async () => {
  const [backup] = await backupsOf('r1');
  host.driver.faults.hangNext('streamLiveRestore');
  const { task } = await api.call(backupRoutes.restore, {
    params: { vm: 'r1', backup: backup.id },
    body: { name: 'r1-live', live: true },
  });
  await until('the stream at its host', 30_000, async () => {
    if (host.driver.faults.hanging > 0) return true;
    const t = await api.request<Task>('GET', `/api/v1/tasks/${task.id}`);
    assert.ok(!ended(t), `the live restore ended before its stream: ${JSON.stringify(t)}`);
    return undefined;
  });
  await c.manager.kill();
  // The host carries on while no manager is there: the stream ends unrecorded.
  host.driver.faults.releaseHangs();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  assert.equal(done.kind, 'backup.restore.live');
  const vm = await api.request<Vm>('GET', '/api/v1/vms/r1-live');
  assert.equal(vm.state, 'running');
  assert.equal(host.driver.list().filter((v) => v.id === vm.id && v.state === 'running').length, 1);
  const vms = await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000');
  assert.equal(vms.items.filter((v) => v.name === 'r1-live').length, 1);
});

test('manager SIGKILLed during backup.sync: the task resumes and the target holds each backup once, all listed', async () => {
  const offsite = await api.call(backupRoutes.createDatastore, {
    body: { name: 'offsite', path: path.join(dir, 'ds-offsite'), encrypt: true },
  });
  const source = (await api.call(backupRoutes.list, { query: { datastore: 'plain' } })).items;
  assert.ok(source.length >= 2);
  const { task } = await api.request<{ task: Task }>('POST', '/api/v1/backup/datastores/plain/sync', {
    target: 'offsite',
    encryptedOnly: true,
  });
  await api.waitTask(task.id, (t) => t.state === 'running' || ended(t), 30_000, 'running');
  await c.manager.kill();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  const copies = (await api.call(backupRoutes.list, { query: { datastore: 'offsite' } })).items;
  const ids = (l: Backup[]) => l.map((b) => `${b.vmName}/${b.id}`).sort();
  assert.deepEqual(ids(copies), ids(source));
  const key = await keyOf(offsite);
  assert.deepEqual(
    await stored(offsite, key),
    source.map((b) => `${b.vm}/${b.id}`).sort(),
    'the offsite datastore holds each backup once, each with its manifest',
  );
});

test('one disk restored in place: the disk asked for gets the backup back, the other stays as it is; a disk the backup lacks is refused', async () => {
  const vm = await makeVm('two');
  const attached = await api.task('POST', '/api/v1/vms/two/disks', { sizeGiB: 32 / 1024 });
  assert.equal(attached.state, 'succeeded', JSON.stringify(attached.error));
  host.driver.writeDisk(vm.id, 0, 0, 8 * MiB);
  host.driver.writeDisk(vm.id, 1, 0, 32 * MiB);
  const b = await api.task('POST', '/api/v1/backups', { vm: 'two', datastore: 'secret' });
  assert.equal(b.state, 'succeeded', JSON.stringify(b.error));
  const [backup] = await backupsOf('two');
  assert.equal((await api.task('POST', '/api/v1/vms/two/stop')).state, 'succeeded');
  const two = await api.request<Vm>('GET', '/api/v1/vms/two');
  const files = two.disks.map((d) => path.join(host.pools[d.volume.pool], d.volume.path));
  const before = files.map(diskSha256);
  const ds = await api.call(backupRoutes.showDatastore, { params: { datastore: 'secret' } });

  const missing = await api
    .call(backupRoutes.restore, {
      params: { vm: 'two', backup: backup.id },
      body: { mode: 'in-place', confirm: true, disks: ['disk7'] },
    })
    .then(
      () => 'accepted',
      (err: Error) => err.message,
    );
  assert.match(missing, /has no disk disk7 \(it has disk0, disk1\)/);

  const r = await tern('backup', 'restore', `two/${backup.id}`, '--in-place', '--yes', '--disk', 'disk1');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(diskSha256(files[1]!), await backupSha256(ds, vm.id, backup.id, 'disk1'));
  assert.equal(diskSha256(files[0]!), before[0], 'disk0 is left as it was');
  assert.notEqual(before[1], diskSha256(files[1]!), 'disk1 was written');
});
