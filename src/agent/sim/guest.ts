/** The simulated guest: what its agent reports once it has booted. */
import { createHash } from 'node:crypto';
import type { GuestInfo, VmSpec } from '../../wire/vm.ts';

/** What the guest agent of a booted VM reports, in its `boots`-th boot; `hung` guests do not answer. */
export function guestFacts(spec: VmSpec, hung: boolean, boots: number): GuestInfo {
  const hash = createHash('sha256').update(spec.id).digest('hex');
  return {
    agent: hung ? 'not-responding' : 'responding',
    boots,
    lastHeartbeat: new Date().toISOString(),
    hostname: spec.name,
    machineId: hash.slice(0, 32),
    bootId: bootId(spec, boots),
    disks: spec.disks.map((_, i) => `/dev/vd${String.fromCharCode(97 + i)}`).sort(),
    os: {
      id: 'tern-sim',
      name: 'Tern simulated guest',
      prettyName: 'Tern simulated guest 1',
      version: '1',
      kernelRelease: 'sim',
      machine: 'x86_64',
    },
    interfaces: [
      { name: 'lo', addresses: ['127.0.0.1/8'] },
      ...spec.nics.map((nic, i) => ({ name: `eth${i}`, mac: nic.mac, addresses: [guestAddress(nic)] })),
    ],
    // A simulated guest never freezes: its snapshots are crash-consistent.
    frozen: false,
  };
}

/** A boot id as a Linux guest's kernel makes one (a random UUID), stable per VM and boot here. */
function bootId(spec: VmSpec, boots: number): string {
  const h = createHash('sha256').update(`${spec.id}:${boots}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The address a simulated guest gets: QEMU's user network hands out 10.0.2.15; bridges, one per MAC. */
function guestAddress(nic: VmSpec['nics'][number]): string {
  if (nic.network.mode === 'user') return '10.0.2.15/24';
  const b = nic.mac.split(':').map((x) => Number.parseInt(x, 16));
  return `10.${b[3]}.${b[4]}.${Math.min(254, Math.max(2, b[5]))}/8`;
}
