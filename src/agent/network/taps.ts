/**
 * A port's tap on the host: made by the agent (persistent, so it outlives a QEMU and an agent
 * restart), named by it, plugged into the bridge; QEMU only opens it.
 */
import { randomBytes } from 'node:crypto';
import type { HostShell } from './host-shell.ts';

/** A fresh tap name: unique on the host, so two QEMUs of one VM (a migration here) never clash. */
export function newTapName(): string {
  return `tt${randomBytes(6).toString('hex')}`;
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
