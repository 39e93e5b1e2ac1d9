/**
 * The chunks of one datastore: `chunks/<first 4 hex digits>/<digest>`, each file written whole or
 * not at all. Any number of writers (threads, processes, hosts on shared storage) may insert the
 * same chunk at once: each writes its own temporary and renames it over the name, and every
 * version is a valid encoding of the same plaintext, so readers see one whole file or none.
 *
 * A chunk's bytes are flushed before its rename, but the directories that gained names are
 * flushed once, in `flush()`, before a backup's indexes are written: flushing the directory
 * costs about 0.2 ms per chunk here, of the 1.3 ms a 64 KiB chunk takes (bench/backup-chunks.ts,
 * file-system figures in its notes). A crash before
 * `flush()` may lose a name, never leave a short file under one; and the backup that lost it
 * has no manifest, so nothing refers to it.
 *
 * Inserting a chunk that exists already only touches its access time: garbage collection sweeps
 * chunks by access time with a safety window, so a chunk a running backup has just referenced
 * is never swept (Proxmox Backup Server's rule).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import { isTempName, syncDirectory, writeFileAtomic } from './atomic-file.ts';
import { decodeChunk, encodeChunk, MAX_CHUNK_FILE_BYTES } from './chunk-codec.ts';
import { chunkDigest, type DatastoreKey, isDigestHex } from './chunk-key.ts';

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
    if (await this.#touch(file)) return { digest, written: false, storedBytes: 0 };
    const encoded = encodeChunk(data, { key: this.#key, level: this.#level });
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      await writeFileAtomic(file, encoded.file, { syncDirectory: false });
    } catch (err) {
      throw full(path.dirname(this.#dir), err) ?? err;
    }
    return { digest, written: true, storedBytes: encoded.file.length };
  }

  /** Makes the names of every chunk inserted so far durable; before an index refers to them. */
  async flush(): Promise<void> {
    const dirs = [...this.#unsynced];
    this.#unsynced.clear();
    try {
      for (let i = 0; i < dirs.length; i += 16) await Promise.all(dirs.slice(i, i + 16).map(syncDirectory));
    } catch (err) {
      for (const d of dirs) this.#unsynced.add(d);
      throw err;
    }
  }

  /** The chunk's plaintext, checked against its name; TernError('storage_error') otherwise. */
  async read(digest: string): Promise<Buffer> {
    const file = this.pathOf(digest);
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
  touch(digest: string): Promise<boolean> {
    return this.#touch(this.pathOf(digest));
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
