/**
 * The default key store: one JSON file readable by the manager's user only. It is replaced
 * atomically (temporary file, fsync, rename) so a crash leaves the old keys or the new ones,
 * never a torn file that would lock every secret away.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { TernError } from '../../../errors.ts';
import { KEK_ID, kekFromStored } from '../envelope.ts';
import type { Kek, KeyStore } from '../keystore.ts';

const FORMAT = 'tern-keys';
const MAX_FILE_BYTES = 1024 * 1024;

interface KeyFile {
  format: typeof FORMAT;
  v: 1;
  keys: { id: string; key: string; createdAt: string }[];
}

const errno = (err: unknown) => (err as NodeJS.ErrnoException)?.code;

export class FileKeyStore implements KeyStore {
  readonly path: string;
  readonly description: string;
  /** Serialises read-modify-write cycles of this process; the rename keeps readers safe. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(file: string) {
    this.path = path.resolve(file);
    this.description = `file ${this.path}`;
  }

  #unavailable(why: string): TernError {
    return new TernError('unavailable', `key store ${this.description}: ${why}`);
  }

  async list(): Promise<Kek[]> {
    await this.#queue.catch(() => undefined);
    return this.#read();
  }

  add(kek: Kek): Promise<void> {
    if (!KEK_ID.test(kek.id) || kek.key.length !== 32)
      return Promise.reject(new TernError('invalid_request', `key ${kek.id} is not a valid 32-byte key`));
    return this.#update((keys) => {
      if (keys.some((k) => k.id === kek.id))
        throw new TernError('conflict', `key store ${this.description} already holds a key ${kek.id}`);
      return [...keys, kek];
    });
  }

  remove(id: string): Promise<void> {
    return this.#update((keys) => {
      if (!keys.some((k) => k.id === id))
        throw new TernError('not_found', `key store ${this.description} holds no key ${id}`);
      return keys.filter((k) => k.id !== id);
    });
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => undefined);
  }

  #update(change: (keys: Kek[]) => Kek[]): Promise<void> {
    const run = this.#queue.catch(() => undefined).then(async () => this.#write(change(await this.#read())));
    this.#queue = run;
    return run;
  }

  async #read(): Promise<Kek[]> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.path, 'r');
    } catch (err) {
      if (errno(err) === 'ENOENT') {
        await this.#ensureDir();
        return [];
      }
      throw this.#unavailable(`cannot open the key file: ${(err as Error).message}`);
    }
    let text: string;
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw this.#unavailable('the key file is not a regular file');
      if (st.mode & 0o077)
        throw this.#unavailable(
          `the key file is readable or writable by other users (mode ${(st.mode & 0o777).toString(8)}), so its keys may be known: run chmod 600 ${this.path}`,
        );
      if (st.size > MAX_FILE_BYTES) throw this.#unavailable('the key file is too large to be a key file');
      text = await fh.readFile('utf8');
    } catch (err) {
      if (err instanceof TernError) throw err;
      throw this.#unavailable(`cannot read the key file: ${(err as Error).message}`);
    } finally {
      await fh.close();
    }
    return this.#parse(text);
  }

  #parse(text: string): Kek[] {
    let o: Partial<KeyFile> | undefined;
    try {
      o = JSON.parse(text);
    } catch {
      throw this.#unavailable('the key file is not valid JSON: restore it from a key backup');
    }
    if (!o || o.format !== FORMAT || o.v !== 1 || !Array.isArray(o.keys))
      throw this.#unavailable(`the key file is not a Tern key file (format ${FORMAT} version 1)`);
    const seen = new Set<string>();
    return o.keys.map((e, i) => {
      const kek = kekFromStored(e);
      if (!kek) throw this.#unavailable(`entry ${i + 1} of the key file is not a valid key`);
      if (seen.has(kek.id)) throw this.#unavailable(`the key file holds key ${kek.id} twice`);
      seen.add(kek.id);
      return kek;
    });
  }

  async #ensureDir(): Promise<void> {
    try {
      await fs.mkdir(path.dirname(this.path), { recursive: true, mode: 0o700 });
    } catch (err) {
      throw this.#unavailable(`cannot create the key file's directory: ${(err as Error).message}`);
    }
  }

  async #write(keys: Kek[]): Promise<void> {
    await this.#ensureDir();
    const body: KeyFile = {
      format: FORMAT,
      v: 1,
      keys: keys.map((k) => ({ id: k.id, key: k.key.toString('base64'), createdAt: k.createdAt })),
    };
    const tmp = `${this.path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      // 'wx' with 0600 from the first byte: the keys are never in a file others could open.
      const fh = await fs.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(body, null, 2)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, this.path);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw this.#unavailable(`cannot write the key file: ${(err as Error).message}`);
    }
    // The rename is durable only once the directory entry is.
    const dir = await fs.open(path.dirname(this.path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
