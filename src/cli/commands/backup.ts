/**
 * `tern backup …`: datastores, backing VMs up, the backups of each VM with their figures,
 * restoring, verifying, pruning and collecting garbage (docs/backup.md).
 */
import { TernError } from '../../errors.ts';
import { type Backup, backupRoutes, type Datastore } from '../../wire/api/backups.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printList, printObject } from '../output.ts';
import { followTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';

const usage = `usage: tern backup datastore create NAME --path DIR [--host H] [--encrypt] | datastore list | datastore show NAME | datastore delete NAME
       tern backup run VM --datastore DS [--bandwidth MIB/S]
       tern backup list [VM] [--datastore DS] | show VM/ID [--datastore DS]
       tern backup restore VM/ID [--name NEW] [--host H] [--pool P] [--start | --live] [--disk D] | restore VM/ID --in-place --yes
       tern backup verify DS [VM] [--older-than-days N] | prune VM/ID... | gc DS`;

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function size(n: number): string {
  let v = n;
  let u = 0;
  for (; v >= 1024 && u < units.length - 1; u++) v /= 1024;
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** `VM/ID` → the VM (name or id) and the backup id. */
export function backupRef(ref: string | undefined): { vm: string; backup: string } {
  const slash = ref?.lastIndexOf('/') ?? -1;
  if (!ref || slash <= 0 || slash === ref.length - 1)
    throw new TernError(
      'invalid_request',
      `name a backup as VM/ID (e.g. web-1/2026-12-07T02-00-00Z)\n${usage}`,
    );
  return { vm: ref.slice(0, slash), backup: ref.slice(slash + 1) };
}

const mebibytes = (v: string | undefined) => (v === undefined ? undefined : Number(v) * 1024 * 1024);
const inDatastore = (flags: Flags) => (flags.datastore ? { datastore: flags.datastore } : {});

function showDatastore(d: Datastore, flags: Flags): void {
  printObject(flags.output, d, (x) => [
    ['name', x.name],
    ['id', x.id],
    ['path', x.path],
    ['host', x.host ?? 'shared (every host)'],
    ['encrypted', x.encrypted ? 'yes (key kept by the manager)' : 'no'],
    ['chunk size', size(x.chunkSize)],
    ['backups', x.backups],
    ['size', x.status ? size(x.status.totalBytes) : null],
    ['free', x.status ? size(x.status.freeBytes) : null],
    ['status', x.statusError ? `unreachable: ${x.statusError}` : x.status ? 'ok' : null],
    ['created', x.createdAt],
  ]);
}

function showBackup(b: Backup, flags: Flags): void {
  printObject(flags.output, b, (x) => [
    ['backup', `${x.vmName}/${x.id}`],
    ['VM id', x.vm],
    ['datastore', x.datastore],
    ['mode', x.mode],
    ['consistency', x.consistency + (x.consistencyNote ? ` (${x.consistencyNote})` : '')],
    ['size', size(x.sizeBytes)],
    ['changed', size(x.changedBytes)],
    ['read', size(x.readBytes)],
    ['new stored', size(x.newBytes)],
    ['dedup', x.dedupRatio === null ? 'nothing new stored' : `${x.dedupRatio}x`],
    ...x.disks.map((d): [string, string] => [
      d.name,
      `${size(d.sizeBytes)} ${d.mode}${d.fullReason ? ` (${d.fullReason})` : ''}, ${d.newChunks}/${d.chunks} chunks new`,
    ]),
    [
      'verified',
      x.verified
        ? `${x.verified.ok ? 'ok' : `FAILED: ${x.verified.problems.join('; ')}`} at ${x.verified.at}`
        : 'never',
    ],
    ['proven', x.proven ? `booted at ${x.proven.at}` : 'no'],
    ['job', x.job],
    ['started', x.startedAt],
    ['finished', x.createdAt],
  ]);
}

async function datastoreCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [sub, name, ...rest] = args;
  if ((sub === 'list' || sub === undefined) && !name) {
    const { items } = await api.call(backupRoutes.datastores);
    return printList(flags.output, items, ['NAME', 'PATH', 'HOST', 'ENCRYPTED', 'CHUNK', 'BACKUPS'], (d) => [
      d.name,
      d.path,
      d.host ?? 'shared',
      d.encrypted ? 'yes' : 'no',
      size(d.chunkSize),
      d.backups,
    ]);
  }
  if (sub === 'show' && name && rest.length === 0)
    return showDatastore(await api.call(backupRoutes.showDatastore, { params: { datastore: name } }), flags);
  if (sub === 'create' && name && rest.length === 0) {
    if (!flags.path) throw new TernError('invalid_request', `a datastore needs --path DIR\n${usage}`);
    const body = {
      name,
      path: flags.path,
      ...(flags.host ? { host: flags.host } : {}),
      ...(flags.encrypt ? { encrypt: true } : {}),
    };
    return showDatastore(await api.call(backupRoutes.createDatastore, { body }), flags);
  }
  if (sub === 'delete' && name && rest.length === 0) {
    await api.call(backupRoutes.deleteDatastore, { params: { datastore: name } });
    return;
  }
  throw new TernError('invalid_request', usage);
}

export async function backupCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'datastore') return datastoreCommand(api, args, flags);
  if (sub === 'run' && args.length === 1) {
    if (!flags.datastore)
      throw new TernError('invalid_request', `name the datastore: --datastore DS\n${usage}`);
    const bandwidth = mebibytes(flags.bandwidth);
    const body = { vm: args[0], datastore: flags.datastore, ...(bandwidth ? { bandwidth } : {}) };
    return followTask(api, flags, (await api.call(backupRoutes.run, { body })).task);
  }
  if ((sub === 'list' || sub === undefined) && args.length <= 1) {
    const query = { ...(args[0] ? { vm: args[0] } : {}), ...inDatastore(flags) };
    const { items } = await api.call(backupRoutes.list, { query });
    return printList(
      flags.output,
      items,
      ['BACKUP', 'DATASTORE', 'MODE', 'SIZE', 'CHANGED', 'NEW', 'DEDUP', 'VERIFIED', 'PROVEN'],
      (b) => [
        `${b.vmName}/${b.id}`,
        b.datastore,
        b.mode,
        size(b.sizeBytes),
        size(b.changedBytes),
        size(b.newBytes),
        b.dedupRatio === null ? '-' : `${b.dedupRatio}x`,
        b.verified ? (b.verified.ok ? 'ok' : 'FAILED') : '-',
        b.proven ? 'yes' : 'no',
      ],
    );
  }
  if (sub === 'show' && args.length === 1)
    return showBackup(
      await api.call(backupRoutes.show, { params: backupRef(args[0]), query: inDatastore(flags) }),
      flags,
    );
  if (sub === 'restore' && args.length === 1) {
    const inPlace = flags['in-place'];
    if (inPlace && !flags.yes)
      throw new TernError(
        'invalid_request',
        `an in-place restore overwrites the VM's disks with the backup: add --yes to go ahead`,
      );
    const body = {
      mode: inPlace ? ('in-place' as const) : ('new' as const),
      ...(inPlace ? { confirm: true } : {}),
      ...(flags.name ? { name: flags.name } : {}),
      ...(flags.host ? { host: flags.host } : {}),
      ...(flags.pool ? { pool: flags.pool } : {}),
      ...(flags.start ? { start: true } : {}),
      ...(flags.live ? { live: true } : {}),
      ...(flags.disk ? { disks: [flags.disk] } : {}),
    };
    const { task } = await api.call(backupRoutes.restore, {
      params: backupRef(args[0]),
      query: inDatastore(flags),
      body,
    });
    return followTask(api, flags, task);
  }
  if (sub === 'verify' && (args.length === 1 || args.length === 2)) {
    const body = {
      ...(args[1] ? { vm: args[1] } : {}),
      ...(flags['older-than-days'] !== undefined ? { olderThanDays: Number(flags['older-than-days']) } : {}),
    };
    const { task } = await api.call(backupRoutes.verify, { params: { datastore: args[0] }, body });
    return followTask(api, flags, task);
  }
  if (sub === 'prune' && args.length >= 1) {
    for (const ref of args) {
      const { task } = await api.call(backupRoutes.prune, {
        params: backupRef(ref),
        query: inDatastore(flags),
      });
      await followTask(api, flags, task);
    }
    return;
  }
  if (sub === 'gc' && args.length === 1)
    return followTask(api, flags, (await api.call(backupRoutes.gc, { params: { datastore: args[0] } })).task);
  throw new TernError('invalid_request', usage);
}

const backup = viaGroup(backupCommand);

export const backupCommands: Command[] = [
  {
    path: 'backup datastore create',
    args: 'NAME',
    summary: 'a datastore backups go to',
    details:
      'A datastore is a directory a host reaches (--host H), or a shared one every host mounts at the same path. With --encrypt its chunks are AES-256-GCM encrypted with a key the manager keeps as a secret: the directory alone reveals nothing.',
    flags: [['path', 'the directory'], ['host', 'the host that reaches it (default: shared)'], 'encrypt'],
    run: backup,
  },
  { path: 'backup datastore list', summary: 'datastores', run: backup },
  {
    path: 'backup datastore show',
    args: 'NAME',
    summary: 'a datastore, its size and free space',
    run: backup,
  },
  {
    path: 'backup datastore delete',
    args: 'NAME',
    summary: 'forget a datastore without backups (its files stay)',
    run: backup,
  },
  {
    path: 'backup run',
    args: 'VM',
    summary: 'back a VM up now (incremental when its dirty bitmap can be trusted)',
    flags: ['datastore', ['bandwidth', 'read at most this many MiB/s'], 'no-wait'],
    run: backup,
  },
  {
    path: 'backup list',
    args: '[VM]',
    summary: 'backups with size, changed and new bytes, dedup, verified, proven',
    groupDefault: true,
    flags: ['datastore'],
    run: backup,
  },
  { path: 'backup show', args: 'VM/ID', summary: 'one backup', flags: ['datastore'], run: backup },
  {
    path: 'backup restore',
    args: 'VM/ID',
    summary: 'a backup as a new VM on any host and pool, or in place',
    flags: [
      ['name', 'the new VM (default: NAME-restored)'],
      ['host', 'the host it goes to'],
      'pool',
      'start',
      'live',
      ['disk', 'only this disk of the backup (disk0, disk1…); in place, the others stay as they are'],
      'in-place',
      'yes',
      'datastore',
      'no-wait',
    ],
    run: backup,
  },
  {
    path: 'backup verify',
    args: 'DS [VM]',
    summary: "re-read backups' chunks and check their hashes",
    flags: ['older-than-days', 'no-wait'],
    run: backup,
  },
  {
    path: 'backup prune',
    args: 'VM/ID...',
    summary: 'forget backups',
    flags: ['datastore', 'no-wait'],
    run: backup,
  },
  {
    path: 'backup gc',
    args: 'DS',
    summary: 'remove chunks no backup names',
    flags: ['no-wait'],
    run: backup,
  },
];
