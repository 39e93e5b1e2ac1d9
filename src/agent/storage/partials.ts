/**
 * Half-written volumes. A copy, import or seed writes `<file>.partial` and renames it into
 * place only when complete, so a volume either exists whole or not at all. What can outlive
 * its writer is the partial file, and the qemu-img writing it: a child of an agent that was
 * killed keeps running on its own. Removing a volume, or starting to write it again, ends both.
 */
import fs from 'node:fs';

export const partialOf = (file: string): string => `${file}.partial`;

/** Pids of the qemu-img processes that have `target` among their arguments. */
export function qemuImgWriting(target: string): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // it ended while we looked
    }
    if (/(^|\/)qemu-img$/.test(argv[0]) && argv.includes(target)) pids.push(Number(entry));
  }
  return pids;
}

/** Kills whatever qemu-img still writes `file`'s partial copy and removes that copy. */
export function discardPartial(file: string): void {
  const partial = partialOf(file);
  // qemu-img makes its output file first: no partial file, no writer to look for.
  if (!fs.existsSync(partial)) return;
  for (const pid of qemuImgWriting(partial)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  fs.rmSync(partial, { force: true });
}
