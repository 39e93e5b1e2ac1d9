/**
 * Whether a file offered for import is acceptable, decided from what `qemu-img` and the ISO
 * header say about it. Imported files are untrusted: a backing file, an external data file or
 * a VMDK extent is a way to read any file on the host, so each is refused with a clear reason.
 */
import path from 'node:path';
import { TernError } from '../../errors.ts';
import { clip } from '../../text.ts';
import type { ImageSourceFormat } from '../../wire/image.ts';

/** The parts of `qemu-img info --output=json` that matter here (all untrusted). */
export interface QemuImgInfo {
  format?: unknown;
  'virtual-size'?: unknown;
  'actual-size'?: unknown;
  'backing-filename'?: unknown;
  'full-backing-filename'?: unknown;
  encrypted?: unknown;
  'format-specific'?: {
    type?: unknown;
    data?: {
      'data-file'?: unknown;
      extents?: { filename?: unknown; format?: unknown; 'virtual-size'?: unknown }[];
    };
  };
}

/** qemu-img's name of each importable format. */
export const qemuFormat: Readonly<Record<Exclude<ImageSourceFormat, 'auto'>, string>> = {
  raw: 'raw',
  qcow2: 'qcow2',
  vmdk: 'vmdk',
  vhd: 'vpc',
  vhdx: 'vhdx',
};
const wireFormat: Readonly<Record<string, string>> = {
  raw: 'raw',
  qcow2: 'qcow2',
  vmdk: 'vmdk',
  vpc: 'vhd',
  vhdx: 'vhdx',
};

/** Formats whose consistency `qemu-img check` can verify. */
export const checkable: ReadonlySet<string> = new Set(['qcow2', 'vmdk', 'vhdx']);

/** Larger virtual disks than this are refused: no real image is, a forged header may be. */
export const maxVirtualBytes = 64 * 2 ** 40;

export interface Extent {
  file: string;
  format: string;
  virtualBytes: number;
}

export interface Probe {
  /** qemu-img's name of the format, as passed to -f. */
  format: string;
  /** The user's name of it (vhd for vpc). */
  sourceFormat: string;
  virtualBytes: number;
  /** VMDK extent files as qemu-img names them (not yet resolved). */
  extents: Extent[];
}

function refuse(what: string, problem: string): TernError {
  return new TernError('invalid_request', `${what}: ${problem}`);
}

/**
 * Decides from `qemu-img info` whether a file can be imported; throws an `invalid_request`
 * naming the problem. `requested` is the format the user named (`auto`: probed, never raw).
 */
export function assessProbe(info: QemuImgInfo, what: string, requested: ImageSourceFormat): Probe {
  if (typeof info !== 'object' || info === null || typeof info.format !== 'string')
    throw refuse(what, 'qemu-img could not tell its format');
  const format = info.format;
  const sourceFormat = wireFormat[format];
  if (!sourceFormat)
    throw refuse(
      what,
      `it is a ${clip(format, 40)} image; Tern imports raw, qcow2, VMDK, VHD and VHDX disk images`,
    );
  if (requested === 'auto' && format === 'raw')
    throw refuse(
      what,
      'not a disk image (no qcow2, VMDK, VHD or VHDX header); a raw disk image is imported with format raw',
    );
  const backing = info['full-backing-filename'] ?? info['backing-filename'];
  if (backing !== undefined)
    throw refuse(
      what,
      `backing file ${clip(String(backing))} outside the library: imported images must stand alone (flatten it first with qemu-img convert)`,
    );
  const data = info['format-specific']?.data;
  if (data?.['data-file'] !== undefined)
    throw refuse(
      what,
      `external data file ${clip(String(data['data-file']))} outside the library: imported images must stand alone`,
    );
  if (info.encrypted === true) throw refuse(what, 'it is encrypted; decrypt it before importing');
  const size = info['virtual-size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0)
    throw refuse(what, 'it has no valid virtual size');
  if (size > maxVirtualBytes)
    throw refuse(what, `its virtual size of ${size} bytes is more than the 64 TiB Tern accepts`);
  const extents: Extent[] = [];
  if (format === 'vmdk') {
    for (const e of Array.isArray(data?.extents) ? data.extents : []) {
      if (typeof e?.filename !== 'string') throw refuse(what, 'a VMDK extent has no file name');
      extents.push({
        file: e.filename,
        format: typeof e.format === 'string' ? e.format : '',
        virtualBytes: typeof e['virtual-size'] === 'number' ? e['virtual-size'] : 0,
      });
    }
  }
  return { format, sourceFormat, virtualBytes: size, extents };
}

/**
 * Where the extents of a VMDK may live: the file itself, or (for a multi-file VMDK imported
 * from a path) its own directory. `extents` are resolved real paths; `allowedDir` is null for
 * uploads, which are a single file. Returns the problem, or null.
 */
export function extentProblem(extents: string[], source: string, allowedDir: string | null): string | null {
  for (const file of extents) {
    if (file === source) continue;
    if (allowedDir !== null && file.startsWith(path.join(allowedDir, path.sep))) continue;
    return allowedDir === null
      ? `VMDK extent file ${clip(file)} is outside the upload; upload a single-file (monolithic) VMDK`
      : `VMDK extent file ${clip(file)} outside the library and the VMDK's own directory ${clip(allowedDir)}`;
  }
  return null;
}

/**
 * The extent files a text VMDK descriptor names (`RW 8 FLAT "file" 0`), read from the start of
 * a file; none for anything else.
 */
export function descriptorExtents(header: Buffer): string[] {
  const text = header.toString('latin1');
  if (!text.startsWith('# Disk DescriptorFile')) return [];
  return [...text.matchAll(/^\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]*)"/gm)].map((m) => m[1]);
}

/** ISO 9660: "CD001" at byte 32769; returns the volume's size in bytes, or null if not an ISO. */
export function isoVolumeBytes(header: Buffer): number | null {
  if (header.length < 32768 + 2048) return null;
  const pvd = header.subarray(32768, 32768 + 2048);
  if (pvd.toString('latin1', 1, 6) !== 'CD001') return null;
  const blocks = pvd.readUInt32LE(80);
  const blockSize = pvd.readUInt16LE(128);
  return blocks * (blockSize || 2048);
}

/** The last percentage in a chunk of `qemu-img convert -p` output ("    (42.00/100%)\r"). */
export function convertProgress(text: string): number | null {
  let last: number | null = null;
  for (const m of text.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)) last = Number(m[1]);
  return last;
}

/**
 * End of the data one line of `qemu-img map --output=json` places in the file (offset +
 * length), or 0. Data placed past the end of the file means the file was cut short: qemu
 * would read zeros there and the import would silently lose data.
 */
export function mapLineEnd(line: string): number {
  const s = line
    .trim()
    .replace(/^\[/, '')
    .replace(/[,\]]+$/, '');
  if (!s.startsWith('{')) return 0;
  try {
    const e = JSON.parse(s) as { offset?: unknown; length?: unknown; data?: unknown };
    if (e.data !== true || typeof e.offset !== 'number' || typeof e.length !== 'number') return 0;
    return e.offset + e.length;
  } catch {
    return 0;
  }
}

/** What `qemu-img check` found (its exit code, JSON report and stderr); null when fine. */
export function checkProblem(code: number, report: string, stderr: string): string | null {
  // 0: consistent; 3: only leaked clusters (wasted space, no harm); 63: format has no check.
  if (code === 0 || code === 3 || code === 63) return null;
  let counts = '';
  try {
    const r = JSON.parse(report) as { corruptions?: unknown; 'check-errors'?: unknown };
    const n = (typeof r.corruptions === 'number' ? r.corruptions : 0) + Number(r['check-errors'] ?? 0);
    if (n > 0) counts = ` (${n} error${n === 1 ? '' : 's'})`;
  } catch {
    // No report: the check could not run to the end; stderr says why.
  }
  const detail = qemuMessage(stderr);
  return `it is corrupt or truncated${counts}${detail ? `: ${detail}` : ''}`;
}

/** The useful line of qemu-img's stderr: the first error, without the program's prefixes. */
export function qemuMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) =>
      l
        .replace(/^qemu-img: /, '')
        .replace(/Could not open '[^']*': /g, '')
        .trim(),
    )
    .filter((l) => l !== '' && !/^Check failed/.test(l) && !/^Data may be corrupted/.test(l));
  const first = lines.find((l) => /^ERROR/.test(l)) ?? lines[0] ?? '';
  return clip(first.replace(/^ERROR:?\s*/, ''));
}

/** Why qemu-img could not open or read an offered file, in the user's terms. */
export function openProblem(stderr: string, requested: ImageSourceFormat): string {
  const detail = qemuMessage(stderr);
  if (/truncated/i.test(stderr)) return `it is truncated: ${detail}`;
  if (/lock/i.test(stderr)) return 'it is in use by another process (a running VM?); stop that first';
  if (/not in \S+ format|Invalid|wrong magic|Unsupported|not supported/i.test(stderr))
    return `not a valid ${requested === 'auto' ? 'disk' : requested} image: ${detail}`;
  return `it cannot be read as a disk image: ${detail}`;
}
