/**
 * What `debugfs` (e2fsprogs) prints, read back (pure): directory listings of `ls -p`
 * (`/inode/mode/uid/gid/name/size/` per entry), the target of a symbolic link from `stat`,
 * and its errors, which it prints on stderr while exiting 0. A backup's filesystem is
 * untrusted: names and counts are bounded, anything unparseable is left out, never guessed.
 */
import { TernError } from '../../errors.ts';

export type FileType = 'file' | 'directory' | 'symlink' | 'other';

export interface FileEntry {
  name: string;
  type: FileType;
  /** Permission bits, octal as `ls` shows them (e.g. `0644`). */
  mode: string;
  uid: number;
  gid: number;
  /** Bytes, for files; 0 otherwise. */
  size: number;
}

export const MAX_ENTRIES = 10_000;
const MAX_NAME = 255;

function typeOf(mode: number): FileType {
  switch (mode & 0o170000) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'directory';
    case 0o120000:
      return 'symlink';
    default:
      return 'other';
  }
}

/** The entries of one `ls -p` listing, without `.` and `..`, at most MAX_ENTRIES. */
export function parseListing(text: string): { entries: FileEntry[]; truncated: boolean } {
  const entries: FileEntry[] = [];
  let truncated = false;
  for (const line of text.split('\n')) {
    const m = /^\/(\d+)\/([0-7]{1,7})\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line);
    if (!m) continue;
    const name = m[5]!;
    if (name === '.' || name === '..' || name.length === 0 || name.length > MAX_NAME) continue;
    if (entries.length >= MAX_ENTRIES) {
      truncated = true;
      break;
    }
    const mode = Number.parseInt(m[2]!, 8);
    const type = typeOf(mode);
    entries.push({
      name,
      type,
      mode: (mode & 0o7777).toString(8).padStart(4, '0'),
      uid: Number(m[3]),
      gid: Number(m[4]),
      size: type === 'file' ? Number(m[6] || 0) : 0,
    });
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { entries, truncated };
}

/** The target a `stat` of a symbolic link names, or null when it is not a (short) link. */
export function parseLinkTarget(statText: string): string | null {
  const m = /^Fast link dest: "(.*)"$/m.exec(statText);
  return m && m[1]!.length <= 4096 ? m[1]! : null;
}

/** The type `stat` says an inode has, or null when it printed none (not found). */
export function parseStatType(statText: string): FileType | null {
  const m = /^Inode: \d+\s+Type: (\w+)/m.exec(statText);
  if (!m) return null;
  return m[1] === 'regular'
    ? 'file'
    : m[1] === 'directory'
      ? 'directory'
      : m[1] === 'symlink'
        ? 'symlink'
        : 'other';
}

/** debugfs's complaint on stderr (its banner aside), as an error; null when it had none. */
export function debugfsError(stderr: string, path: string): TernError | null {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^debugfs \d/.test(l));
  if (lines.length === 0) return null;
  const text = lines.join('; ').slice(0, 300);
  if (/not found|File not found/i.test(text))
    return new TernError('not_found', `${path} is not in the backup`);
  if (/Bad magic number|superblock|Filesystem not open|Attempt to read block/i.test(text))
    return new TernError('invalid_request', `no ext2/3/4 filesystem there: ${text}`);
  return new TernError('storage_error', `reading ${path} failed: ${text}`);
}

/**
 * A path inside the guest's filesystem as debugfs takes it: absolute, normalised, without
 * characters its command parser would split on.
 */
export function guestPath(p: string): string {
  if (typeof p !== 'string' || !p.startsWith('/') || p.length > 4096 || /["\n\r\0\\]/.test(p))
    throw new TernError(
      'invalid_request',
      `${JSON.stringify(p).slice(0, 100)} is not an absolute path Tern can read`,
    );
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return `/${parts.join('/')}`;
}
