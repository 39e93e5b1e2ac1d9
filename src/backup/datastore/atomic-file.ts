/**
 * A file that appears whole or not at all: written under a temporary name beside its final one,
 * flushed to disk, renamed over the final name, and the directory flushed so the rename itself
 * survives a power loss. A crash leaves at most a `.tmp-` file, never a short final file; the
 * datastore's garbage collection removes stale temporaries.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/** Temporary names carry this infix, so a sweep can tell them from finished files. */
export const TEMP_INFIX = '.tmp-';

export function isTempName(name: string): boolean {
  return name.includes(TEMP_INFIX);
}

/**
 * Writes `data` to `file` atomically. Two writers of the same name never see each other's
 * half-written bytes: each has its own temporary, and rename(2) replaces the final name in one step.
 */
export async function writeFileAtomic(
  file: string,
  data: Uint8Array,
  options: { syncDirectory?: boolean } = {},
): Promise<void> {
  const dir = path.dirname(file);
  const temp = `${file}${TEMP_INFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
  const handle = await fs.open(temp, 'wx', 0o640);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await fs.rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(temp, file);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  // A caller writing many files to few directories may flush each directory once, later.
  if (options.syncDirectory !== false) await syncDirectory(dir);
}

/** Flushes a directory's entries (a rename or a new file in it) to disk. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
