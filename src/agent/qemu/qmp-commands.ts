import { type BlockJob, type MigrationInfo, readBlockJobs, readMigrationInfo } from './migration-info.ts';

export interface Monitor {
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
}

/** The QMP events Tern acts on. */
export const qmpEvents = Object.freeze({
  stop: 'STOP',
  resume: 'RESUME',
  shutdown: 'SHUTDOWN',
  reset: 'RESET',
  blockIoError: 'BLOCK_IO_ERROR',
  blockImageCorrupted: 'BLOCK_IMAGE_CORRUPTED',
  vserportChange: 'VSERPORT_CHANGE',
  deviceDeleted: 'DEVICE_DELETED',
  migration: 'MIGRATION',
  blockJobReady: 'BLOCK_JOB_READY',
  blockJobCompleted: 'BLOCK_JOB_COMPLETED',
  blockJobCancelled: 'BLOCK_JOB_CANCELLED',
  blockJobError: 'BLOCK_JOB_ERROR',
  blockExportDeleted: 'BLOCK_EXPORT_DELETED',
} as const);

export type QmpEventName = (typeof qmpEvents)[keyof typeof qmpEvents];

// --- run state -------------------------------------------------------------------------------

/** QEMU's run state (running, paused, inmigrate, postmigrate, shutdown, ...). */
export async function status(m: Monitor): Promise<string> {
  return (await m.execute<{ status: string }>('query-status')).status;
}

/** Runs the guest's CPUs. */
export async function cont(m: Monitor): Promise<void> {
  await m.execute('cont');
}

/** Stops the guest's CPUs. */
export async function stop(m: Monitor): Promise<void> {
  await m.execute('stop');
}

/** ACPI power button. */
export async function systemPowerdown(m: Monitor): Promise<void> {
  await m.execute('system_powerdown');
}

export async function systemReset(m: Monitor): Promise<void> {
  await m.execute('system_reset');
}

/** Ends QEMU; the monitor may close before it answers. */
export async function quit(m: Monitor, timeoutMs?: number): Promise<void> {
  await m.execute('quit', undefined, timeoutMs);
}

/** The VNC server's port, when QEMU has one. */
export async function vncPort(m: Monitor): Promise<number | null> {
  const vnc = await m.execute<{ service?: string }>('query-vnc');
  const port = Number.parseInt(vnc.service ?? '', 10);
  return Number.isInteger(port) ? port : null;
}

// --- block devices and nodes ---------------------------------------------------------------

/** One block device as query-block describes it (only what Tern reads). */
export interface BlockInfo {
  device: string;
  qdev?: string;
  tray_open?: boolean;
  locked?: boolean;
  inserted?: { 'node-name'?: string; file?: string };
}

export function queryBlock(m: Monitor): Promise<BlockInfo[]> {
  return m.execute<BlockInfo[]>('query-block');
}

/** The names of every block node QEMU has. */
export async function blockNodeNames(m: Monitor): Promise<string[]> {
  const nodes = await m.execute<unknown>('query-named-block-nodes', { flat: true });
  if (!Array.isArray(nodes)) return [];
  return nodes.flatMap((n) => {
    const name = (n as { 'node-name'?: unknown } | null)?.['node-name'];
    return typeof name === 'string' ? [name] : [];
  });
}

/** The options of one block node (QMP blockdev-add). */
export interface BlockdevOptions {
  driver: string;
  'node-name': string;
  [option: string]: unknown;
}

export async function blockdevAdd(m: Monitor, options: BlockdevOptions): Promise<void> {
  await m.execute('blockdev-add', options);
}

export async function blockdevDel(m: Monitor, node: string): Promise<void> {
  await m.execute('blockdev-del', { 'node-name': node });
}

/** A disk's two block nodes: the file node and the format node on it. */
export interface NodePair {
  file: string;
  format: string;
}

/**
 * Adds a file node and then a format node on it. If the format node fails the file node goes
 * again, so a failed add leaves no node behind.
 */
export async function addNodePair(m: Monitor, file: BlockdevOptions, format: BlockdevOptions): Promise<void> {
  await blockdevAdd(m, file);
  try {
    await blockdevAdd(m, format);
  } catch (err) {
    await blockdevDel(m, file['node-name']).catch(() => {});
    throw err;
  }
}

/**
 * Removes a disk's nodes, the format node first. `bestEffort` (undoing a step that failed)
 * tries both and ignores failures; otherwise the first failure is thrown.
 */
export async function removeNodePair(m: Monitor, nodes: NodePair, bestEffort = false): Promise<void> {
  for (const node of [nodes.format, nodes.file]) {
    if (bestEffort) await blockdevDel(m, node).catch(() => {});
    else await blockdevDel(m, node);
  }
}

export async function deviceAdd(m: Monitor, device: { driver: string; id: string }): Promise<void> {
  await m.execute('device_add', device);
}

/** The ids of the devices plugged in now (those given an id: every device Tern adds). */
export async function deviceIds(m: Monitor): Promise<string[]> {
  const list = await m.execute<unknown>('qom-list', { path: '/machine/peripheral' });
  if (!Array.isArray(list)) return [];
  return list.flatMap((p: { name?: unknown; type?: unknown }) =>
    typeof p.name === 'string' && typeof p.type === 'string' && p.type.startsWith('child<') ? [p.name] : [],
  );
}

/** Asks the guest to let go of a device; DEVICE_DELETED says when it did. */
export async function deviceDel(m: Monitor, id: string): Promise<void> {
  await m.execute('device_del', { id });
}

// --- network --------------------------------------------------------------------------------

/** A network backend on a tap the agent made and owns: QEMU runs no script on it. */
export async function netdevAddTap(m: Monitor, id: string, ifname: string): Promise<void> {
  await m.execute('netdev_add', { type: 'tap', id, ifname, script: 'no', downscript: 'no' });
}

export async function netdevDel(m: Monitor, id: string): Promise<void> {
  await m.execute('netdev_del', { id });
}

/** A NIC's link as its guest sees it (`name`: the NIC device's id). */
export async function setLink(m: Monitor, name: string, up: boolean): Promise<void> {
  await m.execute('set_link', { name, up });
}

export async function blockResize(m: Monitor, node: string, sizeBytes: number): Promise<void> {
  await m.execute('block_resize', { 'node-name': node, size: sizeBytes });
}

// --- CD-ROM tray and medium ----------------------------------------------------------------

export async function openTray(m: Monitor, id: string, force: boolean): Promise<void> {
  await m.execute('blockdev-open-tray', { id, force });
}

export async function closeTray(m: Monitor, id: string): Promise<void> {
  await m.execute('blockdev-close-tray', { id });
}

export async function removeMedium(m: Monitor, id: string): Promise<void> {
  await m.execute('blockdev-remove-medium', { id });
}

export async function insertMedium(m: Monitor, id: string, node: string): Promise<void> {
  await m.execute('blockdev-insert-medium', { id, 'node-name': node });
}

// --- internal snapshots --------------------------------------------------------------------

/** An internal snapshot of every given format node, taken together in one transaction. */
export async function snapshotInternal(m: Monitor, nodes: readonly string[], name: string): Promise<void> {
  await m.execute('transaction', {
    actions: nodes.map((device) => ({ type: 'blockdev-snapshot-internal-sync', data: { device, name } })),
  });
}

export async function deleteSnapshotInternal(m: Monitor, node: string, name: string): Promise<void> {
  await m.execute('blockdev-snapshot-delete-internal-sync', { device: node, name });
}

// --- block jobs ----------------------------------------------------------------------------

/** A full copy of node `device` to node `target`, kept in sync until the job is ended. */
export async function blockdevMirror(m: Monitor, job: string, device: string, target: string): Promise<void> {
  await m.execute('blockdev-mirror', { 'job-id': job, device, target, sync: 'full' });
}

/**
 * Copies into node `device` everything its backing chain holds, then drops the backing: the
 * end of a live restore. Ends on its own (BLOCK_JOB_COMPLETED).
 */
export async function blockStream(m: Monitor, job: string, device: string, bytesPerS = 0): Promise<void> {
  await m.execute('block-stream', { 'job-id': job, device, ...(bytesPerS > 0 ? { speed: bytesPerS } : {}) });
}

export async function queryBlockJobs(m: Monitor): Promise<BlockJob[]> {
  return readBlockJobs(await m.execute('query-block-jobs'));
}

/** Switches a ready mirror job's device over to the copy. */
export async function jobComplete(m: Monitor, id: string): Promise<void> {
  await m.execute('job-complete', { id });
}

export async function blockJobCancel(m: Monitor, id: string, force: boolean): Promise<void> {
  await m.execute('block-job-cancel', { device: id, force });
}

export async function jobDismiss(m: Monitor, id: string): Promise<void> {
  await m.execute('job-dismiss', { id });
}

// --- NBD exports -----------------------------------------------------------------------------

export async function nbdServerStart(m: Monitor, host: string, port: number): Promise<void> {
  await m.execute('nbd-server-start', { addr: { type: 'inet', data: { host, port: String(port) } } });
}

/** QEMU's NBD server on a unix socket; conflict when one runs already. */
export async function nbdServerStartUnix(m: Monitor, path: string): Promise<void> {
  await m.execute('nbd-server-start', { addr: { type: 'unix', data: { path } } });
}

export async function nbdServerStop(m: Monitor): Promise<void> {
  await m.execute('nbd-server-stop');
}

/** Exports node `node` over the NBD server, writable, under the export name `name`. */
export async function blockExportAdd(m: Monitor, id: string, node: string, name: string): Promise<void> {
  await m.execute('block-export-add', { type: 'nbd', id, 'node-name': node, name, writable: true });
}

/** Exports node `node` read-only, with the dirty bitmaps given as `qemu:dirty-bitmap:NAME` contexts. */
export async function blockExportAddReadOnly(
  m: Monitor,
  id: string,
  node: string,
  name: string,
  bitmaps: readonly { node: string; name: string }[],
): Promise<void> {
  await m.execute('block-export-add', {
    type: 'nbd',
    id,
    'node-name': node,
    name,
    writable: false,
    ...(bitmaps.length ? { bitmaps } : {}),
  });
}

/** The ids of the block exports still open (also those shutting down). */
export async function blockExportIds(m: Monitor): Promise<string[]> {
  const left = await m.execute<unknown>('query-block-exports');
  return Array.isArray(left) ? left.flatMap((e) => (typeof e?.id === 'string' ? [e.id] : [])) : [];
}

export async function blockExportDel(m: Monitor, id: string): Promise<void> {
  await m.execute('block-export-del', { id });
}

/** How many block exports are still open. */
export async function blockExportCount(m: Monitor): Promise<number> {
  const left = await m.execute<unknown>('query-block-exports');
  return Array.isArray(left) ? left.length : 0;
}

/** An NBD client node connected to export `name` at host:port. */
export function nbdClientOptions(node: string, host: string, port: number, name: string): BlockdevOptions {
  return {
    driver: 'nbd',
    'node-name': node,
    server: { type: 'inet', host, port: String(port) },
    export: name,
  };
}

// --- migration -------------------------------------------------------------------------------

export type MigrationCapability =
  | 'events'
  | 'auto-converge'
  | 'pause-before-switchover'
  | 'late-block-activate'
  | 'dirty-bitmaps';

export async function migrateSetCapabilities(
  m: Monitor,
  capabilities: Partial<Record<MigrationCapability, boolean>>,
): Promise<void> {
  await m.execute('migrate-set-capabilities', {
    capabilities: Object.entries(capabilities).map(([capability, state]) => ({ capability, state })),
  });
}

export async function migrateSetParameters(
  m: Monitor,
  p: { downtimeLimitMs: number; maxBandwidthBytes: number },
): Promise<void> {
  await m.execute('migrate-set-parameters', {
    'downtime-limit': p.downtimeLimitMs,
    'max-bandwidth': p.maxBandwidthBytes,
  });
}

/** Which dirty bitmaps a migration sends, and as which node and name the target knows them. */
export interface BitmapMapping {
  'node-name': string;
  alias: string;
  bitmaps: { name: string; alias: string }[];
}

export async function migrateSetBitmapMapping(m: Monitor, mapping: readonly BitmapMapping[]): Promise<void> {
  await m.execute('migrate-set-parameters', { 'block-bitmap-mapping': mapping });
}

export async function migrate(m: Monitor, uri: string): Promise<void> {
  await m.execute('migrate', { uri });
}

export async function migrateIncoming(m: Monitor, uri: string): Promise<void> {
  await m.execute('migrate-incoming', { uri });
}

/** Lets a migration paused before its switchover go on. */
export async function migrateContinue(m: Monitor): Promise<void> {
  await m.execute('migrate-continue', { state: 'pre-switchover' });
}

export async function migrateCancel(m: Monitor): Promise<void> {
  await m.execute('migrate_cancel');
}

export async function queryMigrate(m: Monitor): Promise<MigrationInfo> {
  return readMigrationInfo(await m.execute('query-migrate'));
}
