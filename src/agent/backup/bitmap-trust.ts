/**
 * Whether a disk's dirty bitmaps tell every write since the previous backup (pure). A VM's
 * bitmaps for one datastore are `<prefix>-<backup id>`: the one named after the previous
 * backup started at its view and was stopped at the next backup's start; any later ones (a
 * backup that failed after its rotation) carry on from there. Together they cover every write
 * since the previous backup, if the previous one is there and none was left inconsistent (QEMU
 * ended without storing it). `<prefix>-view` is a backup's temporary, never trusted.
 */

export interface BitmapFacts {
  name: string;
  persistent: boolean;
  /** QEMU found it marked in use at open: it ended without storing it. */
  inconsistent: boolean;
}

export const viewBitmap = (prefix: string): string => `${prefix}-view`;

/** The bitmaps of `prefix` on a disk, without the view's temporary. */
export function ownBitmaps<B extends { name: string }>(bitmaps: readonly B[], prefix: string): B[] {
  return bitmaps.filter((b) => b.name.startsWith(`${prefix}-`) && b.name !== viewBitmap(prefix));
}

/** Why the bitmaps cannot be trusted since backup `previous`; null when they can (or there is none). */
export function bitmapDistrust(
  bitmaps: readonly BitmapFacts[],
  prefix: string,
  previous: string | null,
): string | null {
  if (previous === null) return null;
  const name = `${prefix}-${previous}`;
  const own = ownBitmaps(bitmaps, prefix);
  const base = own.find((b) => b.name === name);
  // QEMU writes a bitmap made while it runs into the image only when it ends cleanly.
  if (!base)
    return `the disk has no dirty bitmap ${name}: QEMU ended without storing it (a crash or a kill), or a snapshot revert or a replaced disk removed it`;
  const broken = own.find((b) => b.inconsistent);
  if (broken)
    return `the dirty bitmap ${broken.name} is inconsistent: QEMU ended without storing it (a crash or a kill)`;
  const fleeting = own.find((b) => !b.persistent);
  if (fleeting) return `the dirty bitmap ${fleeting.name} is not persistent: it did not outlive a restart`;
  return null;
}
