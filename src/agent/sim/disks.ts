/** Disk usage of a simulated host's pools: what the files under each pool's directory take. */
import fs from 'node:fs';
import path from 'node:path';

const poolUsageTtlMs = 5000;

/** Bytes used per pool directory, counted again at most every 5 s (a walk of a large pool is slow). */
export class PoolUsage {
  readonly #usage = new Map<string, { at: number; used: number }>();

  used(dir: string): number {
    const hit = this.#usage.get(dir);
    if (hit && Date.now() - hit.at < poolUsageTtlMs) return hit.used;
    const used = directoryUsage(dir);
    this.#usage.set(dir, { at: Date.now(), used });
    return used;
  }
}

/** Bytes the files under `dir` take on disk. */
function directoryUsage(dir: string): number {
  let used = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!e.isFile()) continue;
    try {
      used += fs.statSync(path.join(e.parentPath, e.name)).blocks * 512;
    } catch {
      // Removed while we counted.
    }
  }
  return used;
}
