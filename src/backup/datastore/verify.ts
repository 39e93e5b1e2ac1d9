/**
 * Verify: re-read every chunk of the given backups and check it against its name (and its
 * length against its place in the index), the manifest's MAC and each index's checksum on the
 * way. A chunk shared by many backups is read once per run. A damaged chunk is moved aside
 * (`ChunkStore.quarantine`), so the next backup holding that data writes it anew rather than
 * deduplicating against it; the backups naming it stay failed, and say which chunk.
 */
import { TernError } from '../../errors.ts';
import type { VerifyResult } from '../../wire/backup.ts';
import type { Datastore } from './datastore.ts';
import type { FixedIndex } from './fixed-index.ts';

/** Problems listed per backup; beyond this, how many more. */
const MAX_PROBLEMS = 100;
/** Chunks whose verdict a run remembers (a TiB of 64 KiB chunks is 16 million). */
const MAX_KNOWN = 1_000_000;
/** Chunks read at once. */
const PARALLEL = 4;

export interface VerifyProgress {
  /** `group/id` of the backup being read. */
  item: string;
  doneBytes: number;
  totalBytes: number;
}

export async function verifyBackups(
  ds: Datastore,
  backups: readonly { group: string; id: string }[],
  progress: (p: VerifyProgress) => void = () => {},
  signal?: AbortSignal,
): Promise<VerifyResult> {
  // What this run learned about each chunk: null when good, else what is wrong with it.
  const known = new Map<string, Promise<string | null>>();
  const result: VerifyResult = { backups: [], chunksChecked: 0, bytesChecked: 0 };
  for (const { group, id } of backups) {
    const problems: string[] = [];
    const problem = (what: string) => {
      if (problems.length < MAX_PROBLEMS - 1) problems.push(what.slice(0, 500));
      else if (problems.length === MAX_PROBLEMS - 1) problems.push('and more problems');
    };
    const item = `${group}/${id}`;
    try {
      const manifest = await ds.readManifest(group, id);
      const total = manifest.disks.reduce((sum, d) => sum + d.size, 0);
      let done = 0;
      let reportedAt = 0;
      for (const disk of manifest.disks) {
        let index: FixedIndex;
        try {
          index = await ds.readIndex(manifest, disk.name);
        } catch (err) {
          problem(`disk ${disk.name}: ${(err as Error).message}`);
          done += disk.size;
          continue;
        }
        const check = async (i: number) => {
          const digest = index.digest(i);
          let verdict = known.get(digest);
          if (verdict === undefined) {
            verdict = readOne(ds, index, i, result);
            // Bounded: past this, a chunk shared by backups far apart may be read twice.
            if (known.size >= MAX_KNOWN) known.clear();
            known.set(digest, verdict);
          }
          const wrong = await verdict;
          return wrong === null ? null : `disk ${disk.name} chunk ${i} (${digest}): ${wrong}`;
        };
        for (let i = 0; i < index.count; i += PARALLEL) {
          if (signal?.aborted) throw new TernError('cancelled', 'verify cancelled');
          const batch = [];
          for (let j = i; j < Math.min(index.count, i + PARALLEL); j++) batch.push(check(j));
          // In disk order, whichever read ends first.
          for (const wrong of await Promise.all(batch)) if (wrong !== null) problem(wrong);
          done += Math.min(index.count, i + PARALLEL) * index.chunkSize - i * index.chunkSize;
          if (Date.now() - reportedAt >= 1000) {
            reportedAt = Date.now();
            progress({ item, doneBytes: Math.min(done, total), totalBytes: total });
          }
        }
      }
      progress({ item, doneBytes: total, totalBytes: total });
    } catch (err) {
      if (err instanceof TernError && err.code === 'cancelled') throw err;
      problem(`manifest: ${(err as Error).message}`);
    }
    result.backups.push({ group, id, ok: problems.length === 0, problems });
  }
  return result;
}

/** Reads chunk `i` once: null when it is whole, else what is wrong (a damaged one set aside). */
async function readOne(
  ds: Datastore,
  index: FixedIndex,
  i: number,
  result: VerifyResult,
): Promise<string | null> {
  result.chunksChecked++;
  try {
    const data = await ds.readChunk(index, i);
    result.bytesChecked += data.length;
    return null;
  } catch (err) {
    if ((err as TernError).details?.damaged) await ds.chunks.quarantine(index.digest(i));
    return (err as Error).message;
  }
}
