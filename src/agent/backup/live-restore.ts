/**
 * Live restore on a host: a VM restored from a backup runs at once, its disks qcow2 overlays
 * whose backing file is the backup itself, served from the datastore by Tern's NBD server
 * (nbd/server.ts) on a unix socket of its own. The guest reads what is not restored yet from
 * the backup; QEMU streams the rest in underneath (qemu/disk-stream.ts), after which the
 * overlays stand alone and the server goes.
 *
 * The overlay's backing is an NBD address with a reconnect delay, so an agent restart is a
 * pause in the guest's reads of unrestored data, not an I/O error: the manager's task asks
 * again (`prepare` is idempotent) and the server is back on the same socket.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Datastore } from '../../backup/datastore/datastore.ts';
import { BackupDiskReader } from '../../backup/datastore/disk-reader.ts';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { LiveRestoreRequest } from '../../wire/backup.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { qemuImg } from '../storage/qemu-img.ts';
import { type BlockSource, NbdServer } from './nbd/server.ts';

/** How long QEMU waits for the server to come back before a read fails. */
const RECONNECT_DELAY_S = 300;

export class LiveRestores {
  readonly #dir: string;
  readonly #pools: Pools;
  readonly #log: Logger;
  readonly #servers = new Map<string, NbdServer>();

  constructor(stateDir: string, pools: Pools, log: Logger) {
    this.#dir = path.join(stateDir, 'live-restore');
    this.#pools = pools;
    this.#log = log;
  }

  /** The socket a VM's backup is served on. Short: a unix socket path has 107 bytes. */
  socketOf(vmId: string): string {
    return path.join(this.#dir, `${vmId.slice(0, 8)}-${vmId.slice(-4)}.sock`);
  }

  /**
   * Serves the backup's disks for VM `vmId` and makes each target an overlay on its export
   * (a target that is already an overlay on it, or one whose data is all in already, is kept:
   * asked again after a restart).
   */
  async prepare(vmId: string, req: LiveRestoreRequest): Promise<void> {
    const key = req.datastore.key ? Buffer.from(req.datastore.key, 'base64') : undefined;
    const store = await Datastore.open(req.datastore.path, { key });
    const manifest = await store.readManifest(req.group, req.id);
    const exports = new Map<string, BlockSource>();
    for (const d of req.disks)
      exports.set(d.disk, new BackupDiskReader(store, await store.readIndex(manifest, d.disk)));
    fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    await this.finish(vmId);
    const socket = this.socketOf(vmId);
    this.#servers.set(vmId, await NbdServer.listen(socket, exports, this.#log));
    try {
      for (const d of req.disks)
        await this.#overlay(socket, d.disk, resolveVolume(this.#pools, d.target), exports.get(d.disk)!.size);
    } catch (err) {
      await this.finish(vmId);
      throw err;
    }
    this.#log.info({ vm: vmId, backup: `${req.group}/${req.id}` }, 'serving a backup for a live restore');
  }

  /** Whether a VM's backup is being served here. */
  serving(vmId: string): boolean {
    return this.#servers.has(vmId);
  }

  /** Stops serving a VM's backup (its disks no longer need it, or the restore was given up). */
  async finish(vmId: string): Promise<void> {
    const server = this.#servers.get(vmId);
    this.#servers.delete(vmId);
    await server?.close();
  }

  async close(): Promise<void> {
    for (const id of [...this.#servers.keys()]) await this.finish(id);
  }

  async #overlay(socket: string, disk: string, file: string, size: number): Promise<void> {
    const backing = backingOf(socket, disk);
    if (fs.existsSync(file)) {
      const info = await qemuImg(['info', '-U', '--output=json', file]);
      const seen = JSON.parse(info.stdout || '{}') as { format?: unknown; 'backing-filename'?: unknown };
      const current = seen['backing-filename'];
      // Ours, or ours already streamed in (asked again after the restore ended unrecorded).
      if (info.code === 0 && seen.format === 'qcow2' && (current === backing || current === undefined))
        return;
      throw new TernError('conflict', `${file} exists and is not this restore's overlay`);
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // -u: the size is known; nothing needs to read the backing now.
    const made = await qemuImg([
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      'raw',
      '-b',
      backing,
      '-u',
      file,
      String(size),
    ]);
    if (made.code !== 0)
      throw new TernError(
        'storage_error',
        `making the overlay ${file} failed: ${made.stderr.trim().slice(-300)}`,
      );
  }
}

/** The backing file name of an overlay on export `disk`: QEMU's JSON form of an NBD node. */
export function backingOf(socket: string, disk: string): string {
  // The format layer is spelled out: with only the protocol's options QEMU reads them as the
  // raw driver's and finds no `file`.
  return `json:${JSON.stringify({
    driver: 'raw',
    file: {
      driver: 'nbd',
      server: { type: 'unix', path: socket },
      export: disk,
      'reconnect-delay': RECONNECT_DELAY_S,
    },
  })}`;
}

/** Whether a backing file name is a live restore's NBD export (the stream has yet to end). */
export function isLiveRestoreBacking(name: string | undefined): boolean {
  return typeof name === 'string' && name.startsWith('json:') && name.includes('"driver":"nbd"');
}
