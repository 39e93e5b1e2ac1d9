/**
 * Traffic through realized networks, one network namespace standing in for the host, one for
 * the outside world, one per guest (a veth into the bridge standing in for a VM's tap): DHCP
 * hands 50 clients exactly their leases, also after dnsmasq restarts; nat reaches the outside,
 * masqueraded; isolated reaches nothing (counted at the outside); security rules allow and block
 * as a table of cases says.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { dnsmasqPaths, dnsmasqPid } from '../src/agent/network/dnsmasq.ts';
import { KernelNetworks } from '../src/agent/network/kernel-networks.ts';
import { testNic, testSpec } from '../src/agent/network/test-specs.ts';
import { createLogger } from '../src/log.ts';
import { cleanup, dhcpLease, guest, namespace, sh, status } from './netns.ts';

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-net-'));
let host = '';
let outside = '';
let nets: KernelNetworks;

before(() => {
  host = namespace('h');
  outside = namespace('o');
  // The outside: 192.0.2.2, reached through the host's 192.0.2.1; the host routes.
  sh(host, `ip link add out0 type veth peer name eth0 netns ${outside}`);
  sh(host, 'ip addr add 192.0.2.1/24 dev out0 && ip link set out0 up && sysctl -q -w net.ipv4.ip_forward=1');
  sh(outside, 'ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0 up');
  nets = new KernelNetworks({ stateDir, log: createLogger('test', 'silent'), netns: host, watchMs: 50 });
});
after(async () => {
  await nets?.close();
  cleanup();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

/** A TCP listener that accepts any number of connections and closes each at once. */
function listen(ns: string, port: number): void {
  sh(ns, `busybox nc -ll -p ${port} -e /bin/true </dev/null >/dev/null 2>&1 &`);
}
const tcp = (ns: string, ip: string, port: number) =>
  status(ns, `busybox nc -w 1 ${ip} ${port} </dev/null`) === 0;
const ping = (ns: string, ip: string, from = '') =>
  status(ns, `busybox ping -c 1 -W 1 ${from ? `-I ${from}` : ''} ${ip} >/dev/null`) === 0;

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A guest with its lease's address configured by hand, routed through the gateway. */
function staticGuest(
  bridge: string,
  port: string,
  nic: { mac: string; ip: string },
  gateway: string,
): string {
  const g = guest(host, bridge, port, nic.mac);
  sh(g, `ip addr add ${nic.ip}/24 dev eth0 && ip route add default via ${gateway}`);
  return g;
}

function counted(ns: string): string {
  return sh(ns, 'nft list table inet probe');
}

test('nat: a guest reaches the outside, masqueraded behind the host', async () => {
  const spec = testSpec('nat', 1, { leases: [testNic(1, 1)] });
  await nets.apply(spec);
  listen(outside, 1688);
  sh(
    outside,
    'nft add table inet probe; nft add chain inet probe in "{ type filter hook input priority 0; }"; nft add rule inet probe in tcp dport 1688 ip saddr 192.0.2.1 counter; nft add rule inet probe in tcp dport 1688 ip saddr != 192.0.2.1 counter',
  );
  const g = staticGuest(spec.bridge, 'gnat', testNic(1, 1), spec.gateway!);
  assert.ok(ping(g, '192.0.2.2'), 'ping out');
  assert.ok(tcp(g, '192.0.2.2', 1688), 'TCP 1688 out');
  const c = counted(outside);
  assert.match(c, /ip saddr 192\.0\.2\.1 counter packets [1-9]/);
  assert.match(c, /ip saddr != 192\.0\.2\.1 counter packets 0 /);
  sh(outside, 'nft delete table inet probe');
});

test('isolated: a guest reaches nothing but DHCP and DNS, and nothing leaves (counted at the outside)', async () => {
  const spec = testSpec('isolated', 2, { leases: [testNic(2, 1)] });
  await nets.apply(spec);
  sh(
    outside,
    'nft add table inet probe; nft add chain inet probe in "{ type filter hook input priority 0; }"; nft add rule inet probe in ip saddr != 192.0.2.1 counter',
  );
  listen(host, 1688);
  // A guest that routes through the gateway on its own: the network must hold anyway.
  const g = staticGuest(spec.bridge, 'giso', testNic(2, 1), spec.gateway!);
  const probes: [string, boolean][] = [
    ['ping outside', ping(g, '192.0.2.2')],
    ['TCP 1688 outside', tcp(g, '192.0.2.2', 1688)],
    ["TCP 1688 the host's outside address", tcp(g, '192.0.2.1', 1688)],
    ['TCP 1688 the gateway', tcp(g, spec.gateway!, 1688)],
    ['ping the gateway', ping(g, spec.gateway!)],
  ];
  assert.deepEqual(
    probes.filter(([, ok]) => ok),
    [],
  );
  assert.match(counted(outside), /counter packets 0 bytes 0/);
  // The network's own drops counted them.
  assert.match(sh(host, 'nft list chain inet tern_tn00000002 forward'), /counter packets [1-9]/);
  assert.match(sh(host, 'nft list chain inet tern_tn00000002 input'), /counter packets [1-9]/);
  // DNS on the gateway answers the network's names.
  assert.match(sh(g, `busybox nslookup vm1.lab ${spec.gateway}`), /10\.2\.0\.11/);
  sh(outside, 'nft delete table inet probe');
});

test('50 DHCP clients each get exactly their lease, also after dnsmasq restarts', async () => {
  const leases = Array.from({ length: 50 }, (_, i) => testNic(3, i + 1));
  const spec = testSpec('nat', 3, { leases });
  await nets.apply(spec);
  const guests = leases.map((l, i) => guest(host, spec.bridge, `gd${i}`, l.mac));
  const dhcp = () => Promise.all(guests.map(dhcpLease));
  assert.deepEqual(
    await dhcp(),
    leases.map((l) => l.ip),
  );
  const paths = dnsmasqPaths(path.join(stateDir, 'networks', spec.id));
  const pid = dnsmasqPid(paths);
  process.kill(pid, 'SIGKILL');
  await until('dnsmasq started again', () => dnsmasqPid(paths) !== 0 && dnsmasqPid(paths) !== pid);
  assert.deepEqual(
    await dhcp(),
    leases.map((l) => l.ip),
  );
});

test('security rules allow and block as the table of cases says', async () => {
  const spec = testSpec('nat', 4, { leases: [testNic(4, 1), testNic(4, 2)] });
  await nets.apply(spec);
  const [a, b] = [testNic(4, 1), testNic(4, 2)];
  const tap = await nets.plug({
    network: spec.id,
    vm: '00000000-0000-4000-8000-0000000000aa',
    mac: a.mac,
    ip: a.ip,
    rules: {
      inbound: 'deny',
      outbound: 'allow',
      rules: [{ direction: 'in', protocol: 'tcp', ports: { from: 22, to: 22 }, peers: [`${b.ip}/32`] }],
    },
  });
  // The guest's veth takes the tap's place and name: the port's rules follow the name.
  sh(host, `ip link del ${tap}`);
  const ga = staticGuest(spec.bridge, tap, a, spec.gateway!);
  const gb = staticGuest(spec.bridge, 'gsecb', b, spec.gateway!);
  for (const port of [22, 80]) listen(ga, port);
  listen(gb, 1688);
  sh(ga, 'ip addr add 10.4.0.99/24 dev eth0');

  const cases: [string, () => boolean, boolean][] = [
    ['B → A tcp 22 (allowed from B)', () => tcp(gb, a.ip, 22), true],
    ['B → A tcp 80 (inbound deny)', () => tcp(gb, a.ip, 80), false],
    ['B → A ping (inbound deny)', () => ping(gb, a.ip), false],
    ['A → B ping (outbound allow, the reply comes back)', () => ping(ga, b.ip), true],
    ['A → B tcp 1688 (outbound allow, the reply comes back)', () => tcp(ga, b.ip, 1688), true],
    ['A → B from a spoofed address', () => ping(ga, b.ip, '10.4.0.99'), false],
    ['A → the gateway DNS', () => status(ga, `busybox nslookup vm2.lab ${spec.gateway}`) === 0, true],
  ];
  assert.deepEqual(
    cases.map(([name, probe]) => [name, probe()]),
    cases.map(([name, , want]) => [name, want]),
  );

  // A spoofed MAC is dropped whatever the rules.
  sh(ga, 'ip link set eth0 address 02:bb:00:00:00:01');
  assert.equal(ping(ga, b.ip), false, 'spoofed MAC');
  sh(ga, `ip link set eth0 address ${a.mac}`);

  // New rules for the running port: outbound deny but TCP 1688, inbound allow.
  await nets.updatePort(tap, {
    inbound: 'allow',
    outbound: 'deny',
    rules: [{ direction: 'out', protocol: 'tcp', ports: { from: 1688, to: 1688 } }],
  });
  const after: [string, () => boolean, boolean][] = [
    ['B → A tcp 80 (inbound allow now)', () => tcp(gb, a.ip, 80), true],
    ['B → A ping (the echo reply leaves)', () => ping(gb, a.ip), true],
    ['A → B tcp 1688 (allowed out)', () => tcp(ga, b.ip, 1688), true],
    ['A → B ping (outbound deny)', () => ping(ga, b.ip), false],
  ];
  assert.deepEqual(
    after.map(([name, probe]) => [name, probe()]),
    after.map(([name, , want]) => [name, want]),
  );
  await nets.unplug(tap);
  assert.doesNotMatch(sh(host, `nft list table bridge tern_${spec.bridge}`), new RegExp(tap));
});
