/** `tern cluster …` and `tern group …`: the cluster as a whole, capacity, placement groups. */
import { TernError } from '../../errors.ts';
import { clusterRoutes } from '../../wire/api/cluster.ts';
import { ClusterSettings } from '../../wire/cluster.ts';
import { eachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { decimal, type Flags, oneOf, wordsOf } from '../flags.ts';
import { byName } from '../names.ts';
import { mib, printFields, printJson, printTable, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';
import { parseSize } from '../sizes.ts';

/** `2cpu,4G,20G`: vCPUs, memory and disk of one VM, in any order. */
export function parseVmSize(text: string): { vcpus: number; memoryMiB: number; diskBytes: number } {
  const parts = text.split(',').map((p) => p.trim());
  const cpu = parts.find((p) => /^\d+\s*cpus?$/i.test(p));
  const rest = parts.filter((p) => p !== cpu);
  if (!cpu || rest.length < 1 || rest.length > 2) {
    throw new TernError(
      'invalid_request',
      `--size is vCPUs, memory[, disk], e.g. 2cpu,4G,20G; got "${text}"`,
    );
  }
  return {
    vcpus: Number.parseInt(cpu, 10),
    memoryMiB: Math.round(parseSize(rest[0], 'M', 'memory')),
    diskBytes: rest[1] ? Math.round(parseSize(rest[1], 'G', 'disk') * 1024 * 1024) : 0,
  };
}

const strategies = wordsOf(ClusterSettings.properties.strategy);

export async function clusterCommand(
  api: ApiClient,
  sub: string | undefined,
  _args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'show' || sub === undefined) {
    const c = await api.call(clusterRoutes.show);
    if (flags.output === 'json') return printJson(c);
    return printFields([
      [
        'hosts',
        `${c.hosts.online} online, ${c.hosts.maintenance} in maintenance, ${c.hosts.offline} offline`,
      ],
      ['cpu baseline', `${c.cpuBaseline.model} (${c.cpuBaseline.reason})`],
      ['vcpus', `${c.capacity.allocatedVcpus} allocated on ${c.capacity.cores} cores`],
      ['memory', `${mib(c.capacity.allocatedMemoryMiB)} allocated of ${mib(c.capacity.memoryMiB)}`],
    ]);
  }
  if (sub === 'settings') {
    const changes: Partial<ClusterSettings> = {};
    if (flags['cpu-overcommit']) changes.cpuOvercommit = decimal(flags['cpu-overcommit'], '--cpu-overcommit');
    if (flags['memory-overcommit'])
      changes.memoryOvercommit = decimal(flags['memory-overcommit'], '--memory-overcommit');
    if (flags['storage-overcommit'])
      changes.storageOvercommit = decimal(flags['storage-overcommit'], '--storage-overcommit');
    if (flags.strategy) changes.strategy = oneOf(flags.strategy, strategies, '--strategy');
    if (flags.downtime) changes.migrationDowntimeMs = Number(flags.downtime);
    if (flags.bandwidth) changes.migrationBandwidthMiBps = Number(flags.bandwidth);
    const s =
      Object.keys(changes).length > 0
        ? await api.call(clusterRoutes.updateSettings, { body: changes })
        : await api.call(clusterRoutes.settings);
    if (flags.output === 'json') return printJson(s);
    return printFields(Object.entries(s).map(([k, v]) => [k, String(v)]));
  }
  if (sub === 'capacity') {
    if (!flags.size)
      throw new TernError(
        'invalid_request',
        'usage: tern cluster capacity --size 2cpu,4G,20G [--tolerate K]',
      );
    const size = parseVmSize(flags.size);
    const tolerate = Number(flags.tolerate ?? 1);
    const a = await api.call(clusterRoutes.capacity, {
      body: { size, tolerate, ...(flags.pool ? { pool: flags.pool } : {}) },
    });
    if (flags.output === 'json') return printJson(a);
    printText(
      `${a.fits} more VM(s) of ${size.vcpus} vCPU, ${mib(size.memoryMiB)} fit while surviving ${tolerate} host failure(s)\n` +
        `limited by: ${a.limitedBy}\nkept free for failover: ${a.reservedForFailover.vcpus} vCPU, ${mib(a.reservedForFailover.memoryMiB)} (${a.checked})\n`,
    );
    if (a.perHost.length > 0)
      printTable(
        ['HOST', 'NEW VMS'],
        a.perHost.map((h) => [h.host, h.count]),
      );
    return;
  }
  throw new TernError(
    'invalid_request',
    'usage: tern cluster show | settings [--cpu-overcommit N] [--memory-overcommit N] [--storage-overcommit N] [--strategy spread|pack] | capacity --size 2cpu,4G,20G [--tolerate K]',
  );
}

export async function groupCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.call(clusterRoutes.placementGroups)).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'KIND', 'MEMBERS'],
      items.map((g) => [g.name, g.kind, g.members.join(', ')]),
    );
  }
  if (sub === 'create' && args.length === 1 && flags.affinity !== flags['anti-affinity']) {
    const g = await api.call(clusterRoutes.createPlacementGroup, {
      body: { name: args[0], kind: flags.affinity ? 'affinity' : 'anti-affinity' },
    });
    if (flags.output === 'json') return printJson(g);
    printText(
      `placement group ${g.name} (${g.kind}) created; add VMs with tern vm create --group ${g.name}\n`,
    );
    return;
  }
  if (sub === 'delete' && args.length > 0) {
    return eachName(args, 'usage: tern group delete NAME...', async (name) => {
      await api.call(clusterRoutes.removePlacementGroup, { params: { name } });
    });
  }
  throw new TernError(
    'invalid_request',
    'usage: tern group list | create NAME --affinity|--anti-affinity | delete NAME...',
  );
}

const cluster = viaGroup(clusterCommand);
const group = viaGroup(groupCommand);

export const clusterCommands: Command[] = [
  { path: 'cluster show', summary: 'hosts, CPU baseline and capacity', groupDefault: true, run: cluster },
  {
    path: 'cluster settings',
    summary: 'the cluster settings; changed by the flags given',
    flags: [
      'cpu-overcommit',
      'memory-overcommit',
      'storage-overcommit',
      'strategy',
      ['downtime', 'the longest pause of a live migration'],
      ['bandwidth', 'the bandwidth limit of migrations'],
    ],
    run: cluster,
  },
  {
    path: 'cluster capacity',
    summary: 'VMs of a size that still fit with K hosts failed',
    flags: [
      ['size', 'vCPUs, memory[, disk] of one VM: 2cpu,4G,20G'],
      ['tolerate', 'host failures to survive (default 1)'],
      'pool',
    ],
    run: cluster,
  },
  { path: 'group list', summary: 'placement groups', groupDefault: true, run: group },
  {
    path: 'group create',
    args: 'NAME',
    summary: 'a placement group',
    flags: ['affinity', 'anti-affinity'],
    run: group,
  },
  { path: 'group delete', args: 'NAME...', summary: 'delete placement groups', run: group },
];
