/**
 * Network namespaces for network tests: hosts (where the agent's network code runs) and
 * guests (a veth into a host's bridge, standing in for a VM's tap). Every namespace a test makes
 * is removed by `cleanup()` (processes in it killed first, dnsmasq included), also when the test
 * failed; nothing is made in the machine's own namespace.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const made: string[] = [];
let serial = 0;
/** udhcpc's script: says the address it was offered, configures nothing. */
const leaseScript = path.join(os.tmpdir(), `tern-udhcpc-${process.pid}.sh`);

export function sh(ns: string, script: string, input?: string): string {
  return execFileSync('ip', ['netns', 'exec', ns, 'sh', '-ec', script], {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: 60_000,
  });
}

/** Like sh, answering the exit status instead of throwing. */
export function status(ns: string, script: string): number {
  try {
    sh(ns, script);
    return 0;
  } catch (err) {
    return (err as { status?: number }).status ?? 1;
  }
}

/** A fresh namespace named after the test process (so runs side by side do not collide). */
export function namespace(role: string): string {
  const ns = `tn${process.pid}-${role}${serial++}`;
  execFileSync('ip', ['netns', 'add', ns]);
  made.push(ns);
  sh(ns, 'ip link set lo up');
  return ns;
}

/**
 * A guest: a namespace whose eth0 (with `mac`) is a veth whose other end, named `port`, is on
 * `bridge` in the host namespace.
 */
export function guest(host: string, bridge: string, port: string, mac: string, mtu = 1500): string {
  const ns = namespace('g');
  sh(host, `ip link add ${port} mtu ${mtu} type veth peer name eth0 netns ${ns}`);
  sh(host, `ip link set ${port} master ${bridge} up`);
  sh(ns, `ip link set eth0 address ${mac} mtu ${mtu} up`);
  return ns;
}

/**
 * The address a guest's eth0 is offered by DHCP (busybox udhcpc, up to 10 tries a second apart),
 * or undefined; the guest is left unconfigured.
 */
export async function dhcpLease(guest: string): Promise<string | undefined> {
  if (!fs.existsSync(leaseScript))
    fs.writeFileSync(leaseScript, '#!/bin/sh\n[ "$1" = bound ] && echo "bound $ip"\nexit 0\n', {
      mode: 0o755,
    });
  const { stdout } = await run('ip', [
    'netns',
    'exec',
    guest,
    'busybox',
    'udhcpc',
    '-i',
    'eth0',
    '-f',
    '-q',
    '-n',
    '-t',
    '10',
    '-T',
    '1',
    '-s',
    leaseScript,
  ]);
  return /bound (\S+)/.exec(stdout)?.[1];
}

/** Two hosts' "cluster addresses": a veth pair between them, `10.255.0.1` and `.2`. */
export function wire(a: string, b: string): [string, string] {
  sh(a, `ip link add uplink type veth peer name uplink netns ${b}`);
  sh(a, 'ip addr add 10.255.0.1/24 dev uplink && ip link set uplink up');
  sh(b, 'ip addr add 10.255.0.2/24 dev uplink && ip link set uplink up');
  return ['10.255.0.1', '10.255.0.2'];
}

export function pids(ns: string): number[] {
  return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map(Number);
}

/** Every namespace made so far, its processes killed, removed (and the DHCP lease script). */
export function cleanup(): void {
  for (const ns of made.splice(0)) {
    for (const pid of pids(ns)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    execFileSync('ip', ['netns', 'del', ns]);
  }
  fs.rmSync(leaseScript, { force: true });
}

/** What `ip -br link` and `nft list ruleset` show in a namespace: the before/after of teardown. */
export function footprint(ns: string): { links: string; ruleset: string } {
  return {
    // Names and MACs, not operational state: a veth still coming up when the footprint was
    // first taken reads UP afterwards, which is not something a test left behind.
    links: sh(ns, "ip -br link | awk '{print $1, $3}' | sort"),
    ruleset: sh(ns, 'nft list ruleset'),
  };
}
