/**
 * One disk of a backup read at any offset, as a block device would be: the chunks a read
 * touches are fetched (and verified) from the datastore, a few kept for the next reads, and a
 * chunk asked for twice at once is fetched once. Serves live restore and reading a backup
 * over NBD; `zeroExtents` tells which ranges are chunks of zeros without reading them.
 */
import type { Datastore } from './datastore.ts';
import type { FixedIndex } from './fixed-index.ts';

const CACHED_CHUNKS = 32;

export class BackupDiskReader {
  readonly size: number;
  readonly #store: Datastore;
  readonly #index: FixedIndex;
  /** Chunk number → its bytes (or the read under way), least recently used first. */
  readonly #cache = new Map<number, Promise<Buffer>>();
  readonly #zeroDigests: Set<string>;

  constructor(store: Datastore, index: FixedIndex) {
    this.size = index.diskSize;
    this.#store = store;
    this.#index = index;
    // A full chunk of zeros and the (shorter) last one, named as this datastore names chunks.
    const last = index.range(index.count - 1).length;
    this.#zeroDigests = new Set([index.chunkSize, last].map((n) => store.chunks.digestOf(Buffer.alloc(n))));
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    const size = this.#index.chunkSize;
    for (let at = offset; at < offset + length; ) {
      const i = Math.floor(at / size);
      const range = this.#index.range(i);
      const within = at - range.offset;
      const n = Math.min(range.length - within, offset + length - at);
      if (!this.#isZero(i)) (await this.#chunk(i)).copy(out, at - offset, within, within + n);
      at += n;
    }
    return out;
  }

  async zeroExtents(offset: number, length: number): Promise<{ length: number; zero: boolean }[]> {
    const out: { length: number; zero: boolean }[] = [];
    const size = this.#index.chunkSize;
    for (let at = offset; at < offset + length; ) {
      const i = Math.floor(at / size);
      const range = this.#index.range(i);
      const n = Math.min(range.offset + range.length, offset + length) - at;
      const zero = this.#isZero(i);
      const last = out.at(-1);
      if (last && last.zero === zero) last.length += n;
      else out.push({ length: n, zero });
      at += n;
    }
    return out;
  }

  #isZero(i: number): boolean {
    return this.#zeroDigests.has(this.#index.digest(i));
  }

  #chunk(i: number): Promise<Buffer> {
    const hit = this.#cache.get(i);
    if (hit) {
      this.#cache.delete(i);
      this.#cache.set(i, hit);
      return hit;
    }
    const read = this.#store.readChunk(this.#index, i);
    this.#cache.set(i, read);
    // A failed read is not kept: the next read tries again and fails (or succeeds) on its own.
    read.catch(() => this.#cache.delete(i));
    while (this.#cache.size > CACHED_CHUNKS) this.#cache.delete(this.#cache.keys().next().value as number);
    return read;
  }
}
