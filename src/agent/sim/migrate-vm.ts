/**
 * Both sides of a simulated VM's migration and its disk moves, on the VMs of one host
 * (vms.ts): the target waits paused for the state (prepare, finish, abort), the source sends
 * it through a migration run (migration.ts) and is released once it arrived.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type {
  FinishIncomingResult,
  IncomingMigration,
  IncomingMigrationRequest,
  MigrateRequest,
  MigrationReport,
  MoveDiskRequest,
} from '../../wire/agent.ts';
import { diskSlot, type VmSpec, type VolumeRef } from '../../wire/vm.ts';
import { diskNodes } from '../qemu/command-line.ts';
import { resolveVolume } from '../storage/pools.ts';
import { createVolume, deleteVolume } from '../storage/volumes.ts';
import {
  allocatedBytes,
  type IncomingEntry,
  incoming,
  MigrationRun,
  readStateFile,
  type SourceSide,
  simNbdPort,
} from './migration.ts';
import type { SimVm, SimVms } from './vms.ts';

const MiB = 1024 * 1024;

/** The host's links as a migration sees them. */
export interface SimLink {
  /** The migration network (MiB/s). */
  networkMiBps: number;
  /** Local disk throughput for state files and disk moves (MiB/s). */
  diskMiBps: number;
  /** Whether the host can be reached now (network up, power on). */
  reachable(): boolean;
}

export async function prepareIncoming(
  host: SimVms,
  link: SimLink,
  req: IncomingMigrationRequest,
): Promise<IncomingMigration> {
  const { spec } = req;
  const existing = host.vms.get(spec.id);
  if (existing && existing.state !== 'crashed') {
    throw new TernError('conflict', `VM ${spec.name} already is on ${host.hostname} (${existing.state})`);
  }
  if (req.mode === 'quick' && !req.stateFile)
    throw new TernError('invalid_request', 'a quick migration needs a state file');
  const uri = `sim://${host.hostname}/${spec.id}`;
  if (incoming.byUri(uri)) throw new TernError('conflict', `a migration of ${spec.name} is already expected`);
  host.reserveMemory(spec);
  const created: VolumeRef[] = [];
  try {
    if (req.storage === 'mirror') {
      for (const c of req.create ?? []) {
        await createVolume(host.pools, { volume: c.volume, format: c.format, sizeBytes: c.sizeBytes });
        created.push(c.volume);
      }
    }
    host.checkVolumes(spec);
    // The volumes took time: the same request may have come twice, another VM may have
    // taken the memory meanwhile.
    if (host.vms.get(spec.id) !== existing || incoming.byUri(uri))
      throw new TernError('conflict', `a migration of ${spec.name} is already expected`);
    host.reserveMemory(spec);
  } catch (err) {
    for (const ref of created) deleteVolume(host.pools, ref);
    throw err;
  }
  const nbd =
    req.storage === 'mirror'
      ? {
          host: req.listenHost,
          port: simNbdPort(),
          drives: writableDrives(spec).map(([drive]) => drive),
        }
      : null;
  host.stopped.delete(spec.id);
  if (existing) host.discard(existing);
  await host.plugPorts(spec).catch((err) => {
    for (const ref of created) deleteVolume(host.pools, ref);
    throw err;
  });
  const vm = host.add(spec, 'paused', 'incoming migration');
  const pools = host.pools;
  const entry: IncomingEntry = {
    vmId: spec.id,
    uri,
    nbd: nbd ? `${nbd.host}:${nbd.port}` : null,
    networkMiBps: link.networkMiBps,
    reachable: () => link.reachable(),
    driveFiles: () =>
      new Map(writableDrives(vm.spec).map(([drive, ref]) => [drive, resolveVolume(pools, ref)])),
    carried: null,
  };
  incoming.add(entry);
  vm.incoming = { entry, stateFile: req.stateFile ?? null, created };
  host.emit(vm);
  return { uri, nbd };
}

export async function finishIncoming(host: SimVms, id: string): Promise<FinishIncomingResult> {
  const vm = host.vms.get(id);
  if (!vm) throw new TernError('not_found', `VM ${id} is not on this host`);
  // A repeated finish of a VM that already runs here is done.
  if (!vm.incoming && vm.state === 'running') return { vm: host.snapshot(vm), resumedAt: host.clock.now() };
  if (!vm.incoming) throw new TernError('conflict', `VM ${vm.spec.name} is not waiting for a migration`);
  const carried = vm.incoming.stateFile
    ? readStateFile(resolveVolume(host.pools, vm.incoming.stateFile))
    : vm.incoming.entry.carried;
  if (!carried)
    throw new TernError(
      'conflict',
      `the migration state of ${vm.spec.name} has not arrived on ${host.hostname}`,
    );
  host.unregister(vm);
  vm.incoming = null;
  vm.state = 'running';
  vm.reason = null;
  vm.boots = carried.boots;
  vm.dirtyMiBps = carried.dirtyMiBps;
  vm.booted = carried.booted;
  vm.guest = carried.guest;
  if (vm.guest.agent === 'responding') vm.guest.lastHeartbeat = new Date().toISOString();
  host.consoles.set(id, carried.console);
  if (!vm.booted) host.scheduleBoot(vm);
  host.emit(vm);
  return { vm: host.snapshot(vm), resumedAt: host.clock.now() };
}

export async function abortIncoming(host: SimVms, id: string): Promise<void> {
  const vm = host.vms.get(id);
  if (!vm) return;
  if (!vm.incoming) {
    throw new TernError(
      'conflict',
      `VM ${vm.spec.name} runs on ${host.hostname}; it is not waiting for a migration`,
    );
  }
  for (const ref of vm.incoming.created) deleteVolume(host.pools, ref);
  host.discard(vm);
  host.consoles.delete(id);
  host.events.emit('gone', id);
}

export async function migrateOut(
  host: SimVms,
  link: SimLink,
  id: string,
  req: MigrateRequest,
  progress: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<MigrationReport & { type: 'done' }> {
  const vm = host.vms.get(id);
  if (!vm) throw new TernError('not_found', `VM ${id} is not running on this host`);
  const name = vm.spec.name;
  if (vm.state !== 'running' && vm.state !== 'paused')
    throw new TernError('conflict', `VM ${name} is ${vm.state}`);
  if (vm.incoming || vm.migratedAway || vm.migration)
    throw new TernError('conflict', `VM ${name} is already migrating`);
  if (req.mode === 'quick' && !req.stateFile)
    throw new TernError('invalid_request', 'a quick migration needs a state file');
  const entry = req.mode === 'live' ? reachIncoming(req, vm) : null;
  const abort = new AbortController();
  vm.migration = abort;
  const run = new MigrationRun(
    sourceSide(host, vm),
    progress,
    signal,
    AbortSignal.any([signal, abort.signal]),
  );
  const net = link.networkMiBps;
  try {
    if (req.nbd) {
      const peer = incoming.byNbd(`${req.nbd.host}:${req.nbd.port}`);
      await run.mirrorDisks(req.nbd, bandwidth(req, net, peer?.networkMiBps));
    }
    if (entry) return await run.live(req, entry, bandwidth(req, net, entry.networkMiBps));
    return await run.quick(resolveVolume(host.pools, req.stateFile!), bandwidth(req, link.diskMiBps));
  } finally {
    vm.migration = null;
  }
}

export async function releaseMigrated(host: SimVms, id: string): Promise<void> {
  const vm = host.vms.get(id);
  if (!vm) return;
  if (!vm.migratedAway)
    throw new TernError('conflict', `VM ${vm.spec.name} runs on ${host.hostname}; it was not migrated away`);
  host.discard(vm);
  host.consoles.delete(id);
  host.events.emit('gone', id);
}

export async function moveDisk(
  host: SimVms,
  link: SimLink,
  id: string,
  req: MoveDiskRequest,
  progress: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<void> {
  const vm = host.running(id);
  const disk = vm.spec.disks[req.index];
  if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${req.index}`);
  const from = resolveVolume(host.pools, disk.volume);
  const to = resolveVolume(host.pools, req.target);
  if (from === to) throw new TernError('invalid_request', 'the disk already is on that volume');
  const existed = fs.existsSync(to);
  const run = new MigrationRun(sourceSide(host, vm), progress, signal, signal);
  await run.copy('disks', allocatedBytes(from), link.diskMiBps * MiB);
  try {
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(from, to);
  } catch (err) {
    if (!existed) fs.rmSync(to, { force: true });
    throw new TernError('storage_error', `moving disk ${req.index}: ${(err as Error).message}`);
  }
  const disks = vm.spec.disks.map((d, i) =>
    i === req.index ? { ...d, volume: req.target, slot: diskSlot(d, i) } : d,
  );
  vm.spec = { ...vm.spec, disks };
}

function reachIncoming(req: MigrateRequest, vm: SimVm): IncomingEntry {
  if (!req.uri) throw new TernError('invalid_request', 'a live migration needs the target URI');
  const entry = incoming.byUri(req.uri);
  if (!entry?.reachable()) {
    throw new TernError(
      'hypervisor_error',
      `migration of ${vm.spec.name} failed: no simulated host waits for it at ${req.uri}`,
    );
  }
  if (entry.vmId !== vm.spec.id)
    throw new TernError('conflict', `${req.uri} waits for another VM than ${vm.spec.name}`);
  return entry;
}

/** The source's side of a migration run. */
function sourceSide(host: SimVms, vm: SimVm): SourceSide {
  const pools = host.pools;
  return {
    hostname: host.hostname,
    clock: host.clock,
    spec: () => vm.spec,
    state: () => vm.state,
    dirtyMiBps: () => vm.dirtyMiBps,
    alive: () => !host.poweredOff && host.vms.get(vm.spec.id) === vm && vm.state !== 'crashed',
    carry: () => ({
      guest: { ...vm.guest, interfaces: vm.guest.interfaces.map((i) => ({ ...i })) },
      booted: vm.booted,
      boots: vm.boots,
      dirtyMiBps: vm.dirtyMiBps,
      console: host.consoles.get(vm.spec.id) ?? '',
    }),
    pause: (reason) => {
      const before = { state: vm.state, reason: vm.reason };
      vm.state = 'paused';
      vm.reason = reason;
      host.emit(vm);
      return () => {
        if (host.vms.get(vm.spec.id) !== vm || vm.state === 'crashed') return;
        vm.state = before.state;
        vm.reason = before.reason;
        host.emit(vm);
      };
    },
    migrated: () => {
      vm.migratedAway = true;
      vm.state = 'paused';
      vm.reason = 'postmigrate';
      host.clearTimer(vm);
      host.emit(vm);
    },
    drives: () => writableDrives(vm.spec).map(([drive, ref]) => [drive, resolveVolume(pools, ref)]),
  };
}

/** Bytes per simulated second: this host's link, the request's limit and the peer's link. */
function bandwidth(req: MigrateRequest, ownMiBps: number, peerMiBps?: number): number {
  let mibps = ownMiBps;
  if (req.bandwidthMiBps > 0) mibps = Math.min(mibps, req.bandwidthMiBps);
  if (peerMiBps !== undefined) mibps = Math.min(mibps, peerMiBps);
  return mibps * MiB;
}

/** Writable disks by drive (node) name, as the QEMU driver names them for NBD exports. */
function writableDrives(spec: VmSpec): [string, VolumeRef][] {
  return spec.disks.flatMap((d, i) => (d.readonly ? [] : [[diskNodes(diskSlot(d, i)).format, d.volume]]));
}
