/** `tern vm nic …`: a VM's network cards: list, add, remove, link up or down. */
import { TernError } from '../../errors.ts';
import { networkRoutes } from '../../wire/api/networks.ts';
import { vmNicRoutes } from '../../wire/api/vm-nics.ts';
import { vmRoutes } from '../../wire/api/vms.ts';
import type { NicSpec } from '../../wire/vm.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printJson, printTable } from '../output.ts';
import { followTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';
import { parseNic } from './vm-create.ts';

/** The names of the managed networks a VM's NICs are on, by id (none asked when it has none). */
export async function networkNames(api: ApiClient, nics: readonly NicSpec[]): Promise<Map<string, string>> {
  if (!nics.some((n) => n.network.mode === 'network')) return new Map();
  const { items } = await api.call(networkRoutes.list);
  return new Map(items.map((n) => [n.id, n.name]));
}

/** Where a NIC is: its managed network's name (the bridge if the network is gone), `bridge:BR`, `user`. */
function nicPlace(n: NicSpec, names: Map<string, string>): string {
  if (n.network.mode === 'network') return names.get(n.network.network) ?? n.network.bridge;
  return n.network.mode === 'bridge' ? `bridge:${n.network.bridge}` : 'user';
}

/** One NIC in a line: `02:74:6e:… lab 10.1.0.5`, `… user`, `… bridge:br0`, link if down. */
export function nicText(n: NicSpec, names: Map<string, string>): string {
  const ip = n.network.mode === 'network' && n.network.ip ? ` ${n.network.ip}` : '';
  return `${n.mac} ${nicPlace(n, names)}${ip}${n.link === 'down' ? ' (link down)' : ''}`;
}

const usage =
  'usage: tern vm nic list VM | add VM user|bridge:BR|NETWORK[,ip=IP][,mac=MAC][,group=G] | remove VM MAC | link VM MAC up|down';

async function nicCommand(
  api: ApiClient,
  op: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const [vm, a, b] = args;
  if (op === 'list' && vm && args.length === 1) {
    const v = await api.call(vmRoutes.show, { params: { vm } });
    if (flags.output === 'json') return printJson(v.nics);
    const names = await networkNames(api, v.nics);
    return printTable(
      ['MAC', 'NETWORK', 'ADDRESS', 'LINK'],
      v.nics.map((n) => [
        n.mac,
        nicPlace(n, names),
        n.network.mode === 'network' ? n.network.ip : '-',
        n.link ?? 'up',
      ]),
    );
  }
  if (op === 'add' && vm && a && args.length === 2) {
    const { task } = await api.call(vmNicRoutes.addNic, { params: { vm }, body: parseNic(a) });
    return followTask(api, flags, task);
  }
  if (op === 'remove' && vm && a && args.length === 2) {
    const { task } = await api.call(vmNicRoutes.removeNic, { params: { vm, mac: a.toLowerCase() } });
    return followTask(api, flags, task);
  }
  if (op === 'link' && vm && a && (b === 'up' || b === 'down') && args.length === 3) {
    const { task } = await api.call(vmNicRoutes.linkNic, {
      params: { vm, mac: a.toLowerCase() },
      body: { link: b },
    });
    return followTask(api, flags, task);
  }
  throw new TernError('invalid_request', usage);
}

const run = viaGroup((api, _sub, args, flags) => nicCommand(api, args[0], args.slice(1), flags));

export const vmNicCommands: Command[] = [
  { path: 'vm nic list', args: 'VM', summary: "a VM's network cards and their addresses", run },
  {
    path: 'vm nic add',
    args: 'VM NIC',
    summary: 'a network card (as vm create --nic); on a managed network it gets an address',
    flags: ['no-wait'],
    run,
  },
  {
    path: 'vm nic remove',
    args: 'VM MAC',
    summary: 'take a network card out; its address is freed',
    flags: ['no-wait'],
    run,
  },
  {
    path: 'vm nic link',
    args: 'VM MAC up|down',
    summary: "a network card's link, as a cable plugged or pulled",
    flags: ['no-wait'],
    run,
  },
];
