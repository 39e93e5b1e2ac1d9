/**
 * A port's tap on the host: made by the agent (persistent, so it outlives a QEMU and an agent
 * restart), named by it, plugged into the bridge; QEMU only opens it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { links } from './bridge.ts';
import type { HostShell } from './host-shell.ts';

/** A fresh tap name: unique on the host, so two QEMUs of one VM (a migration here) never clash. */
export function newTapName(): string {
  return `tt${randomBytes(6).toString('hex')}`;
}

/**
 * A network's link group on this host: its taps are in it (`ip link show group N` lists them).
 * Derived from the network's id so it stays the same, and even: the odd group above it is where
 * taps go to be deleted (`removeTaps`). `taken`: the other networks' groups here, never reused.
 */
export function linkGroup(id: string, taken: ReadonlySet<number>): number {
  const span = 0x0fffffff;
  let g =
    0x10000000 + (Number.parseInt(createHash('sha256').update(id).digest('hex').slice(0, 7), 16) & span & ~1);
  while (taken.has(g)) g = 0x10000000 + ((g + 2 - 0x10000000) & span & ~1);
  return g;
}

/** Runs `ip` commands in one process, in order; it stops at the first that fails. */
export async function ipBatch(shell: HostShell, lines: readonly string[]): Promise<void> {
  await shell.run(['ip', '-batch', '-'], `${lines.join('\n')}\n`);
}

/**
 * The `ip -batch` lines that make a tap, put it on the bridge in the network's link group and
 * bring it up: its chains must be in place already.
 */
export function tapLines(tap: string, bridge: string, mtu: number, group: number): string[] {
  return [
    `tuntap add dev ${tap} mode tap vnet_hdr`,
    `link set dev ${tap} master ${bridge} mtu ${mtu} group ${group} up`,
  ];
}

/**
 * Removes taps in one netlink request: moved into `doom`, a link group nothing else is in, and
 * deleted by group. The kernel then waits for one RCU grace period for them all (about 20 ms),
 * where `ip link del` waits for one each. A tap gone already is done.
 */
export async function removeTaps(shell: HostShell, taps: readonly string[], doom: number): Promise<void> {
  const have = new Set((await links(shell)).map((l) => l.ifname));
  const there = taps.filter((t) => have.has(t));
  if (there.length === 0) return;
  await ipBatch(shell, [...there.map((t) => `link set dev ${t} group ${doom}`), `link del group ${doom}`]);
}

/** Makes the tap and plugs it into the bridge, down: it comes up once its rules are in place. */
export async function makeTap(shell: HostShell, tap: string, bridge: string, mtu: number): Promise<void> {
  await shell.run(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr']);
  await enslaveTap(shell, tap, bridge, mtu);
}

/** Puts an existing tap on the bridge (again: a bridge made again has lost its ports). */
export async function enslaveTap(shell: HostShell, tap: string, bridge: string, mtu: number): Promise<void> {
  await shell.run(['ip', 'link', 'set', tap, 'master', bridge, 'mtu', String(mtu)]);
}

export async function tapUp(shell: HostShell, tap: string): Promise<void> {
  await shell.run(['ip', 'link', 'set', tap, 'up']);
}

export async function removeTap(shell: HostShell, tap: string): Promise<void> {
  await shell.run(['ip', 'link', 'del', tap]).catch(async (err) => {
    // Gone already is done; anything else is a failure.
    const shown = await shell.run(['ip', '-j', 'link', 'show', 'dev', tap]).catch(() => '');
    if (shown) throw err;
  });
}
