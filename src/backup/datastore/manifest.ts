/**
 * The manifest of one backup (pure: encode and decode): which disks it holds, the index file of
 * each with that file's SHA-256, and the key it was written with. It is written last, so a
 * backup without a manifest was never finished and nothing may trust its indexes.
 *
 * In an encrypted datastore the manifest carries an HMAC under a key derived from the datastore
 * key: someone who can write to the datastore but lacks the key cannot swap a disk's index, or
 * one backup's manifest for another's, without the restore refusing it.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { type Static, Type } from 'typebox';
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import type { DatastoreKey } from './chunk-key.ts';
import { isChunkSize, MAX_DISK_SIZE } from './fixed-index.ts';

/** Names of groups, backups and disks: they become file names, so nothing that could climb out. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$';
const NAME = new RegExp(NAME_PATTERN);
export const MAX_MANIFEST_BYTES = 1024 * 1024;
const HEX64 = '^[0-9a-f]{64}$';

const DiskEntrySchema = Type.Object(
  {
    name: Type.String({ pattern: NAME_PATTERN }),
    size: Type.Integer({ minimum: 1, maximum: MAX_DISK_SIZE }),
    chunkSize: Type.Integer({ minimum: 1 }),
    /** The index file, beside the manifest. */
    index: Type.String({ pattern: NAME_PATTERN }),
    indexSha256: Type.String({ pattern: HEX64 }),
    indexBytes: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
);

const ManifestSchema = Type.Object(
  {
    format: Type.Literal('tern-backup'),
    version: Type.Literal(1),
    group: Type.String({ pattern: NAME_PATTERN }),
    id: Type.String({ pattern: NAME_PATTERN }),
    createdAt: Type.String({ maxLength: 64 }),
    /** The datastore key's fingerprint, or null in an unencrypted datastore. */
    keyFingerprint: Type.Union([Type.String({ pattern: '^[0-9a-f]{32}$' }), Type.Null()]),
    disks: Type.Array(DiskEntrySchema, { maxItems: 256 }),
    /** Free-form facts of the backup (VM name, consistency), for people and the manager. */
    labels: Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);

export type DiskEntry = Static<typeof DiskEntrySchema>;
export type Manifest = Static<typeof ManifestSchema>;

export function isName(value: unknown): value is string {
  return typeof value === 'string' && NAME.test(value);
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

const macOf = (body: string, key: DatastoreKey) =>
  createHmac('sha256', key.manifestKey).update(body, 'utf8').digest('hex');

/** `{"manifest": …, "mac": …}`: the MAC covers the manifest's exact bytes as written. */
export function encodeManifest(manifest: Manifest, key?: DatastoreKey): Buffer {
  if (!Value.Check(ManifestSchema, manifest)) throw new TernError('invalid_request', 'manifest is not valid');
  if ((manifest.keyFingerprint ?? undefined) !== key?.fingerprint)
    throw new TernError('invalid_request', 'manifest key fingerprint does not match the key');
  const body = JSON.stringify(manifest);
  const mac = key ? macOf(body, key) : null;
  return Buffer.from(`{"manifest":${body},"mac":${JSON.stringify(mac)}}\n`, 'utf8');
}

export function decodeManifest(file: Buffer, key?: DatastoreKey): Manifest {
  const bad = (why: string) =>
    new TernError('storage_error', `manifest is damaged: ${why}`, { damaged: true });
  if (file.length > MAX_MANIFEST_BYTES) throw bad(`${file.length} bytes is too large`);
  const text = file.toString('utf8');
  // The MAC is over the manifest's bytes, so they are cut out as written rather than re-encoded.
  const prefix = '{"manifest":';
  const macAt = text.lastIndexOf(',"mac":');
  if (!text.startsWith(prefix) || macAt < 0) throw bad('not a Tern backup manifest');
  const body = text.slice(prefix.length, macAt);
  let manifest: unknown;
  let mac: unknown;
  try {
    manifest = JSON.parse(body);
    mac = (JSON.parse(text) as { mac?: unknown }).mac;
  } catch {
    throw bad('not JSON');
  }
  if (!Value.Check(ManifestSchema, manifest)) {
    const first = [...Value.Errors(ManifestSchema, manifest)][0];
    throw bad(first ? `${first.instancePath || '/'} ${first.message}` : 'invalid');
  }
  if (manifest.keyFingerprint !== (key?.fingerprint ?? null))
    throw new TernError(
      'invalid_request',
      manifest.keyFingerprint === null
        ? 'this backup is not encrypted and the datastore was opened with a key'
        : `this backup is encrypted with key ${manifest.keyFingerprint}, not the key given`,
    );
  if (key) {
    const want = Buffer.from(macOf(body, key), 'hex');
    const got =
      typeof mac === 'string' && /^[0-9a-f]{64}$/.test(mac) ? Buffer.from(mac, 'hex') : Buffer.alloc(32);
    if (!timingSafeEqual(want, got)) throw bad('its MAC does not verify under the datastore key');
  }
  for (const disk of manifest.disks)
    if (!isChunkSize(disk.chunkSize)) throw bad(`disk ${disk.name} has chunk size ${disk.chunkSize}`);
  if (new Set(manifest.disks.map((d) => d.name)).size !== manifest.disks.length)
    throw bad('a disk appears twice');
  return manifest;
}
