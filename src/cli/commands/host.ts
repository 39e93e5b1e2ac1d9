/** `tern host …`: the hosts of the cluster, how they join and leave, maintenance. */
import { TernError } from '../../errors.ts';
import { hostRoutes } from '../../wire/api/hosts.ts';
import type { NetworkCapabilities } from '../../wire/network.ts';
import type { Orphan } from '../../wire/orphan.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, bytes, mib, printFields, printJson, printTable, printText } from '../output.ts';
import { waitForTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';

const usage =
  'usage: tern host list | show NAME | add NAME | remove NAME | maintenance on|off NAME [--stop-unmovable] | orphans [HOST] | orphans adopt HOST ID | orphans remove HOST ID [--force]';

/** What the host can realize: `bridge, nat, isolated, overlay; no VLAN (why)`. */
function networkText(c: NetworkCapabilities): string {
  if (!c.nftables || !c.dnsmasq) return `none managed: ${c.reasons.join('; ')}`;
  const types = ['bridge', 'nat', 'isolated', ...(c.vxlan ? ['overlay'] : [])].join(', ');
  const lacks = c.reasons.length > 0 ? `; ${c.reasons.join('; ')}` : '';
  return `${types}${c.vlan ? ', VLAN tags' : ''}${lacks}`;
}

export async function hostCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.call(hostRoutes.list)).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'STATE', 'ACCEL', 'CORES', 'MEMORY', 'VMS', 'LAST SEEN', 'ADDRESS'],
      items.map((h) => [
        h.name,
        h.state,
        h.facts?.accelerator,
        h.facts?.cores,
        h.facts ? mib(h.facts.memoryMiB) : null,
        h.vmCount,
        ago(h.lastSeen),
        h.address,
      ]),
    );
  }
  if (sub === 'orphans') return orphansCommand(api, args, flags);
  const name = args[0];
  if (sub === 'show' && name) {
    const h = await api.call(hostRoutes.show, { params: { host: name } });
    if (flags.output === 'json') return printJson(h);
    return printFields([
      ['name', h.name],
      ['state', h.state],
      ['address', h.address],
      ['last seen', h.lastSeen],
      ['joined', h.joinedAt],
      [
        'certificate',
        h.certificate ? `${h.certificate.fingerprint} (expires ${h.certificate.expiresAt})` : null,
      ],
      [
        'cpu',
        h.facts ? `${h.facts.cpuModel} (${h.facts.cpuVendor}, ${h.facts.cpuFlags.length} flags)` : null,
      ],
      ['cores', h.facts?.cores],
      ['memory', h.facts ? mib(h.facts.memoryMiB) : null],
      ['accelerator', h.facts ? `${h.facts.accelerator} (${h.facts.acceleratorReason})` : null],
      [
        'pools',
        h.facts?.pools
          .map((p) => `${p.name} ${p.path} (${p.shared ? 'shared' : 'local'}, ${bytes(p.freeBytes)} free)`)
          .join(', '),
      ],
      [
        'versions',
        h.facts
          ? Object.entries(h.facts.versions)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')
          : null,
      ],
      ['networks', h.facts?.network ? networkText(h.facts.network) : null],
      ['vms', h.vmCount],
    ]);
  }
  if (sub === 'add' && name) {
    const t = await api.call(hostRoutes.add, { body: { name } });
    if (flags.output === 'json') return printJson(t);
    printText(
      `Join token for host ${t.host} (single use, expires ${t.expiresAt}).\nOn the host, run:\n\n  ${t.command}\n\nThe agent trusts only the cluster CA ${t.caFingerprint}.\n`,
    );
    return;
  }
  if (sub === 'remove' && name) {
    await api.call(hostRoutes.remove, { params: { host: name } });
    if (flags.output !== 'json') printText(`host ${name} removed; its certificate is revoked\n`);
    return;
  }
  if (sub === 'maintenance' && (args[0] === 'on' || args[0] === 'off') && args[1]) {
    const host = args[1];
    if (args[0] === 'off') {
      const h = await api.call(hostRoutes.leaveMaintenance, { params: { host } });
      if (flags.output === 'json') return printJson(h);
      printText(`host ${h.name} is ${h.state}\n`);
      return;
    }
    const r = await api.call(hostRoutes.enterMaintenance, {
      params: { host },
      body: { stopUnmovable: flags['stop-unmovable'] },
    });
    if (flags['no-wait']) {
      printText(`task ${r.task.id} (${r.task.kind}) accepted\n`);
      return;
    }
    const done = await waitForTask(api, r.task, flags.output === 'json');
    const result = done.result as { moved: string[]; stopped: string[] } | null;
    if (flags.output === 'json') return printJson(done);
    printText(
      `host ${host} is in maintenance: ${result?.moved.length ?? 0} VM(s) migrated away${
        result?.stopped.length ? `, stopped: ${result.stopped.join(', ')}` : ''
      }\n`,
    );
    return;
  }
  throw new TernError('invalid_request', usage);
}

/** `tern host orphans`: what hosts hold for VMs the inventory does not know (docs/storage.md). */
async function orphansCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [action, host, id] = args;
  if (action === 'adopt' && host && id) {
    const r = await api.call(hostRoutes.adoptOrphan, { params: { host, id } });
    if (flags.output === 'json') return printJson(r);
    process.stdout.write(
      r.as === 'vm'
        ? `orphan ${id} is VM ${r.vm} again\n`
        : `orphan ${id}: kept ${r.kept.map((v) => `${v.pool}:${v.path}`).join(', ') || 'nothing'}\n`,
    );
    return;
  }
  if (action === 'remove' && host && id) {
    await api.call(hostRoutes.removeOrphan, {
      params: { host, id },
      query: { force: flags.force || undefined },
    });
    if (flags.output !== 'json') process.stdout.write(`orphan ${id} removed from host ${host}\n`);
    return;
  }
  if (args.length > 1) throw new TernError('invalid_request', usage);
  const hosts = action
    ? [action]
    : (await api.call(hostRoutes.list)).items.filter((h) => h.state !== 'offline').map((h) => h.name);
  const items: Orphan[] = [];
  for (const h of hosts) items.push(...(await api.call(hostRoutes.orphans, { params: { host: h } })).items);
  if (flags.output === 'json') return printJson(items);
  return printTable(
    ['HOST', 'ID', 'QEMU', 'FILES', 'SIZE'],
    items.map((o) => [
      o.host,
      o.id,
      o.qemu ? `${o.name} ${o.qemu.state}${o.qemu.pid ? ` (pid ${o.qemu.pid})` : ''}` : null,
      o.volumes.map((v) => `${v.pool}:${v.path}`).join(' '),
      bytes(o.volumes.reduce((n, v) => n + v.bytes, 0)),
    ]),
  );
}

const host = viaGroup(hostCommand);

export const hostCommands: Command[] = [
  { path: 'host list', summary: 'the hosts', groupDefault: true, run: host },
  { path: 'host show', args: 'NAME', summary: 'one host: its facts, pools and certificate', run: host },
  {
    path: 'host add',
    args: 'NAME',
    summary: 'prints the join token and the agent command that joins the host',
    run: host,
  },
  {
    path: 'host remove',
    args: 'NAME',
    summary: "revokes the host's certificate (the host must have no VMs)",
    run: host,
  },
  {
    path: 'host maintenance on',
    args: 'NAME',
    summary: 'evacuates by live migration, then takes no VMs',
    flags: ['stop-unmovable', 'no-wait'],
    run: host,
  },
  { path: 'host maintenance off', args: 'NAME', summary: 'the host takes VMs again', run: host },
  {
    path: 'host orphans',
    args: '[HOST]',
    summary: 'QEMU processes and VM volumes a host holds for VMs the inventory does not know',
    run: host,
  },
  {
    path: 'host orphans adopt',
    args: 'HOST ID',
    summary: 'make an orphan a VM again, or keep its volumes',
    run: host,
  },
  {
    path: 'host orphans remove',
    args: 'HOST ID',
    summary: 'remove an orphan',
    flags: [['force', 'also kill a running orphan']],
    run: host,
  },
];
