/**
 * The target side of a migration: a QEMU started from the VM's spec with `-incoming defer -S`,
 * told where its state comes from (a TCP port, or a state file for a quick migration), with
 * NBD exports of its freshly made disks when storage is mirrored. The guest never runs before
 * `finish`: QEMU is started with its CPUs stopped, the VM is held against a `resume`, and the
 * disks are activated (image locks taken) only by the final `cont` (`late-block-activate`).
 *
 * What was made for an incoming migration (the volumes, the state file to remove) is recorded
 * in `<state>/incoming/<id>.json`, so a restarted agent can still finish or abort it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type {
  FinishIncomingResult,
  IncomingMigration,
  IncomingMigrationRequest,
  NbdTarget,
} from '../../wire/agent.ts';
import { diskSlot, type VmSpec, type VolumeRef } from '../../wire/vm.ts';
import { freePort } from '../free-port.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { createVolume, deleteVolume } from '../storage/volumes.ts';
import { diskNodes, type ResolvedVolumes } from './command-line.ts';
import { shellQuote } from './migration.ts';
import { eventTime } from './migration-info.ts';
import {
  blockdevAdd,
  blockdevDel,
  blockExportAdd,
  blockExportCount,
  blockExportDel,
  migrateIncoming,
  migrateSetCapabilities,
  nbdServerStart,
  nbdServerStop,
  qmpEvents,
  queryMigrate,
} from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';
import { gone, watchEvents } from './vm-waits.ts';

export const incomingHold = 'incoming migration';

export interface IncomingRecord {
  id: string;
  mode: IncomingMigrationRequest['mode'];
  storage: IncomingMigrationRequest['storage'];
  /** Volumes made for this migration: removed again if it is aborted. */
  created: VolumeRef[];
  /** Quick migration: removed once the guest runs here. */
  stateFile: VolumeRef | null;
  /** NBD exports (by id) and the extra writable nodes behind read-only drives' exports. */
  exports: string[];
  copies: string[];
}

/** The records of incoming migrations, one file each, written before anything is made. */
export class IncomingRecords {
  readonly #dir: string;
  readonly #records = new Map<string, IncomingRecord>();

  constructor(stateDir: string) {
    this.#dir = path.join(stateDir, 'incoming');
  }

  load(): void {
    fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    for (const f of fs.readdirSync(this.#dir)) {
      try {
        const r = JSON.parse(fs.readFileSync(path.join(this.#dir, f), 'utf8')) as IncomingRecord;
        if (typeof r.id === 'string' && Array.isArray(r.created)) this.#records.set(r.id, r);
      } catch {
        fs.rmSync(path.join(this.#dir, f), { force: true });
      }
    }
  }

  get(id: string): IncomingRecord | undefined {
    return this.#records.get(id);
  }

  save(r: IncomingRecord): void {
    const file = path.join(this.#dir, `${r.id}.json`);
    fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(`${file}.new`, JSON.stringify(r));
    fs.renameSync(`${file}.new`, file);
    this.#records.set(r.id, r);
  }

  drop(id: string): void {
    fs.rmSync(path.join(this.#dir, `${id}.json`), { force: true });
    this.#records.delete(id);
  }
}

/** A drive of the target to fill over NBD: its node, file and whether the guest may write it. */
export interface ExportedDrive {
  node: string;
  file: string;
  format: 'qcow2' | 'raw';
  readonly: boolean;
}

const hostInUri = (host: string) => (host.includes(':') ? `[${host}]` : host);

async function startNbd(
  vm: VmProcess,
  host: string,
  drives: ExportedDrive[],
  rec: IncomingRecord,
): Promise<NbdTarget> {
  let port = 0;
  for (let attempt = 1; ; attempt++) {
    port = await freePort(host).catch((err: Error) => {
      throw new TernError('invalid_request', `cannot listen on ${host}: ${err.message}`);
    });
    try {
      await nbdServerStart(vm.monitor, host, port);
      break;
    } catch (err) {
      // Someone took the port between our probe and QEMU's bind: try another.
      if (attempt >= 5) throw err;
    }
  }
  for (const d of drives) {
    let node = d.node;
    if (d.readonly) {
      // The guest's node of a read-only drive (the seed) cannot take writes; a second,
      // writable node on the same file receives the copy and is removed before the guest runs.
      node = `${d.node}-copy`;
      await blockdevAdd(vm.monitor, {
        driver: d.format,
        'node-name': node,
        'read-only': false,
        file: { driver: 'file', filename: d.file },
      });
      rec.copies.push(node);
    }
    const id = `mig-${d.node}`;
    await blockExportAdd(vm.monitor, id, node, d.node);
    rec.exports.push(id);
  }
  return { host, port, drives: drives.map((d) => d.node) };
}

/** Points the waiting QEMU at where its state comes from; answers where to send it. */
export async function listenIncoming(
  vm: VmProcess,
  req: IncomingMigrationRequest,
  rec: IncomingRecord,
  stateFile: string | null,
  drives: ExportedDrive[],
): Promise<IncomingMigration> {
  // The source sends the VM's backup and replication bitmaps when it has any (migration-bitmaps.ts).
  await migrateSetCapabilities(vm.monitor, {
    events: true,
    'late-block-activate': true,
    'dirty-bitmaps': true,
  });
  const nbd = req.storage === 'mirror' ? await startNbd(vm, req.listenHost, drives, rec) : null;
  if (req.mode === 'quick') {
    if (!stateFile) throw new TernError('invalid_request', 'a quick migration needs a stateFile');
    if (!fs.existsSync(stateFile))
      throw new TernError('not_found', `state file ${req.stateFile?.path} does not exist`);
    const uri = `exec:exec cat ${shellQuote(stateFile)}`;
    await migrateIncoming(vm.monitor, uri);
    return { uri, nbd };
  }
  // Port 0: QEMU picks a free port itself and reports it, so no other process can take it.
  await migrateIncoming(vm.monitor, `tcp:${hostInUri(req.listenHost)}:0`);
  const port = (await queryMigrate(vm.monitor)).ports[0];
  if (!port) throw new TernError('hypervisor_error', 'QEMU did not report the port it listens on');
  return { uri: `tcp:${hostInUri(req.listenHost)}:${port}`, nbd };
}

/** Waits until the whole state has arrived (bounded), then stops the NBD server and runs the guest. */
export async function resumeIncoming(
  vm: VmProcess,
  rec: IncomingRecord,
  timeoutMs: number,
): Promise<{ resumedAt: number }> {
  const deadline = Date.now() + timeoutMs;
  const arrival = watchEvents(vm, [qmpEvents.migration]);
  try {
    for (;;) {
      const info = await queryMigrate(vm.monitor);
      if (info.status === 'completed') break;
      if (info.status === 'failed' || info.status === 'cancelled')
        throw new TernError('hypervisor_error', `the incoming migration ${info.status}: ${info.error ?? ''}`);
      const stop = gone(vm);
      if (stop) throw stop;
      if (Date.now() > deadline)
        throw new TernError(
          'timeout',
          `the VM state did not arrive within ${Math.round(timeoutMs / 1000)} s`,
        );
      await arrival.next(500);
    }
  } finally {
    arrival.close();
  }
  if (rec.exports.length > 0) {
    const deleted = watchEvents(vm, [qmpEvents.blockExportDeleted]);
    try {
      for (const id of rec.exports) await blockExportDel(vm.monitor, id).catch(() => {});
      // Exports end asynchronously, once their clients are gone.
      const until = Date.now() + 30_000;
      for (;;) {
        if ((await blockExportCount(vm.monitor)) === 0) break;
        if (Date.now() > until) throw new TernError('timeout', 'the NBD exports did not close within 30 s');
        await deleted.next(250);
      }
    } finally {
      deleted.close();
    }
    await nbdServerStop(vm.monitor).catch(() => {});
    for (const node of rec.copies) await blockdevDel(vm.monitor, node);
  }
  let resumedAt: number | null = null;
  const off = vm.onEvent((e) => {
    if (e.event === qmpEvents.resume) resumedAt ??= eventTime(e);
  });
  try {
    vm.hold(null);
    await vm.act('resume');
  } finally {
    off();
  }
  return { resumedAt: resumedAt ?? Date.now() };
}

/** What of the driver's VM registry an incoming migration reads and changes. */
export interface IncomingHost {
  pools: Pools;
  log: Logger;
  records: IncomingRecords;
  /** When finished incoming VMs resumed, for a repeated finish. */
  resumed: Map<string, number>;
  vms: Map<string, VmProcess>;
  starting(id: string): boolean;
  forget(id: string): Promise<void>;
  dropStopped(id: string): void;
  volumesOf(spec: VmSpec): ResolvedVolumes;
  /** Starts the VM's QEMU with `-incoming defer -S`. */
  launch(spec: VmSpec, volumes: ResolvedVolumes): Promise<VmProcess>;
  gone(id: string): void;
}

export async function prepareIncoming(
  host: IncomingHost,
  req: IncomingMigrationRequest,
): Promise<IncomingMigration> {
  const { spec } = req;
  // A crashed copy left here (the host failed and the VM was restarted elsewhere) is only a
  // record: the VM coming back replaces it.
  if (host.vms.get(spec.id)?.state === 'crashed') await host.forget(spec.id);
  if (host.vms.has(spec.id) || host.starting(spec.id) || host.records.get(spec.id)) {
    throw new TernError('conflict', `VM ${spec.name} is on this host already`);
  }
  if (req.mode === 'quick' && (req.storage !== 'shared' || !req.stateFile)) {
    throw new TernError('invalid_request', 'a quick migration needs shared storage and a stateFile');
  }
  host.dropStopped(spec.id);
  const rec: IncomingRecord = {
    id: spec.id,
    mode: req.mode,
    storage: req.storage,
    created: [],
    stateFile: req.stateFile ?? null,
    exports: [],
    copies: [],
  };
  host.records.save(rec);
  try {
    for (const c of req.create ?? []) {
      await createVolume(host.pools, {
        volume: c.volume,
        format: c.format,
        sizeBytes: c.sizeBytes,
      });
      rec.created.push(c.volume);
      host.records.save(rec);
    }
    const volumes = host.volumesOf(spec);
    const vm = await host.launch(spec, volumes);
    vm.hold(incomingHold);
    host.vms.set(vm.id, vm);
    const made = (ref: VolumeRef) => rec.created.some((c) => c.pool === ref.pool && c.path === ref.path);
    // Filled over NBD: exactly the drives whose volumes were made empty for this migration.
    const drives: ExportedDrive[] = spec.disks.flatMap((d, i) =>
      made(d.volume)
        ? [
            {
              node: diskNodes(diskSlot(d, i)).format,
              file: volumes.disks[i],
              format: d.format,
              readonly: d.readonly,
            },
          ]
        : [],
    );
    if (spec.seed && volumes.seed && made(spec.seed))
      drives.push({ node: 'seed', file: volumes.seed, format: 'raw', readonly: true });
    const stateFile = req.stateFile ? resolveVolume(host.pools, req.stateFile) : null;
    const answer = await listenIncoming(vm, req, rec, stateFile, drives);
    host.records.save(rec);
    host.log.info({ vm: spec.id, mode: req.mode, storage: req.storage }, 'waiting for an incoming VM');
    return answer;
  } catch (err) {
    await abortIncoming(host, spec.id).catch((e) =>
      host.log.error({ vm: spec.id, err: e }, 'cleaning up a failed incoming migration failed'),
    );
    throw err;
  }
}

export async function finishIncoming(host: IncomingHost, id: string): Promise<FinishIncomingResult> {
  const rec = host.records.get(id);
  const vm = host.vms.get(id);
  if (!rec) {
    const resumedAt = host.resumed.get(id);
    if (vm && resumedAt !== undefined) return { vm: vm.snapshot(), resumedAt };
    throw new TernError('not_found', `no incoming migration of VM ${id} on this host`);
  }
  if (!vm) throw new TernError('hypervisor_error', `the incoming VM ${id} is not running on this host`);
  const { resumedAt } = await resumeIncoming(vm, rec, 10 * 60_000);
  if (rec.stateFile) deleteVolume(host.pools, rec.stateFile);
  host.records.drop(id);
  host.resumed.set(id, resumedAt);
  host.log.info({ vm: id }, 'incoming VM runs');
  return { vm: vm.snapshot(), resumedAt };
}

export async function abortIncoming(host: IncomingHost, id: string): Promise<void> {
  const rec = host.records.get(id);
  const vm = host.vms.get(id);
  if (!rec) {
    if (vm)
      throw new TernError(
        'conflict',
        `VM ${vm.spec.name} runs on this host; it is not an incoming migration`,
      );
    return;
  }
  if (vm) {
    // Once its guest ran here, this is the only copy of the VM: never end it as an abort.
    if (vm.state === 'running' && !vm.held)
      throw new TernError('conflict', `VM ${vm.spec.name} runs on this host already`);
    await vm.release();
    host.vms.delete(id);
    host.gone(id);
  }
  for (const ref of rec.created) deleteVolume(host.pools, ref);
  host.records.drop(id);
  host.log.info({ vm: id }, 'aborted an incoming migration');
}
