/**
 * Garbage collection of a datastore, mark and sweep (Proxmox Backup Server's rule):
 *
 *  1. mark: every chunk named by an index of a finished backup is touched (its access time set
 *     to now); nothing is held in memory, so a datastore of any size is collected;
 *  2. sweep: a chunk goes only when neither its access nor its modification time is at or after
 *     `protectSince` (the start of the oldest backup still running, minus a margin, so before
 *     the mark began). A backup touches every chunk it inserts or finds, and every chunk it
 *     names at commit, so a backup running now never loses one; temporaries and unfinished
 *     backups older than `protectSince` go too.
 *
 * A chunk is removed by renaming it aside, looking at its times again, then unlinking: a
 * backup that touched it just before keeps it (it is renamed back), and one touching it just
 * after finds no chunk and writes it anew. A manifest or index GC cannot read stops it before
 * anything is removed: the chunks it names are unknown, and guessing would destroy them.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { GcResult } from '../../wire/backup.ts';
import { isTempName, TEMP_INFIX } from './atomic-file.ts';
import { type Datastore, namesIn } from './datastore.ts';

export interface GcProgress {
  phase: 'mark' | 'sweep';
  done: number;
  total: number;
}

export async function collectGarbage(
  ds: Datastore,
  protectSince: Date,
  progress: (p: GcProgress) => void = () => {},
  signal?: AbortSignal,
): Promise<GcResult> {
  const since = protectSince.getTime();
  const stop = () => {
    if (signal?.aborted) throw new TernError('cancelled', 'garbage collection cancelled');
  };
  const result: GcResult = {
    chunksKept: 0,
    bytesKept: 0,
    chunksRemoved: 0,
    bytesRemoved: 0,
    chunksProtected: 0,
    temporariesRemoved: 0,
  };

  const markedAt = Date.now();
  if (since > markedAt)
    throw new TernError('invalid_request', 'protectSince is in the future: every chunk would be swept');
  const backups = await ds.listBackups();
  for (const [n, { group, id }] of backups.entries()) {
    stop();
    try {
      const manifest = await ds.readManifest(group, id);
      // Every index read before any is touched: a damaged one stops the collection first.
      const indexes = [];
      for (const disk of manifest.disks) indexes.push(await ds.readIndex(manifest, disk.name));
      for (const index of indexes) await ds.chunks.touchIndex(index);
    } catch (err) {
      throw new TernError(
        'storage_error',
        `garbage collection stopped, nothing removed: backup ${group}/${id} cannot be read (${(err as Error).message}); verify it, and forget it if it is lost`,
        { group, id },
        { cause: err },
      );
    }
    progress({ phase: 'mark', done: n + 1, total: backups.length });
  }

  const recent = (s: { atimeMs: number; mtimeMs: number }) => Math.max(s.atimeMs, s.mtimeMs) >= since;
  let seen = 0;
  for await (const f of ds.chunks.files()) {
    if (++seen % 1024 === 0) {
      stop();
      progress({ phase: 'sweep', done: seen, total: 0 });
    }
    const st = await fs.stat(f.file).catch(() => null);
    if (!st?.isFile()) continue;
    if (f.temporary) {
      if (!recent(st) && (await unlinked(f.file))) result.temporariesRemoved++;
    } else if (f.digest === null) {
      // Not Tern's (or a chunk set aside as damaged): left alone.
    } else if (st.atimeMs >= markedAt) {
      // Touched by the mark (or by a backup since): named by a backup.
      result.chunksKept++;
      result.bytesKept += st.size;
    } else if (recent(st)) {
      result.chunksProtected++;
    } else if (await sweep(f.file, recent)) {
      result.chunksRemoved++;
      result.bytesRemoved += st.size;
    } else result.chunksProtected++;
  }
  result.temporariesRemoved += await removeUnfinished(ds, since);
  return result;
}

/** Renames a chunk aside, then removes it unless it was touched meanwhile (then it goes back). */
async function sweep(file: string, recent: (s: { atimeMs: number; mtimeMs: number }) => boolean) {
  const aside = `${file}${TEMP_INFIX}gc-${process.pid}`;
  try {
    await fs.rename(file, aside);
  } catch {
    return false;
  }
  if (recent(await fs.stat(aside))) {
    // Same name, same plaintext: whichever encoding lands last is whole and valid.
    await fs.rename(aside, file);
    return false;
  }
  await fs.rm(aside, { force: true });
  return true;
}

async function unlinked(file: string): Promise<boolean> {
  try {
    await fs.unlink(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Backup directories without a manifest (a commit cut off, a forget cut off) untouched since
 * `since`, and temporaries among the backups: each counted as one temporary.
 */
async function removeUnfinished(ds: Datastore, since: number): Promise<number> {
  const root = path.join(ds.dir, 'backups');
  let removed = 0;
  for (const group of await namesIn(root)) {
    const gdir = path.join(root, group);
    for (const id of await namesIn(gdir)) {
      const dir = path.join(gdir, id);
      const st = await fs.stat(dir).catch(() => null);
      if (!st || st.mtimeMs >= since) continue;
      if (st.isDirectory()) {
        for (const name of await namesIn(dir))
          if (isTempName(name) && (await unlinked(path.join(dir, name)))) removed++;
        if ((await namesIn(dir)).includes('manifest.json')) continue;
        await fs.rm(dir, { recursive: true, force: true });
        removed++;
      } else if (isTempName(id) && (await unlinked(dir))) removed++;
    }
    await fs.rmdir(gdir).catch(() => {});
  }
  return removed;
}
