/**
 * A datastore: one directory, local or on shared storage, holding deduplicated chunks and the
 * backups made of them.
 *
 *   DIR/datastore.json                       format version; the key's fingerprint if encrypted
 *   DIR/chunks/<4 hex>/<digest>              chunk-store.ts
 *   DIR/backups/<group>/<id>/manifest.json   manifest.ts, written last
 *   DIR/backups/<group>/<id>/<disk>.fidx     fixed-index.ts
 *
 * A group is what is backed up (a VM), an id one point in time. The datastore key comes from the
 * caller; the directory holds only its fingerprint, so opening with the wrong key (which would
 * name every chunk differently and silently stop deduplicating) is refused at once.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Type } from 'typebox';
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import { syncDirectory, writeFileAtomic } from './atomic-file.ts';
import { type DatastoreKey, deriveDatastoreKey } from './chunk-key.ts';
import { ChunkStore, full } from './chunk-store.ts';
import { FixedIndex } from './fixed-index.ts';
import {
  decodeManifest,
  encodeManifest,
  isName,
  MAX_MANIFEST_BYTES,
  type Manifest,
  sha256Hex,
} from './manifest.ts';

const CONFIG = 'datastore.json';
const MANIFEST = 'manifest.json';
const INDEX_SUFFIX = '.fidx';

const ConfigSchema = Type.Object({
  format: Type.Literal('tern-datastore'),
  version: Type.Literal(1),
  createdAt: Type.String({ maxLength: 64 }),
  encryption: Type.Union([
    Type.Null(),
    Type.Object({
      cipher: Type.Literal('aes-256-gcm'),
      chunkNames: Type.Literal('hmac-sha256'),
      keyFingerprint: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    }),
  ]),
});

export interface DatastoreOptions {
  /** 32 bytes: the datastore is encrypted with it (create), or it opens an encrypted one. */
  key?: Buffer | undefined;
  /** zstd level for new chunks. */
  level?: number;
}

export interface BackupDisk {
  name: string;
  index: FixedIndex;
}

export class Datastore {
  readonly dir: string;
  readonly chunks: ChunkStore;
  readonly #key: DatastoreKey | undefined;

  private constructor(dir: string, key: DatastoreKey | undefined, level: number | undefined) {
    this.dir = dir;
    this.#key = key;
    this.chunks = new ChunkStore(path.join(dir, 'chunks'), { key, level: level ?? 1 });
  }

  /** The key's fingerprint; null when not encrypted. Two datastores with one key name chunks alike. */
  get fingerprint(): string | null {
    return this.#key?.fingerprint ?? null;
  }

  get encrypted(): boolean {
    return this.#key !== undefined;
  }

  /** Makes `dir` a datastore (it may exist, but must not be one already). */
  static async create(dir: string, options: DatastoreOptions = {}): Promise<Datastore> {
    const key = options.key ? deriveDatastoreKey(options.key) : undefined;
    await fs.mkdir(path.join(dir, 'chunks'), { recursive: true });
    await fs.mkdir(path.join(dir, 'backups'), { recursive: true });
    const config = {
      format: 'tern-datastore',
      version: 1,
      createdAt: new Date().toISOString(),
      encryption: key
        ? { cipher: 'aes-256-gcm', chunkNames: 'hmac-sha256', keyFingerprint: key.fingerprint }
        : null,
    };
    try {
      // 'wx': two creates of one directory cannot both succeed.
      await fs.writeFile(path.join(dir, CONFIG), `${JSON.stringify(config, null, 2)}\n`, { flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw new TernError('conflict', `${dir} is a datastore already`);
      throw err;
    }
    return new Datastore(dir, key, options.level);
  }

  static async open(dir: string, options: DatastoreOptions = {}): Promise<Datastore> {
    let config: unknown;
    try {
      config = JSON.parse(await fs.readFile(path.join(dir, CONFIG), 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new TernError('not_found', `${dir} is not a datastore (no ${CONFIG})`);
      throw new TernError('storage_error', `${dir}/${CONFIG}: ${(err as Error).message}`);
    }
    if (!Value.Check(ConfigSchema, config))
      throw new TernError('storage_error', `${dir}/${CONFIG} is not a Tern datastore of a known version`);
    const key = options.key ? deriveDatastoreKey(options.key) : undefined;
    const want = config.encryption?.keyFingerprint;
    if (want && !key)
      throw new TernError('invalid_request', `datastore ${dir} is encrypted: its key is needed`);
    if (!want && key)
      throw new TernError('invalid_request', `datastore ${dir} is not encrypted; no key is used`);
    if (want && key && key.fingerprint !== want)
      throw new TernError(
        'invalid_request',
        `datastore ${dir} is encrypted with key ${want}, not the key given`,
      );
    return new Datastore(dir, key, options.level);
  }

  #groupDir(group: string): string {
    if (!isName(group)) throw new TernError('invalid_request', `bad backup group ${group}`);
    return path.join(this.dir, 'backups', group);
  }

  #backupDir(group: string, id: string): string {
    if (!isName(id)) throw new TernError('invalid_request', `bad backup name ${group}/${id}`);
    return path.join(this.#groupDir(group), id);
  }

  /**
   * Records a finished backup: every index, then the manifest that names them with their
   * checksums. Every chunk the indexes name must be in the store already.
   */
  async commitBackup(
    group: string,
    id: string,
    disks: readonly BackupDisk[],
    labels: Record<string, string> = {},
    /** When the backup was taken: now, unless it is a copy of one taken elsewhere (sync.ts). */
    createdAt: string = new Date().toISOString(),
  ): Promise<Manifest> {
    const dir = this.#backupDir(group, id);
    for (const disk of disks) {
      if (!isName(disk.name)) throw new TernError('invalid_request', `bad disk name ${disk.name}`);
      if (!disk.index.complete)
        throw new TernError('internal', `disk ${disk.name}: index has unnamed chunks`);
    }
    // Named and durable first (inserts name their chunks in batches), then each one touched.
    await this.chunks.flush();
    await this.#touchAll(disks);
    await fs.mkdir(path.dirname(dir), { recursive: true });
    try {
      await fs.mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw new TernError('conflict', `backup ${group}/${id} exists already`);
      throw err;
    }
    try {
      return await this.#writeBackup(dir, group, id, disks, labels, createdAt);
    } catch (err) {
      // No manifest, so no backup: the directory goes, whatever made the commit fail.
      await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
      throw full(this.dir, err) ?? err;
    }
  }

  async #writeBackup(
    dir: string,
    group: string,
    id: string,
    disks: readonly BackupDisk[],
    labels: Record<string, string>,
    createdAt: string,
  ): Promise<Manifest> {
    const entries: Manifest['disks'] = [];
    for (const disk of disks) {
      const bytes = disk.index.encode();
      const file = `${disk.name}${INDEX_SUFFIX}`;
      await writeFileAtomic(path.join(dir, file), bytes);
      entries.push({
        name: disk.name,
        size: disk.index.diskSize,
        chunkSize: disk.index.chunkSize,
        index: file,
        indexSha256: sha256Hex(bytes),
        indexBytes: bytes.length,
      });
    }
    const manifest: Manifest = {
      format: 'tern-backup',
      version: 1,
      group,
      id,
      createdAt,
      keyFingerprint: this.#key?.fingerprint ?? null,
      disks: entries,
      labels,
    };
    await writeFileAtomic(path.join(dir, MANIFEST), encodeManifest(manifest, this.#key));
    return manifest;
  }

  /**
   * Touches every chunk the indexes name, so a garbage collection that listed the manifests
   * before this one exists still keeps them (those copied from a previous backup's index were
   * not inserted, so not touched, by this backup); one missing fails the commit, naming it,
   * rather than leaving a backup that cannot be restored.
   */
  async #touchAll(disks: readonly BackupDisk[]): Promise<void> {
    for (const disk of disks) {
      const missing = await this.chunks.touchIndex(disk.index);
      if (missing)
        throw new TernError(
          'storage_error',
          `chunk ${missing.digest} of disk ${disk.name} is not in the datastore`,
          { chunk: missing.digest, position: missing.position, missing: true },
        );
    }
  }

  /**
   * Every finished backup (one with a manifest), of one group or all, sorted by group then id.
   * Directories without a manifest are backups never finished (or being committed): not listed.
   */
  async listBackups(group?: string): Promise<{ group: string; id: string }[]> {
    const root = path.join(this.dir, 'backups');
    const groups = group === undefined ? (await namesIn(root)).filter(isName) : [group];
    const found: { group: string; id: string }[] = [];
    for (const g of groups.sort()) {
      const gdir = this.#groupDir(g);
      for (const id of (await namesIn(gdir)).filter(isName).sort()) {
        if (await exists(path.join(gdir, id, MANIFEST))) found.push({ group: g, id });
      }
    }
    return found;
  }

  /**
   * Removes a backup, finished or not; one not there is done. The manifest goes first (and that
   * is made durable), so a crash midway leaves an unfinished backup, never a manifest naming a
   * missing index; garbage collection removes what is left. Its chunks stay until a GC.
   */
  async forgetBackup(group: string, id: string): Promise<void> {
    const dir = this.#backupDir(group, id);
    try {
      await fs.rm(path.join(dir, MANIFEST));
      await syncDirectory(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await fs.rm(dir, { recursive: true, force: true });
    // The group's directory goes with its last backup; another writer may have just made one.
    await fs.rmdir(path.dirname(dir)).catch(() => {});
  }

  /** Size and free space of the file system holding the datastore. */
  async usage(): Promise<{ totalBytes: number; freeBytes: number }> {
    const s = await fs.statfs(this.dir);
    return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
  }

  async readManifest(group: string, id: string): Promise<Manifest> {
    const file = path.join(this.#backupDir(group, id), MANIFEST);
    const bytes = await readBounded(file, MAX_MANIFEST_BYTES, `backup ${group}/${id}`);
    const manifest = decodeManifest(bytes, this.#key);
    if (manifest.group !== group || manifest.id !== id)
      throw new TernError(
        'storage_error',
        `manifest of ${group}/${id} names ${manifest.group}/${manifest.id}`,
        {
          damaged: true,
        },
      );
    return manifest;
  }

  /** A disk's index, checked against the checksum its manifest recorded. */
  async readIndex(manifest: Manifest, disk: string): Promise<FixedIndex> {
    const entry = manifest.disks.find((d) => d.name === disk);
    if (!entry)
      throw new TernError('not_found', `backup ${manifest.group}/${manifest.id} has no disk ${disk}`);
    const file = path.join(this.#backupDir(manifest.group, manifest.id), entry.index);
    const bytes = await readBounded(file, entry.indexBytes, `index of ${disk}`);
    if (bytes.length !== entry.indexBytes || sha256Hex(bytes) !== entry.indexSha256)
      throw new TernError(
        'storage_error',
        `index of ${disk} in ${manifest.group}/${manifest.id} is damaged`,
        {
          damaged: true,
        },
      );
    const index = FixedIndex.decode(bytes);
    if (index.diskSize !== entry.size || index.chunkSize !== entry.chunkSize)
      throw new TernError('storage_error', `index of ${disk} does not match its manifest`, { damaged: true });
    return index;
  }

  /** Chunk `i` of a disk's index: its bytes, checked against its name and its length. */
  async readChunk(index: FixedIndex, i: number): Promise<Buffer> {
    const data = await this.chunks.read(index.digest(i));
    if (data.length !== index.range(i).length)
      throw new TernError(
        'storage_error',
        `chunk ${i} holds ${data.length} bytes, not ${index.range(i).length}`,
        {
          chunk: index.digest(i),
          damaged: true,
        },
      );
    return data;
  }
}

async function readBounded(file: string, max: number, what: string): Promise<Buffer> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new TernError('not_found', `${what} not found`);
    throw new TernError('storage_error', `${what}: ${(err as Error).message}`);
  }
  try {
    const { size } = await handle.stat();
    if (size > max)
      throw new TernError('storage_error', `${what} is damaged: ${size} bytes`, { damaged: true });
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** The entries of a directory; none when it does not exist. */
export async function namesIn(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      return [];
    throw err;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}
