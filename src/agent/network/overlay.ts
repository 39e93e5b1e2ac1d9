/**
 * An overlay network's tunnel on one host: a VXLAN device on the bridge, without multicast or
 * learning, with one all-zeros forwarding entry per peer host (head-end replication: flooded
 * frames go to every peer), written from the inventory.
 */
import type { HostNetworkSpec } from '../../wire/network.ts';
import type { HostShell } from './host-shell.ts';
import { vxlanName } from './nft-rules.ts';

const flood = '00:00:00:00:00:00';

interface VxlanInfo {
  ifname: string;
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number } };
}

export async function ensureVxlan(shell: HostShell, spec: HostNetworkSpec): Promise<void> {
  const o = spec.overlay!;
  const name = vxlanName(o.vni);
  const shown: VxlanInfo[] = JSON.parse((await shell.run(['ip', '-d', '-j', 'link', 'show'])) || '[]');
  // A tunnel of this bridge with another VNI (the spec changed) goes.
  for (const l of shown) {
    if (l.master === spec.bridge && l.linkinfo?.info_kind === 'vxlan' && l.ifname !== name)
      await shell.run(['ip', 'link', 'del', l.ifname]);
  }
  const have = shown.find((l) => l.ifname === name)?.linkinfo?.info_data;
  if (have && (have.id !== o.vni || have.local !== o.local || have.port !== o.port)) {
    await shell.run(['ip', 'link', 'del', name]);
  }
  if (!have || have.id !== o.vni || have.local !== o.local || have.port !== o.port) {
    await shell.run([
      'ip',
      'link',
      'add',
      name,
      'type',
      'vxlan',
      'id',
      String(o.vni),
      'dstport',
      String(o.port),
      'local',
      o.local,
      'nolearning',
    ]);
  }
  await shell.run(['ip', 'link', 'set', name, 'master', spec.bridge, 'mtu', String(spec.mtu), 'up']);
  await writePeers(
    shell,
    name,
    o.peers.filter((p) => p !== o.local),
  );
}

async function writePeers(shell: HostShell, dev: string, peers: string[]): Promise<void> {
  const fdb: { mac: string; dst?: string }[] = JSON.parse(
    (await shell.run(['bridge', '-j', 'fdb', 'show', 'dev', dev])) || '[]',
  );
  const have = new Set(fdb.filter((e) => e.mac === flood && e.dst).map((e) => e.dst!));
  const want = new Set(peers);
  const lines: string[] = [];
  for (const p of want) if (!have.has(p)) lines.push(`fdb append ${flood} dev ${dev} dst ${p}`);
  for (const p of have) if (!want.has(p)) lines.push(`fdb del ${flood} dev ${dev} dst ${p}`);
  // One `bridge` process for any number of peers.
  if (lines.length > 0) await shell.run(['bridge', '-batch', '-'], `${lines.join('\n')}\n`);
}

/** The VXLAN devices on the bridge, so teardown removes them with it. */
export async function removeVxlans(shell: HostShell, bridge: string): Promise<void> {
  const shown: VxlanInfo[] = JSON.parse((await shell.run(['ip', '-d', '-j', 'link', 'show'])) || '[]');
  for (const l of shown) {
    if (l.master === bridge && l.linkinfo?.info_kind === 'vxlan')
      await shell.run(['ip', 'link', 'del', l.ifname]);
  }
}
