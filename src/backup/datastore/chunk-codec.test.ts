import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { TernError } from '../../errors.ts';
import { decodeChunk, encodeChunk } from './chunk-codec.ts';
import { chunkDigest, deriveDatastoreKey } from './chunk-key.ts';

const key = deriveDatastoreKey(Buffer.alloc(32, 7));
const text = Buffer.from('Tern keeps backups of servers. '.repeat(4096));

function damaged(fn: () => unknown, reason?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TernError, String(err));
    assert.equal(err.code, 'storage_error');
    assert.equal(err.details?.damaged, true);
    if (reason) assert.match(err.message, reason);
    return true;
  });
}

test('a chunk decodes to its bytes: compressible or not, encrypted or not', () => {
  const random = randomBytes(65536);
  for (const k of [undefined, key])
    for (const data of [text, random]) {
      const { digest, file } = encodeChunk(data, { key: k });
      assert.deepEqual(decodeChunk(file, digest, k), data);
    }
  // Compressible data is stored compressed, random data as it is (plus the header).
  assert.ok(encodeChunk(text).file.length < text.length / 10);
  assert.equal(encodeChunk(random).file.length, random.length + 12);
});

test('unencrypted chunks are named by SHA-256; encrypted ones by a keyed digest that differs per key', () => {
  const sha = createHash('sha256').update(text).digest('hex');
  assert.equal(encodeChunk(text).digest, sha);
  const a = encodeChunk(text, { key }).digest;
  const b = encodeChunk(text, { key: deriveDatastoreKey(Buffer.alloc(32, 8)) }).digest;
  assert.notEqual(a, sha);
  assert.notEqual(a, b);
  assert.equal(encodeChunk(text, { key }).digest, a, 'same data, same key: same name (dedup)');
});

test('every altered byte of a chunk file is detected, encrypted or not', () => {
  for (const k of [undefined, key]) {
    const { digest, file } = encodeChunk(text, { key: k });
    for (let at = 0; at < file.length; at += Math.max(1, Math.floor(file.length / 97))) {
      const bad = Buffer.from(file);
      bad[at]! ^= 0x40;
      damaged(() => decodeChunk(bad, digest, k));
    }
    damaged(() => decodeChunk(file.subarray(0, file.length - 1), digest, k));
    damaged(() => decodeChunk(file.subarray(0, 5), digest, k), /shorter than a header/);
  }
});

test('a chunk file under another name is refused; an encrypted one does not even decrypt there', () => {
  const a = encodeChunk(text, { key });
  const other = chunkDigest(Buffer.from('other'), key).toString('hex');
  damaged(() => decodeChunk(a.file, other, key), /does not authenticate/);
  const plain = encodeChunk(text);
  damaged(() => decodeChunk(plain.file, createHash('sha256').update('x').digest('hex')), /does not hash/);
});

test('a zstd frame that inflates past the length in its header is refused without inflating it', () => {
  const bomb = zlib.zstdCompressSync(Buffer.alloc(32 * 1024 * 1024));
  const header = Buffer.from([0x54, 0x43, 0x4b, 0x01, 1, 0, 0, 0, 0, 0, 0x10, 0]);
  const digest = createHash('sha256').update(Buffer.alloc(4096)).digest('hex');
  damaged(() => decodeChunk(Buffer.concat([header, bomb]), digest), /zstd/);
});

test('an encrypted chunk read without the key, or a plain one read with it, is refused', () => {
  const enc = encodeChunk(text, { key });
  damaged(() => decodeChunk(enc.file, enc.digest), /without a key/);
  const plain = encodeChunk(text);
  damaged(() => decodeChunk(plain.file, plain.digest, key), /not encrypted/);
});
