/**
 * Staged uploads: a file streamed into `uploads/…` of a pool, bounded in size, hashed on the
 * way, and renamed into place only when every announced byte arrived. Imports read them.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TernError } from '../../errors.ts';
import type { UploadResult } from '../../wire/image.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { type Pools, resolveVolume } from './pools.ts';
import { poolUsage } from './volumes.ts';

/** Checks an upload before a byte is read; returns the staging file. */
export async function planUpload(
  pools: Pools,
  ref: VolumeRef,
  length: number | undefined,
  maxBytes: number,
): Promise<string> {
  if (!ref.path.startsWith('uploads/'))
    throw new TernError('invalid_request', 'uploads go under uploads/ in a pool');
  const file = resolveVolume(pools, ref);
  if (length === undefined)
    throw new TernError('invalid_request', 'an upload needs a Content-Length (chunked uploads are refused)');
  if (length === 0) throw new TernError('invalid_request', 'the upload is empty');
  if (length > maxBytes)
    throw new TernError(
      'payload_too_large',
      `the upload of ${length} bytes is over the limit of ${maxBytes} bytes`,
      { limit: maxBytes },
    );
  const free = (await poolUsage(pools[ref.pool])).freeBytes;
  if (length > free)
    throw new TernError('payload_too_large', `pool ${ref.pool} has only ${free} bytes free for ${length}`);
  if (fs.existsSync(file)) throw new TernError('conflict', `upload ${ref.path} exists`);
  return file;
}

/** Writes exactly `length` bytes of `body` to `file`; anything else leaves nothing behind. */
export async function receiveUpload(
  ref: VolumeRef,
  file: string,
  body: Readable,
  length: number,
): Promise<UploadResult> {
  const partial = `${file}.partial`;
  const hash = createHash('sha256');
  let bytes = 0;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let out: fs.promises.FileHandle;
  try {
    out = await fs.promises.open(partial, 'wx');
  } catch (err) {
    const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
    throw new TernError(
      exists ? 'conflict' : 'storage_error',
      exists ? `upload ${ref.path} is in progress` : `cannot write ${ref.path}: ${(err as Error).message}`,
    );
  }
  try {
    await pipeline(
      body,
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          if (bytes > length) {
            done(
              new TernError('invalid_request', `the upload sent more than its Content-Length of ${length}`),
            );
            return;
          }
          hash.update(chunk);
          done(null, chunk);
        },
      }),
      out.createWriteStream(),
    );
    if (bytes !== length)
      throw new TernError('invalid_request', `the upload ended after ${bytes} of ${length} bytes`);
    fs.renameSync(partial, file);
  } catch (err) {
    if (err instanceof TernError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSPC') throw new TernError('storage_error', `pool ${ref.pool} ran out of space`);
    throw new TernError('invalid_request', `the upload was interrupted after ${bytes} of ${length} bytes`);
  } finally {
    fs.rmSync(partial, { force: true });
  }
  return { volume: ref, bytes, sha256: hash.digest('hex') };
}
