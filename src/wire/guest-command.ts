/**
 * Guest commands: a command run inside a VM and a file read from it, through the QEMU guest
 * agent. The same shapes travel API → manager → agent; bytes travel as base64 in JSON (a
 * command's output) or as the body itself (a file).
 */
import { type Static, Type } from 'typebox';

const MiB = 1024 * 1024;

/** What a command may be given on its standard input: 1 MiB (qemu-ga holds it in memory). */
export const maxExecInputBytes = MiB;
/** What Tern keeps of each output stream by default, and at most (qemu-ga's own bound). */
export const defaultExecOutputBytes = MiB;
export const maxExecOutputBytes = 16 * MiB;
/** How much of a file `file get` reads by default, and at most. */
export const defaultFileReadBytes = 16 * MiB;
export const maxFileReadBytes = 256 * MiB;

export const GuestExecRequest = Type.Object(
  {
    command: Type.Array(Type.String({ minLength: 1, maxLength: 4096, pattern: '^[^\\u0000]*$' }), {
      minItems: 1,
      maxItems: 256,
      description: 'the program (looked up in the guest agent’s PATH) and its arguments; no shell',
    }),
    input: Type.Optional(
      Type.String({
        maxLength: Math.ceil(maxExecInputBytes / 3) * 4,
        pattern: '^[A-Za-z0-9+/]*={0,2}$',
        description: 'standard input, base64 (at most 1 MiB decoded)',
      }),
    ),
    timeoutSeconds: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 3600,
        default: 30,
        description: 'how long to wait for the command to end',
      }),
    ),
    maxOutputBytes: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: maxExecOutputBytes,
        description: 'bytes kept of each of stdout and stderr (default 1 MiB); the rest is cut off',
      }),
    ),
  },
  { additionalProperties: false },
);
export type GuestExecRequest = Static<typeof GuestExecRequest>;

export const GuestExecResult = Type.Object({
  /** The exit code; null when a signal ended the command. */
  exitCode: Type.Union([Type.Integer(), Type.Null()]),
  signal: Type.Union([Type.Integer(), Type.Null()], { description: 'the signal that ended the command' }),
  stdout: Type.String({ description: 'base64' }),
  stderr: Type.String({ description: 'base64' }),
  stdoutTruncated: Type.Boolean(),
  stderrTruncated: Type.Boolean(),
  /** The guest's pid of the command. */
  pid: Type.Integer(),
  durationMs: Type.Integer(),
});
export type GuestExecResult = Static<typeof GuestExecResult>;

export const GuestFileReadRequest = Type.Object(
  {
    path: Type.String({
      minLength: 1,
      maxLength: 4096,
      pattern: '^/[^\\u0000]*$',
      description: 'absolute path of the file in the guest',
    }),
    maxBytes: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: maxFileReadBytes,
        description: 'refuse a file larger than this (default 16 MiB)',
      }),
    ),
  },
  { additionalProperties: false },
);
export type GuestFileReadRequest = Static<typeof GuestFileReadRequest>;

/**
 * The serial number a Tern disk shows the guest (/sys/block/vdX/serial, lsblk SERIAL): its
 * slot, stable while the VM runs and across a migration (both ends build the same devices).
 * virtio-blk serials hold at most 20 bytes.
 */
export function diskSerial(slot: number): string {
  return `tern-disk-${slot}`;
}
