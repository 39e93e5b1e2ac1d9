/**
 * `tern vm replicate VM --to HOST …` and `tern replication list|show|pause|resume|remove|points|cycle`:
 * VMs replicated to another host, their recovery points and RPO (docs/replication.md).
 */
import { TernError } from '../../errors.ts';
import { durationText, type Replication, replicationRoutes as routes } from '../../wire/api/replication.ts';
import { siteRoutes } from '../../wire/api/sites.ts';
import { eachName } from '../bulk.ts';
import type { FlagSpec, Flags } from '../flags.ts';
import { ago, bytes, printFields, printJson, printTable, printText } from '../output.ts';
import { followTask } from '../progress.ts';
import type { Command, CommandContext } from '../registry.ts';
import { parseSize } from '../sizes.ts';

const replicateUsage =
  'usage: tern vm replicate VM --to HOST|SITE [--pool P] --every 30s|5m|15m [--points N] [--app-consistent-every 4h] [--bandwidth 50M]';

const lag = (r: Replication) => (r.rpo.lagSeconds === null ? '-' : durationText(r.rpo.lagSeconds));
const rate = (n: number) => (n === 0 ? 'no limit' : `${bytes(n)}/s`);

function show(r: Replication, flags: Flags): void {
  if (flags.output === 'json') {
    printJson(r);
    return;
  }
  printFields([
    ['vm', r.vm],
    ['replica', `${r.replica} on ${r.host}, pool ${r.pool}`],
    ['state', r.state],
    ['rpo', `${r.rpo.state}: ${r.rpo.why}`],
    ['lag', lag(r)],
    ['every', durationText(r.intervalSeconds)],
    ['next cycle', r.rpo.nextCycleAt ?? '-'],
    ['points', `${r.pointCount} held (the newest and up to ${r.points} older)`],
    ['newest point', r.newestPoint ?? '-'],
    [
      'app-consistent',
      r.appConsistentEverySeconds ? `every ${durationText(r.appConsistentEverySeconds)}` : 'never',
    ],
    ['bandwidth', rate(r.bandwidth)],
    ['resync', r.resyncReason ?? '-'],
    ['last cycle', r.lastCycleAt ? `${r.lastCycleAt} (${ago(r.lastCycleAt)})` : 'never'],
    ['last error', r.lastError ?? '-'],
    ['last task', r.lastTask ?? '-'],
  ]);
}

function one(args: string[], usage: string): string {
  if (args.length !== 1) throw new TernError('invalid_request', `usage: ${usage}`);
  return args[0] as string;
}

async function replicate({ api, args, flags }: CommandContext): Promise<void> {
  const vm = one(args, replicateUsage.slice(7));
  if (!flags.to || !flags.every) throw new TernError('invalid_request', replicateUsage);
  const bandwidth =
    flags.bandwidth === undefined
      ? undefined
      : Math.round(parseSize(flags.bandwidth, 'M', 'the bandwidth') * 2 ** 20);
  const client = api();
  // A trusted site by that name keeps the replica there; otherwise it is a host of this cluster.
  const sites = (await client.call(siteRoutes.list)).items.map((x) => x.name);
  const r = await client.call(routes.create, {
    body: {
      vm,
      ...(sites.includes(flags.to) ? { site: flags.to } : { host: flags.to }),
      every: flags.every,
      ...(flags.pool ? { pool: flags.pool } : {}),
      ...(flags.points !== undefined ? { points: Number(flags.points) } : {}),
      ...(flags['app-consistent-every'] ? { appConsistentEvery: flags['app-consistent-every'] } : {}),
      ...(bandwidth !== undefined ? { bandwidth } : {}),
    },
  });
  if (flags.output !== 'json')
    printText(
      `VM ${r.vm} replicates to ${r.site ? `site ${r.site.name} (host ${r.host})` : r.host} every ${durationText(r.intervalSeconds)}; its replica is ${r.replica}\n`,
    );
  show(r, flags);
}

async function replication(ctx: CommandContext): Promise<void> {
  const { flags, args } = ctx;
  const api = ctx.api();
  const sub = ctx.path[1];
  if (sub === 'list') {
    const items = (await api.call(routes.list)).items;
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['VM', 'REPLICA', 'HOST', 'EVERY', 'STATE', 'RPO', 'LAG', 'POINTS', 'LAST CYCLE'],
      items.map((r) => [
        r.vm,
        r.replica,
        r.host,
        durationText(r.intervalSeconds),
        r.state,
        r.rpo.state,
        lag(r),
        r.pointCount,
        r.lastCycleAt ? ago(r.lastCycleAt) : 'never',
      ]),
    );
  }
  if (sub === 'show')
    return show(
      await api.call(routes.show, { params: { replication: one(args, 'tern replication show VM') } }),
      flags,
    );
  if (sub === 'pause' || sub === 'resume')
    return show(
      await api.call(routes[sub], { params: { replication: one(args, `tern replication ${sub} VM`) } }),
      flags,
    );
  if (sub === 'points') {
    const items = (
      await api.call(routes.points, { params: { replication: one(args, 'tern replication points VM') } })
    ).items;
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['POINT', 'TAKEN', 'CONSISTENCY', 'CHANGED', 'SENT', 'KEPT'],
      items.map((p) => [
        p.id,
        p.takenAt,
        p.consistency,
        bytes(p.dirtyBytes),
        bytes(p.sentBytes),
        p.kept ?? 'goes at the next prune',
      ]),
    );
  }
  if (sub === 'cycle') {
    const { task } = await api.call(routes.cycle, {
      params: { replication: one(args, 'tern replication cycle VM') },
    });
    return followTask(api, flags, task);
  }
  if (sub === 'remove' && args.length > 0)
    return eachName(args, 'usage: tern replication remove VM...', async (replication) => {
      await api.call(routes.remove, { params: { replication }, query: flags.force ? { force: true } : {} });
      if (flags.output !== 'json') printText(`replication of ${replication} removed, with its replica\n`);
    });
  throw new TernError('invalid_request', `usage: tern replication ${sub ?? 'list'} VM`);
}

const flag = (type: FlagSpec['type'], value: string, help: string): FlagSpec => ({ type, value, help });

export const replicationCommands: Command[] = [
  {
    path: 'vm replicate',
    args: 'VM',
    summary:
      'replicate a VM to another host or site: a stopped replica there, a recovery point every interval',
    details:
      'Each cycle sends only the blocks changed since the last point (the first one, or a resync, sends\n' +
      'the disks whole), compressed and checksummed, straight from host to host (to a site, through its\n' +
      'manager, which chooses the host). The replica (VM-replica) is a stopped VM there that only a\n' +
      'failover starts. --every takes 30s, 5m or\n' +
      '15m (any whole duration from 30s to 24h); an alert is raised when the replica trails by more than\n' +
      'twice that. --points keeps up to 24 older points, one per application-consistent period (hourly\n' +
      'without one); --app-consistent-every freezes the guest filesystems for a point that often.',
    flags: [
      [
        'to',
        flag('string', 'HOST|SITE', 'the host, or the trusted site (tern site), that keeps the replica'),
      ],
      [
        'pool',
        flag('string', 'P', "the target host's storage pool (default: the pool of the VM's first disk)"),
      ],
      ['every', flag('string', '30s|5m|15m', 'the interval between cycles: the promised RPO')],
      ['points', flag('integer', 'N', 'older recovery points kept besides the newest, 0 to 24 (default 0)')],
      [
        'app-consistent-every',
        flag('string', 'DURATION', 'an application-consistent point this often, e.g. 4h'),
      ],
      ['bandwidth', flag('string', 'RATE', 'bytes per second sent, e.g. 50M (default: no limit)')],
    ],
    run: replicate,
  },
  { path: 'replication list', summary: 'replicated VMs, their RPO and lag', run: replication },
  {
    path: 'replication show',
    args: 'VM',
    summary: 'one replication: its replica, RPO, points, last cycle',
    run: replication,
  },
  {
    path: 'replication pause',
    args: 'VM',
    summary: 'stop starting cycles (no RPO alert while paused)',
    run: replication,
  },
  { path: 'replication resume', args: 'VM', summary: 'start cycles again', run: replication },
  {
    path: 'replication remove',
    args: 'VM...',
    summary: 'stop replicating: remove the replica VM and its files on the target host',
    details:
      'Refused while a VM (a test failover) stands on one of its points. --force forgets a replica whose host is offline, leaving its files there.',
    flags: ['force'],
    run: replication,
  },
  {
    path: 'replication points',
    args: 'VM',
    summary: 'the recovery points of a replica, oldest first',
    run: replication,
  },
  {
    path: 'replication cycle',
    args: 'VM',
    summary: 'run one cycle now: a new recovery point',
    flags: ['no-wait'],
    run: replication,
  },
];
