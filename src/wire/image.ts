/**
 * Disk images and ISOs in the library: what the API shows, what the manager asks an agent to
 * import, and the agent's answers (an upload's size and digest, an import's progress).
 */
import { type Static, Type } from 'typebox';
import { Name, Timestamp } from './common.ts';
import { VolumeRef } from './vm.ts';

export const ImageKind = Type.Union([Type.Literal('disk'), Type.Literal('iso')], {
  description: 'disk: a disk image, stored as qcow2; iso: an ISO 9660 image, stored as it is',
});
export type ImageKind = Static<typeof ImageKind>;

/** Formats an import accepts; `vhd` is what qemu-img calls `vpc`. */
export const ImageSourceFormat = Type.Union(
  [
    Type.Literal('auto'),
    Type.Literal('raw'),
    Type.Literal('qcow2'),
    Type.Literal('vmdk'),
    Type.Literal('vhd'),
    Type.Literal('vhdx'),
  ],
  { description: 'the format of the file to import; auto detects any but raw, which must be named' },
);
export type ImageSourceFormat = Static<typeof ImageSourceFormat>;

const HostPath = Type.String({
  minLength: 2,
  maxLength: 4096,
  pattern: '^/',
  description: 'absolute path of a file on the host',
});

export const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

export const Image = Type.Object({
  name: Name,
  kind: ImageKind,
  format: Type.String({ description: 'how the library stores it: qcow2 for disks, raw for ISOs' }),
  sourceFormat: Type.String({ description: 'what it was imported from: raw, qcow2, vmdk, vhd, vhdx or iso' }),
  host: Type.Union([Type.String(), Type.Null()]),
  volume: VolumeRef,
  virtualBytes: Type.Integer(),
  actualBytes: Type.Integer(),
  sha256: Type.Union([Sha256, Type.Null()], {
    description:
      'of the stored file (what `verify` checks and `content` sends); null only for images imported before digests were recorded',
  }),
  createdAt: Timestamp,
});
export type Image = Static<typeof Image>;

const Compress = Type.Boolean({
  description: 'store a disk as compressed qcow2 (qemu-img convert -c); default false',
});

export const CreateImageRequest = Type.Object(
  {
    name: Name,
    kind: Type.Optional(ImageKind),
    sourcePath: HostPath,
    format: Type.Optional(ImageSourceFormat),
    compress: Type.Optional(Compress),
  },
  { additionalProperties: false },
);
export type CreateImageRequest = Static<typeof CreateImageRequest>;

export const UploadImageQuery = Type.Object(
  {
    kind: Type.Optional(ImageKind),
    format: Type.Optional(ImageSourceFormat),
    compress: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
  },
  { additionalProperties: false },
);
export type UploadImageQuery = Static<typeof UploadImageQuery>;

// The agent's side.

/** Imports a host file (`sourcePath`) or a staged upload (`upload`) into `volume`. */
export const ImportImageRequest = Type.Object(
  {
    volume: VolumeRef,
    sourcePath: Type.Optional(HostPath),
    upload: Type.Optional(VolumeRef),
    kind: ImageKind,
    format: Type.Optional(ImageSourceFormat),
    compress: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ImportImageRequest = Static<typeof ImportImageRequest>;

export const ImportedImage = Type.Object({
  volume: VolumeRef,
  format: Type.String(),
  sourceFormat: Type.String(),
  virtualBytes: Type.Integer(),
  actualBytes: Type.Integer(),
  sha256: Type.Union([Sha256, Type.Null()]),
});
export type ImportedImage = Static<typeof ImportedImage>;

/** The lines of an import's `application/x-ndjson` answer; it ends with `done` or `error`. */
export const ImportEvent = Type.Union([
  Type.Object({ type: Type.Literal('step'), step: Type.String() }),
  Type.Object({ type: Type.Literal('progress'), percent: Type.Number() }),
  Type.Object({ type: Type.Literal('heartbeat') }),
  Type.Object({ type: Type.Literal('done'), image: ImportedImage }),
  Type.Object({
    type: Type.Literal('error'),
    error: Type.Object({ code: Type.String(), message: Type.String() }),
  }),
]);
export type ImportEvent = Static<typeof ImportEvent>;

export const UploadQuery = VolumeRef;

/** A stored file re-hashed on its host (`image verify`). */
export const VolumeDigest = Type.Object({ bytes: Type.Integer(), sha256: Sha256 });
export type VolumeDigest = Static<typeof VolumeDigest>;

export const UploadResult = Type.Object({
  volume: VolumeRef,
  bytes: Type.Integer(),
  sha256: Sha256,
});
export type UploadResult = Static<typeof UploadResult>;

/** The bound on one upload, manager and agent alike: 64 GiB unless TERN_MAX_UPLOAD_BYTES says. */
export function maxUploadBytes(env: Record<string, string | undefined> = process.env): number {
  const v = env.TERN_MAX_UPLOAD_BYTES;
  return v && /^\d+$/.test(v) ? Number(v) : 64 * 2 ** 30;
}
