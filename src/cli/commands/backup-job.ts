/** `tern backup job …` and `tern backup prove`: backups on a calendar schedule, and proving a backup by booting it. */
import { TernError } from '../../errors.ts';
import {
  type BackupJob,
  type BackupProof,
  backupJobRoutes,
  type Retention,
} from '../../wire/api/backup-jobs.ts';
import { backupRoutes } from '../../wire/api/backups.ts';
import { eachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, printFields, printJson, printTable, printText } from '../output.ts';
import { followTask } from '../progress.ts';
import type { Command, CommandContext, FlagUse } from '../registry.ts';

const usage = `usage: tern backup job list | show NAME | run NAME | delete NAME... | enable|disable NAME
       tern backup job set NAME [--schedule S] [--vm VM]... [--group G]... [--project P]... [--keep-… N]... [--prove|--no-prove]
       tern backup job create NAME --datastore DS --schedule "daily 02:00" [--vm VM]... [--group G]... [--project P]...
            [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N]
            [--per-host N] [--per-datastore N] [--bandwidth MIB/S] [--prove] [--disable]
       tern backup prove VM/BACKUP [--datastore DS] [--host H] [--pool P] [--timeout S]`;

const keepRules = [
  'keep-last',
  'keep-hourly',
  'keep-daily',
  'keep-weekly',
  'keep-monthly',
  'keep-yearly',
] as const;

function retentionFlags(flags: Flags): Retention {
  const r: Retention = {};
  for (const rule of keepRules) if (flags[rule] !== undefined) r[rule] = Number(flags[rule]);
  return r;
}

const retentionText = (r: Retention) =>
  keepRules
    .filter((k) => r[k])
    .map((k) => `${k.slice(5)} ${r[k]}`)
    .join(', ') || 'keep all';

const selectionText = (j: BackupJob) =>
  [
    ...j.vms.map((v) => `vm ${v}`),
    ...j.groups.map((g) => `group ${g}`),
    ...j.projects.map((p) => `project ${p}`),
  ].join(', ');

function showJob(j: BackupJob, flags: Flags): void {
  if (flags.output === 'json') {
    printJson(j);
    return;
  }
  printFields([
    ['name', j.name],
    ['datastore', j.datastore],
    ['selects', selectionText(j)],
    ['schedule', j.schedule],
    ['enabled', j.enabled ? 'yes' : 'no'],
    ['next runs', (j.nextRuns ?? (j.nextRunAt ? [j.nextRunAt] : [])).join(', ') || '-'],
    ['retention', retentionText(j.retention)],
    ['at once', `${j.concurrencyPerHost} per host, ${j.concurrencyPerDatastore} on the datastore`],
    ['bandwidth', j.bandwidth === 0 ? 'no limit' : `${Math.round(j.bandwidth / 2 ** 20)} MiB/s per VM`],
    ['proves backups', j.prove ? 'yes: each one booted as a throwaway VM' : 'no'],
    ['last run', j.lastRunAt ? `${j.lastRunAt} (${ago(j.lastRunAt)})` : 'never'],
    ['last result', j.lastResult ? `${j.lastResult.state}: ${j.lastResult.message}` : '-'],
    ['last task', j.lastTask ?? '-'],
  ]);
}

async function jobCommand(ctx: CommandContext): Promise<void> {
  const api: ApiClient = ctx.api();
  const { flags, args } = ctx;
  const sub = ctx.path[2];
  const [name] = args;
  if (sub === 'list') {
    const items = byName((await api.call(backupJobRoutes.list)).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'DATASTORE', 'SCHEDULE', 'NEXT RUN', 'LAST RESULT', 'SELECTS'],
      items.map((j) => [
        j.name,
        j.datastore,
        j.enabled ? j.schedule : `${j.schedule} (disabled)`,
        j.nextRunAt ?? '-',
        j.lastResult ? `${j.lastResult.state} ${ago(j.lastRunAt)}` : '-',
        selectionText(j),
      ]),
    );
  }
  if (sub === 'show' && args.length === 1)
    return showJob(await api.call(backupJobRoutes.show, { params: { job: name } }), flags);
  if (sub === 'create' && args.length === 1) {
    if (!flags.datastore || !flags.schedule) throw new TernError('invalid_request', usage);
    const bandwidth = flags.bandwidth === undefined ? undefined : Number(flags.bandwidth) * 2 ** 20;
    return showJob(
      await api.call(backupJobRoutes.create, {
        body: {
          name,
          datastore: flags.datastore,
          schedule: flags.schedule,
          vms: flags.vm,
          groups: flags.group,
          projects: flags.projects,
          retention: retentionFlags(flags),
          ...(flags['per-host'] ? { concurrencyPerHost: Number(flags['per-host']) } : {}),
          ...(flags['per-datastore'] ? { concurrencyPerDatastore: Number(flags['per-datastore']) } : {}),
          ...(bandwidth !== undefined ? { bandwidth } : {}),
          ...(flags.disable ? { enabled: false } : {}),
          ...(flags.prove ? { prove: true } : {}),
        },
      }),
      flags,
    );
  }
  if (sub === 'set' && args.length === 1) {
    const retention = retentionFlags(flags);
    const body = {
      ...(flags.schedule ? { schedule: flags.schedule } : {}),
      ...(flags.vm.length > 0 ? { vms: flags.vm } : {}),
      ...(flags.group.length > 0 ? { groups: flags.group } : {}),
      ...(flags.projects.length > 0 ? { projects: flags.projects } : {}),
      ...(Object.keys(retention).length > 0 ? { retention } : {}),
      ...(flags.prove ? { prove: true } : flags['no-prove'] ? { prove: false } : {}),
    };
    if (Object.keys(body).length === 0) throw new TernError('invalid_request', usage);
    return showJob(await api.call(backupJobRoutes.update, { params: { job: name }, body }), flags);
  }
  if ((sub === 'enable' || sub === 'disable') && args.length === 1)
    return showJob(
      await api.call(backupJobRoutes.update, { params: { job: name }, body: { enabled: sub === 'enable' } }),
      flags,
    );
  if (sub === 'run' && args.length === 1) {
    const { task } = await api.call(backupJobRoutes.run, { params: { job: name } });
    return followTask(api, flags, task);
  }
  if (sub === 'delete' && args.length > 0)
    return eachName(args, 'usage: tern backup job delete NAME...', async (job) => {
      await api.call(backupJobRoutes.remove, { params: { job } });
      if (flags.output !== 'json') printText(`backup job ${job} deleted\n`);
    });
  throw new TernError('invalid_request', usage);
}

async function proveCommand(ctx: CommandContext): Promise<void> {
  const api = ctx.api();
  const { flags, args } = ctx;
  const m = args.length === 1 ? /^([^/]+)\/([^/]+)$/.exec(args[0]) : null;
  if (!m) throw new TernError('invalid_request', usage);
  const { task } = await api.call(backupJobRoutes.prove, {
    params: { vm: m[1], backup: m[2] },
    query: flags.datastore ? { datastore: flags.datastore } : {},
    body: {
      ...(flags.host ? { host: flags.host } : {}),
      ...(flags.pool ? { pool: flags.pool } : {}),
      ...(flags.timeout ? { timeoutS: Number(flags.timeout) } : {}),
    },
  });
  await followTask(api, flags, task);
  if (flags.output === 'json' || flags['no-wait']) return;
  const b = await api.call(backupRoutes.show, {
    params: { vm: m[1], backup: m[2] },
    query: flags.datastore ? { datastore: flags.datastore } : {},
  });
  const proof = b.proven?.detail as BackupProof | undefined;
  if (proof)
    printText(
      `${b.vmName}/${b.id} proven: its guest agent answered ${proof.secondsToGuest} s after the start ` +
        `(${proof.secondsTotal} s with the restore) on host ${proof.host}\n`,
    );
}

const keepFlags: FlagUse[] = keepRules.map((k) => k);
const projectFlag: FlagUse = [
  'project',
  {
    type: 'string',
    value: 'P',
    multiple: true,
    key: 'projects',
    help: 'a project whose VMs it backs up (repeatable)',
  },
];

export const backupJobCommands: Command[] = [
  { path: 'backup job list', summary: 'backup jobs, their schedules and last results', run: jobCommand },
  { path: 'backup job show', args: 'NAME', summary: 'one backup job and its next runs', run: jobCommand },
  {
    path: 'backup job create',
    args: 'NAME',
    summary: 'back up VMs, placement groups or projects on a calendar schedule',
    details:
      'Schedules: "daily 02:00", "mon..fri 22:30", "every 15m", "hourly", "*-*-01 03:00" (manager time zone).\n' +
      'Retention as Proxmox: the newest backup of each of the last N hours/days/ISO weeks/months/years\n' +
      'that have one, after keep-last; no rule keeps everything.',
    flags: [
      'datastore',
      'schedule',
      ['vm', 'a VM it backs up (repeatable)'],
      ['group', 'a placement group whose VMs it backs up (repeatable)'],
      projectFlag,
      ...keepFlags,
      'per-host',
      'per-datastore',
      ['bandwidth', 'bytes each VM reads per second, in MiB/s'],
      ['disable', 'make it disabled: it runs only when asked'],
      [
        'prove',
        { type: 'boolean', help: 'prove each backup by booting it (tern backup prove) before it counts' },
      ],
    ],
    run: jobCommand,
  },
  {
    path: 'backup job set',
    args: 'NAME',
    summary: "change a job's schedule, selection (a list given replaces its own), retention or proving",
    flags: [
      'schedule',
      ['vm', 'a VM it backs up (repeatable; replaces its VMs)'],
      ['group', 'a placement group (repeatable; replaces its groups)'],
      projectFlag,
      ...keepFlags,
      ['prove', { type: 'boolean', help: 'prove each backup by booting it' }],
      ['no-prove', { type: 'boolean', help: 'stop proving its backups' }],
    ],
    run: jobCommand,
  },
  {
    path: 'backup job run',
    args: 'NAME',
    summary: 'run a backup job now',
    flags: ['no-wait'],
    run: jobCommand,
  },
  { path: 'backup job enable', args: 'NAME', summary: 'run it on its schedule again', run: jobCommand },
  { path: 'backup job disable', args: 'NAME', summary: 'stop running it on its schedule', run: jobCommand },
  {
    path: 'backup job delete',
    args: 'NAME...',
    summary: 'delete backup jobs (their backups stay)',
    run: jobCommand,
  },
  {
    path: 'backup prove',
    args: 'VM/BACKUP',
    summary: 'restore a backup as a throwaway VM without a NIC, boot it, wait for its guest agent, delete it',
    flags: [
      'datastore',
      ['host', 'the host it boots on'],
      'pool',
      ['timeout', 'how long to wait for the guest agent'],
      'no-wait',
    ],
    run: proveCommand,
  },
];
