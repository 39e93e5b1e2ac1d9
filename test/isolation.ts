/**
 * A test host with its own network and its own path to the shared storage, so faults can cut
 * one host off as a switch or a storage failure would, on one machine:
 * - its agent (and so its QEMU processes and its watchdog) runs in a network namespace, joined
 *   by a veth pair to a bridge on the machine, where the manager listens (and through which
 *   hosts reach each other, to migrate); cutting a host's network to the manager blackholes
 *   both ends (each side's neighbour entry points at a MAC nobody has), so connections hang
 *   rather than fail fast;
 * - in its own mount namespace, the shared directory is the host's own FUSE view of it
 *   (bindfs, mounted over the same path, so every host sees the shared pool where the others
 *   do); cutting the storage stops that bindfs, so every access hangs like a hard NFS mount
 *   whose server went away, for the lease writer and for the VMs' disks alike.
 * Power loss kills every process in the namespace at once.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const nobody = '02:00:00:00:00:01';

export interface Isolation {
  /** The network namespace. */
  ns: string;
  /** The machine's side of the link: where the host reaches the manager. */
  managerAddress: string;
  /** The host's own address. */
  hostAddress: string;
  /** The command line that runs `argv` on this host. */
  wrap(argv: string[]): string[];
  cutNetwork(): void;
  restoreNetwork(): void;
  cutStorage(): void;
  restoreStorage(): void;
  /** Every process of the host, killed at once: agent, watchdog, QEMU, storage client. */
  powerOff(): void;
  /** Powers off and removes the namespace. */
  destroy(): void;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const bridge = `tb${process.pid}`;
const subnet = `10.${64 + ((process.pid >> 8) % 64)}.${process.pid % 256}`;
let bridgeUsers = 0;

/** The bridge every isolated host of this test process hangs on, made on first use. */
function joinBridge(): string {
  if (bridgeUsers++ === 0) {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `${subnet}.1/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
  }
  return `${subnet}.1`;
}

function leaveBridge(): void {
  if (--bridgeUsers === 0) ip('link', 'del', bridge);
}

/**
 * Host `index` (0-based) of this test process. Names and the /24 come from the process id, so
 * test processes running side by side do not collide.
 */
export function isolateHost(index: number, sharedDir: string | null): Isolation {
  const tag = `${process.pid}-${index}`;
  const ns = `tern-${tag}`;
  const outer = `tv${tag}`;
  const inner = 'eth0';
  const managerAddress = joinBridge();
  const hostAddress = `${subnet}.${10 + index}`;
  const inNs = (...args: string[]) => ip('netns', 'exec', ns, 'ip', ...args);

  ip('netns', 'add', ns);
  ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner, 'netns', ns);
  ip('link', 'set', outer, 'master', bridge);
  ip('link', 'set', outer, 'up');
  inNs('addr', 'add', `${hostAddress}/24`, 'dev', inner);
  inNs('link', 'set', inner, 'up');
  inNs('link', 'set', 'lo', 'up');

  const pids = (): number[] => ip('netns', 'pids', ns).split('\n').filter(Boolean).map(Number);
  const storageClients = (): number[] =>
    pids().filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('bindfs\0');
      } catch {
        return false;
      }
    });
  const signal = (list: number[], sig: NodeJS.Signals) => {
    for (const pid of list) {
      try {
        process.kill(pid, sig);
      } catch {
        // Already gone.
      }
    }
  };

  let destroyed = false;
  const iso: Isolation = {
    ns,
    managerAddress,
    hostAddress,
    wrap(argv) {
      if (!sharedDir) return ['ip', 'netns', 'exec', ns, ...argv];
      // `ip netns exec` gives the command a mount namespace of its own, so the bindfs mounted
      // there is this host's alone; it is mounted over the directory itself, so paths match.
      return [
        'ip',
        'netns',
        'exec',
        ns,
        'sh',
        '-c',
        'bindfs -o allow_other "$1" "$1" && shift && exec "$@"',
        'host-storage',
        sharedDir,
        ...argv,
      ];
    },
    cutNetwork() {
      ip('neigh', 'replace', hostAddress, 'lladdr', nobody, 'dev', bridge, 'nud', 'permanent');
      inNs('neigh', 'replace', managerAddress, 'lladdr', nobody, 'dev', inner, 'nud', 'permanent');
    },
    restoreNetwork() {
      // Permanent entries survive a flush: delete them, and the neighbours are asked afresh.
      ip('neigh', 'del', hostAddress, 'dev', bridge);
      inNs('neigh', 'del', managerAddress, 'dev', inner);
    },
    cutStorage() {
      const clients = storageClients();
      if (clients.length === 0) throw new Error(`host ${ns} has no storage client to cut`);
      signal(clients, 'SIGSTOP');
    },
    restoreStorage() {
      signal(storageClients(), 'SIGCONT');
    },
    powerOff() {
      // A stopped process dies of SIGKILL too; nothing of the host may linger.
      signal(pids(), 'SIGKILL');
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        iso.powerOff();
        ip('netns', 'del', ns);
        leaveBridge();
      } catch {
        // Already removed.
      }
    },
  };
  return iso;
}
