/**
 * How backups are named in a datastore (pure). A VM's backups are the group named by its id;
 * a backup's id is its UTC time to the second, so names sort by time and a VM has at most one
 * per second; its disks are `disk<index of the VM spec>`; its dirty bitmaps carry a prefix
 * per datastore, so backups of one VM into two datastores never share a bitmap.
 */
import type { BackupDiskSource } from '../../wire/backup.ts';
import type { VmSpec } from '../../wire/vm.ts';

/** `2026-12-07T14-39-23Z`: the time of `at`, to the second, safe as a file name. */
export function backupIdAt(at: Date): string {
  return `${at.toISOString().slice(0, 19).replaceAll(':', '-')}Z`;
}

/** The time a backup id stands for. */
export function timeOfBackupId(id: string): Date | null {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})Z$/.exec(id);
  if (!m) return null;
  const t = new Date(`${m[1]}T${m[2]}:${m[3]}:${m[4]}Z`);
  return Number.isNaN(t.getTime()) ? null : t;
}

/** The id for a backup taken at `at`: one second past `latest` when that is as late (ids only grow). */
export function nextBackupId(at: Date, latest: string | null): string {
  const last = latest ? timeOfBackupId(latest) : null;
  if (last && last.getTime() >= at.getTime() - (at.getTime() % 1000))
    return backupIdAt(new Date(last.getTime() + 1000));
  return backupIdAt(at);
}

/** The prefix of a VM's dirty bitmaps for one datastore: `tern-bk-<first 8 hex of its id>`. */
export function bitmapPrefix(datastoreId: string): string {
  return `tern-bk-${datastoreId.replaceAll('-', '').slice(0, 8).toLowerCase()}`;
}

/** The disks a backup holds: every writable disk, named by its index in the spec. */
export function backupDisks(spec: Pick<VmSpec, 'disks'>): BackupDiskSource[] {
  return spec.disks.flatMap((d, i) =>
    d.readonly ? [] : [{ name: `disk${i}`, volume: d.volume, format: d.format }],
  );
}

/** The spec index of a backup disk named `disk<i>`, or null. */
export function diskIndexOf(name: string): number | null {
  const m = /^disk(\d{1,2})$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** The lock of one backup: a restore and a prune of it never run together. */
export const backupObject = (b: { datastoreId: string; vmId: string; backupId: string }) =>
  `backup:${b.datastoreId}/${b.vmId}/${b.backupId}`;
