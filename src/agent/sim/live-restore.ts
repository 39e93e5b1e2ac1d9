/**
 * Live restore on a simulated host: nothing is served. Preparing checks the backup can be read
 * (the datastore, the key, the disks) and makes the VM's volumes (storage is real on a simulated
 * host: plain qcow2 of the disks' sizes); streaming ends at once with those sizes.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import type { LiveRestoreRequest, TransferProgress } from '../../wire/backup.ts';
import { openDatastore } from '../backup/datastore-handlers.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { createVolume } from '../storage/volumes.ts';

export class SimLiveRestores {
  readonly #pools: Pools;
  /** VM id → its restored disks' sizes by disk index. */
  readonly #prepared = new Map<string, Map<number, number>>();

  constructor(pools: Pools) {
    this.#pools = pools;
  }

  async prepare(id: string, req: LiveRestoreRequest): Promise<void> {
    const store = await openDatastore(req.datastore);
    const manifest = await store.readManifest(req.group, req.id);
    const sizes = new Map<number, number>();
    for (const d of req.disks) {
      const entry = manifest.disks.find((m) => m.name === d.disk);
      const index = Number(/^disk(\d+)$/.exec(d.disk)?.[1] ?? Number.NaN);
      if (!entry || !Number.isInteger(index))
        throw new TernError('not_found', `backup ${req.group}/${req.id} has no disk ${d.disk}`);
      if (!fs.existsSync(resolveVolume(this.#pools, d.target)))
        await createVolume(this.#pools, { volume: d.target, format: 'qcow2', sizeBytes: entry.size });
      sizes.set(index, entry.size);
    }
    this.#prepared.set(id, sizes);
  }

  /** The bytes "streamed"; nothing prepared means streamed already (asked again after an unrecorded end). */
  stream(id: string, indexes: readonly number[], progress: (p: TransferProgress) => void): number {
    const sizes = this.#prepared.get(id);
    const total = indexes.reduce((n, i) => n + (sizes?.get(i) ?? 0), 0);
    progress({
      type: 'progress',
      item: 'disks',
      doneBytes: total,
      totalBytes: total,
      writtenBytes: total,
      bytesPerS: 0,
    });
    this.#prepared.delete(id);
    return total;
  }
}
