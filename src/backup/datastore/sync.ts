/**
 * Offsite copies: the backups of one datastore copied into another (a second directory, on
 * other disks or another site's mount), each under the target's own key. A chunk is read
 * from the source (verified), and stored in the target under the name the target gives it;
 * chunks the target has already are not read again: when both use the same key their names
 * match, and otherwise the names pair up through the backups of the same VM already copied.
 * A backup is committed in the target (its own manifest last) only once all its chunks are
 * there, with the source's time, so retention on both sides sees the same history.
 *
 * Killed at any point, a sync leaves whole chunks and backups without a manifest, which the
 * next sync redoes and garbage collection removes; never a backup naming a missing chunk.
 */
import { TernError } from '../../errors.ts';
import type { Datastore } from './datastore.ts';
import { FixedIndex } from './fixed-index.ts';

export interface SyncOptions {
  /** Only these groups (VMs); all when absent. */
  groups?: readonly string[];
  /** Refuse a target that is not encrypted: the copy must reveal nothing where it goes. */
  encryptedOnly: boolean;
  signal?: AbortSignal;
  progress?: (p: { item: string; doneBytes: number; totalBytes: number; writtenBytes: number }) => void;
}

export interface SyncResult {
  copied: { group: string; id: string }[];
  /** Backups the target had already. */
  present: number;
  chunksRead: number;
  bytesRead: number;
  chunksWritten: number;
  bytesWritten: number;
}

export async function syncDatastore(
  source: Datastore,
  target: Datastore,
  o: SyncOptions,
): Promise<SyncResult> {
  if (o.encryptedOnly && !target.encrypted)
    throw new TernError(
      'invalid_request',
      `the target ${target.dir} is not encrypted: an encrypted-only copy needs an encrypted target`,
    );
  if (source.dir === target.dir)
    throw new TernError('invalid_request', 'a datastore is not synced into itself');
  const result: SyncResult = {
    copied: [],
    present: 0,
    chunksRead: 0,
    bytesRead: 0,
    chunksWritten: 0,
    bytesWritten: 0,
  };
  const have = new Set((await target.listBackups()).map((b) => `${b.group}/${b.id}`));
  const wanted = (await source.listBackups()).filter((b) => !o.groups || o.groups.includes(b.group));
  // The name each source chunk has in the target, learnt from backups both hold.
  const names = new Map<string, string>();
  const learnt = new Set<string>();
  for (const b of wanted) {
    if (have.has(`${b.group}/${b.id}`)) {
      result.present++;
      continue;
    }
    if (o.signal?.aborted) throw new TernError('cancelled', 'the sync was cancelled');
    if (!learnt.has(b.group)) {
      learnt.add(b.group);
      await learnNames(source, target, b.group, have, names);
    }
    await copyBackup(source, target, b, names, result, o);
    have.add(`${b.group}/${b.id}`);
    result.copied.push(b);
  }
  return result;
}

/** Pairs the chunk names of a group's backups that both datastores hold (the latest one). */
async function learnNames(
  source: Datastore,
  target: Datastore,
  group: string,
  have: Set<string>,
  names: Map<string, string>,
): Promise<void> {
  const both = (await source.listBackups(group)).filter((b) => have.has(`${b.group}/${b.id}`));
  const last = both.at(-1);
  if (!last) return;
  const [from, to] = [await source.readManifest(group, last.id), await target.readManifest(group, last.id)];
  for (const disk of from.disks) {
    if (!to.disks.some((d) => d.name === disk.name)) continue;
    const [a, b] = [await source.readIndex(from, disk.name), await target.readIndex(to, disk.name)];
    if (a.count !== b.count) continue;
    for (let i = 0; i < a.count; i++) names.set(a.digest(i), b.digest(i));
  }
}

async function copyBackup(
  source: Datastore,
  target: Datastore,
  b: { group: string; id: string },
  names: Map<string, string>,
  result: SyncResult,
  o: SyncOptions,
): Promise<void> {
  const manifest = await source.readManifest(b.group, b.id);
  const sameKey = source.fingerprint === target.fingerprint;
  const disks: { name: string; index: FixedIndex }[] = [];
  const total = manifest.disks.reduce((n, d) => n + d.size, 0);
  let done = 0;
  for (const entry of manifest.disks) {
    const from = await source.readIndex(manifest, entry.name);
    const index = new FixedIndex(from.diskSize, from.chunkSize);
    for (let i = 0; i < from.count; i++) {
      if (o.signal?.aborted) throw new TernError('cancelled', 'the sync was cancelled');
      const digest = from.digest(i);
      const known = sameKey ? digest : names.get(digest);
      if (known && (await target.chunks.has(known))) index.setDigest(i, known);
      else {
        const data = await source.readChunk(from, i);
        result.chunksRead++;
        result.bytesRead += data.length;
        const put = await target.chunks.insert(data);
        if (put.written) {
          result.chunksWritten++;
          result.bytesWritten += put.storedBytes;
        }
        names.set(digest, put.digest);
        index.setDigest(i, put.digest);
      }
      done += from.range(i).length;
      o.progress?.({
        item: `${b.group}/${b.id}`,
        doneBytes: done,
        totalBytes: total,
        writtenBytes: result.bytesWritten,
      });
    }
    disks.push({ name: entry.name, index });
  }
  // A copy a killed sync began has no manifest: it is not a backup, and goes.
  await target.forgetBackup(b.group, b.id);
  await target.commitBackup(b.group, b.id, disks, manifest.labels, manifest.createdAt);
}
