/** A network's bridge on one host: made, shaped (MAC, MTU, address, uplink) and removed. */
import type { HostNetworkSpec } from '../../wire/network.ts';
import type { HostShell } from './host-shell.ts';
import { parseCidr } from './ipv4.ts';

interface LinkInfo {
  ifname: string;
  address?: string;
  mtu?: number;
  master?: string;
  operstate?: string;
}

export async function links(shell: HostShell, args: string[] = []): Promise<LinkInfo[]> {
  return JSON.parse((await shell.run(['ip', '-j', 'link', 'show', ...args])) || '[]');
}

export async function linkExists(shell: HostShell, name: string): Promise<boolean> {
  return (await links(shell)).some((l) => l.ifname === name);
}

/** Makes the bridge as the spec says; doing it again changes nothing. */
export async function ensureBridge(shell: HostShell, spec: HostNetworkSpec): Promise<void> {
  const br = spec.bridge;
  if (!(await linkExists(shell, br))) await shell.run(['ip', 'link', 'add', br, 'type', 'bridge']);
  // The gateway's MAC is the bridge's: the same on every host (the overlay's anycast gateway).
  await shell.run(['ip', 'link', 'set', br, 'address', spec.gatewayMac, 'mtu', String(spec.mtu), 'up']);
  const want = spec.gateway ? `${spec.gateway}/${parseCidr(spec.subnet).length}` : null;
  const shown: { addr_info?: { family: string; local: string; prefixlen: number }[] }[] = JSON.parse(
    (await shell.run(['ip', '-j', '-4', 'addr', 'show', 'dev', br])) || '[]',
  );
  for (const a of shown[0]?.addr_info ?? []) {
    const have = `${a.local}/${a.prefixlen}`;
    if (have !== want) await shell.run(['ip', 'addr', 'del', have, 'dev', br]);
  }
  if (want) await shell.run(['ip', 'addr', 'replace', want, 'dev', br]);
  if (spec.uplink) await shell.run(['ip', 'link', 'set', spec.uplink, 'master', br, 'up']);
  // A nat network is routed by the host (as libvirt's are): forwarding is host-wide in Linux.
  if (spec.type === 'nat') await shell.run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
}

/** Removes the bridge; an enslaved uplink is released by the kernel and stays as it was. */
export async function removeBridge(shell: HostShell, bridge: string): Promise<void> {
  if (await linkExists(shell, bridge)) await shell.run(['ip', 'link', 'del', bridge]);
}
