/**
 * The chunks of one datastore: `chunks/<first 4 hex digits>/<digest>`, each file written whole or
 * not at all. Any number of writers (threads, processes, hosts on shared storage) may insert the
 * same chunk at once: each writes its own temporary and renames it over the name, and every
 * version is a valid encoding of the same plaintext, so readers see one whole file or none.
 *
 * Chunks are named in batches (group commit): a new chunk is written to a temporary without
 * an fsync of its own; every 256 MiB or 4096 chunks, and in `flush()` before a backup's indexes
 * are written, the file system is synced once (syncfs(2), through `sync -f`), then the batch's
 * temporaries are renamed to their names and the directories flushed. So a name always holds
 * a whole chunk, even after a power loss (a file renamed before its data reached the disk can
 * come back empty), and 64 KiB chunks insert at several times the rate of one fsync per chunk
 * (bench/RESULTS.md, bench/backup). Until its batch is named a chunk is known to this store
 * only: another writer of the same chunk writes its own copy; a crash leaves temporaries,
 * which garbage collection removes.
 *
 * Inserting a chunk that exists already only touches its access time: garbage collection sweeps
 * chunks by access time with a safety window, so a chunk a running backup has just referenced
 * is never swept (Proxmox Backup Server's rule).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { TernError } from '../../errors.ts';
import { isTempName, syncDirectory, TEMP_INFIX } from './atomic-file.ts';
import { decodeChunk, encodeChunk, MAX_CHUNK_FILE_BYTES } from './chunk-codec.ts';
import { chunkDigest, type DatastoreKey, isDigestHex } from './chunk-key.ts';
import type { FixedIndex } from './fixed-index.ts';

const run = promisify(execFile);
/** A batch of new chunks is named once it holds this many bytes or chunks. */
const BATCH_BYTES = 256 * 1024 * 1024;
const BATCH_CHUNKS = 4096;

/** A chunk verify found damaged, moved aside. */
export const BAD_SUFFIX = '.bad';

export interface InsertResult {
  digest: string;
  /** False when the datastore held the chunk already (deduplicated). */
  written: boolean;
  /** Bytes of the chunk file written (0 when deduplicated). */
  storedBytes: number;
}

export class ChunkStore {
  readonly #dir: string;
  readonly #key: DatastoreKey | undefined;
  readonly #level: number;
  /** Directories holding names this store wrote or relied on since the last flush. */
  readonly #unsynced = new Set<string>();
  /** New chunks written but not named yet: digest → its temporary. */
  #pending = new Map<string, string>();
  #pendingBytes = 0;
  /** The batch being named now; the next waits for it. */
  #naming: Promise<void> = Promise.resolve();
  /** Chunk directories known to exist: one mkdir each, not one per chunk. */
  readonly #made = new Set<string>();

  constructor(dir: string, options: { key?: DatastoreKey | undefined; level?: number } = {}) {
    this.#dir = dir;
    this.#key = options.key;
    this.#level = options.level ?? 1;
  }

  /** The name `data` has in this store (keyed when the store is encrypted). */
  digestOf(data: Uint8Array): string {
    return chunkDigest(data, this.#key).toString('hex');
  }

  pathOf(digest: string): string {
    if (!isDigestHex(digest)) throw new TernError('invalid_request', `not a chunk digest: ${String(digest)}`);
    return path.join(this.#dir, digest.slice(0, 4), digest);
  }

  async has(digest: string): Promise<boolean> {
    if (this.#pending.has(digest)) return true;
    try {
      await fs.access(this.pathOf(digest));
      return true;
    } catch {
      return false;
    }
  }

  async insert(data: Buffer): Promise<InsertResult> {
    const digest = this.digestOf(data);
    const file = this.pathOf(digest);
    // A name another writer has just made counts too: its directory may not be flushed yet.
    this.#unsynced.add(path.dirname(file));
    if (this.#pending.has(digest) || (await this.#touch(file)))
      return { digest, written: false, storedBytes: 0 };
    const encoded = encodeChunk(data, {
      key: this.#key,
      level: this.#level,
      digest: Buffer.from(digest, 'hex'),
    });
    const temp = `${file}${TEMP_INFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      await this.#writeTemp(temp, encoded.file);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw full(path.dirname(this.#dir), err) ?? err;
    }
    if (this.#pending.has(digest)) {
      // Inserted twice at once: one temporary is enough.
      await fs.rm(temp, { force: true });
      return { digest, written: false, storedBytes: 0 };
    }
    this.#pending.set(digest, temp);
    this.#pendingBytes += encoded.file.length;
    if (this.#pendingBytes >= BATCH_BYTES || this.#pending.size >= BATCH_CHUNKS) await this.#nameBatch();
    return { digest, written: true, storedBytes: encoded.file.length };
  }

  /** A new chunk's temporary, its directory made once (again if something removed it). */
  async #writeTemp(temp: string, bytes: Uint8Array): Promise<void> {
    const dir = path.dirname(temp);
    if (!this.#made.has(dir)) {
      await fs.mkdir(dir, { recursive: true });
      this.#made.add(dir);
    }
    try {
      await fs.writeFile(temp, bytes, { flag: 'wx', mode: 0o640 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(temp, bytes, { flag: 'wx', mode: 0o640 });
    }
  }

  /** Makes every chunk inserted so far durable under its name; before an index refers to them. */
  async flush(): Promise<void> {
    await this.#nameBatch();
    const dirs = [...this.#unsynced];
    this.#unsynced.clear();
    try {
      // One syncfs makes every rename durable, ours and those of other writers relied on; each
      // directory's fsync (one per chunk for small stores: 4096 directories) only without it.
      if (dirs.length === 0 || (await this.#syncFs())) return;
      for (let i = 0; i < dirs.length; i += 16) await Promise.all(dirs.slice(i, i + 16).map(syncDirectory));
    } catch (err) {
      for (const d of dirs) this.#unsynced.add(d);
      throw err;
    }
  }

  /** The batch of new chunks made durable, then renamed to their names. */
  #nameBatch(): Promise<void> {
    const next = this.#naming.then(async () => {
      if (this.#pending.size === 0) return;
      const batch = this.#pending;
      this.#pending = new Map();
      this.#pendingBytes = 0;
      try {
        if (!(await this.#syncFs())) await syncFiles([...batch.values()]);
        const all = [...batch];
        for (let i = 0; i < all.length; i += 64)
          await Promise.all(
            all.slice(i, i + 64).map(([digest, temp]) => fs.rename(temp, this.pathOf(digest))),
          );
      } catch (err) {
        // Not named: the backup relying on them fails; what is left are temporaries.
        throw full(path.dirname(this.#dir), err) ?? err;
      }
    });
    this.#naming = next.catch(() => {});
    return next;
  }

  /** syncfs(2) of the store's file system, through `sync -f`; false where that is not there. */
  async #syncFs(): Promise<boolean> {
    try {
      await run('sync', ['-f', this.#dir], { timeout: 600_000 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new TernError(
        'storage_error',
        `datastore ${path.dirname(this.#dir)}: sync failed: ${(err as Error).message}`,
      );
    }
  }

  /** The chunk's plaintext, checked against its name; TernError('storage_error') otherwise. */
  async read(digest: string): Promise<Buffer> {
    const file = this.#pending.get(digest) ?? this.pathOf(digest);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      throw new TernError(
        'storage_error',
        missing
          ? `chunk ${digest} is missing from the datastore`
          : `chunk ${digest}: ${(err as Error).message}`,
        { chunk: digest, missing },
        { cause: err },
      );
    }
    try {
      const { size } = await handle.stat();
      if (size > MAX_CHUNK_FILE_BYTES)
        throw new TernError('storage_error', `chunk ${digest} is damaged: ${size} bytes is too large`, {
          chunk: digest,
          damaged: true,
        });
      return decodeChunk(await handle.readFile(), digest, this.#key);
    } finally {
      await handle.close();
    }
  }

  /**
   * Marks a chunk as just used, so a garbage collection running now keeps it; false when the
   * store lacks it. A backup that names a chunk it did not insert (copied from the previous
   * index) touches it before it commits.
   */
  async touch(digest: string): Promise<boolean> {
    return this.#pending.has(digest) || this.#touch(this.pathOf(digest));
  }

  /**
   * Touches every chunk an index names, some at once, each about once: a bounded memory of the
   * names just touched skips repeats (a TiB disk names 16 million 64 KiB chunks, too many to
   * hold as a set). Answers the first chunk the store lacks, or null.
   */
  async touchIndex(index: FixedIndex): Promise<{ digest: string; position: number } | null> {
    let missing: { digest: string; position: number } | null = null;
    const recent = new Set<string>();
    let batch: [string, number][] = [];
    const touchBatch = async () => {
      const found = await Promise.all(batch.map(([d]) => this.touch(d)));
      found.forEach((ok, n) => {
        if (!ok && !missing) missing = { digest: batch[n]![0], position: batch[n]![1] };
      });
      batch = [];
    };
    for (let i = 0; i < index.count; i++) {
      const digest = index.digest(i);
      if (recent.has(digest)) continue;
      if (recent.size >= 65536) recent.clear();
      recent.add(digest);
      batch.push([digest, i]);
      if (batch.length >= 64) await touchBatch();
    }
    await touchBatch();
    return missing;
  }

  /**
   * Moves a chunk found damaged aside (`<digest>.bad`, kept for inspection), so the next backup
   * holding that data writes it anew instead of deduplicating against it.
   */
  async quarantine(digest: string): Promise<void> {
    const file = this.pathOf(digest);
    await fs.rename(file, `${file}${BAD_SUFFIX}`).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /** Every file of the store, directory by directory: chunks (by digest), temporaries, the rest. */
  async *files(): AsyncGenerator<{ file: string; digest: string | null; temporary: boolean }> {
    let dirs: string[];
    try {
      dirs = (await fs.readdir(this.#dir)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const d of dirs) {
      if (!/^[0-9a-f]{4}$/.test(d)) continue;
      for (const name of await fs.readdir(path.join(this.#dir, d)).catch(() => [] as string[])) {
        const file = path.join(this.#dir, d, name);
        const digest = isDigestHex(name) && name.startsWith(d) ? name : null;
        yield { file, digest, temporary: isTempName(name) };
      }
    }
  }

  /** Marks an existing chunk as just used; false when there is none. */
  async #touch(file: string): Promise<boolean> {
    try {
      const now = new Date();
      const { mtime } = await fs.stat(file);
      await fs.utimes(file, now, mtime);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }
}

/** A datastore out of room (or over its quota), said so: null for any other error. */
export function full(dir: string, err: unknown): TernError | null {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return null;
  return new TernError(
    'storage_error',
    `datastore ${dir} is full (${code}): the backup stops here; what it wrote is removed by the next garbage collection`,
    { full: true },
    { cause: err },
  );
}

/** Each file's fsync, some at once. */
async function syncFiles(files: string[]): Promise<void> {
  for (let i = 0; i < files.length; i += 32)
    await Promise.all(
      files.slice(i, i + 32).map(async (f) => {
        const h = await fs.open(f, 'r');
        try {
          await h.sync();
        } finally {
          await h.close();
        }
      }),
    );
}
