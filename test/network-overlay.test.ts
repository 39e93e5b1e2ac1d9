/**
 * An overlay network across two hosts (network namespaces wired by a veth pair standing in for
 * the cluster network): each host's guest gets its lease from its own host's dnsmasq (the
 * anycast gateway answers locally), resolves the other by name, and reaches it through VXLAN.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { KernelNetworks } from '../src/agent/network/kernel-networks.ts';
import { testNic, testSpec } from '../src/agent/network/test-specs.ts';
import { createLogger } from '../src/log.ts';
import { cleanup, dhcpLease, footprint, guest, namespace, sh, status, wire } from './netns.ts';

after(cleanup);

test('an overlay joins two hosts: local DHCP, names of both, traffic through the tunnel, nothing left after', async (t) => {
  const [h1, h2] = [namespace('h'), namespace('h')];
  const [ip1, ip2] = wire(h1, h2);
  const before = [footprint(h1), footprint(h2)];
  const leases = [testNic(7, 1), testNic(7, 2)];
  const dirs = [h1, h2].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'tern-ovl-')));
  const nets = [h1, h2].map(
    (netns, i) =>
      new KernelNetworks({ stateDir: dirs[i], log: createLogger('test', 'silent'), netns, watchMs: 0 }),
  );
  t.after(async () => {
    await Promise.all(nets.map((n) => n.close()));
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  const base = testSpec('overlay', 7, { leases });
  for (const [i, local] of [ip1, ip2].entries()) {
    const state = await nets[i].apply({ ...base, overlay: { ...base.overlay!, local, peers: [ip1, ip2] } });
    assert.equal(state.state, 'ready', state.reason ?? '');
  }
  const guests = [h1, h2].map((h, i) => guest(h, base.bridge, `go${i}`, leases[i].mac, base.mtu));
  const got = await Promise.all(guests.map(dhcpLease));
  assert.deepEqual(
    got,
    leases.map((l) => l.ip),
  );
  for (const [i, g] of guests.entries()) sh(g, `ip addr add ${leases[i].ip}/24 dev eth0`);
  // Each host's DNS names the NIC on the other host too.
  assert.match(sh(guests[0], `busybox nslookup vm2.lab ${base.gateway}`), /10\.7\.0\.12/);
  assert.match(sh(guests[1], `busybox nslookup vm1.lab ${base.gateway}`), /10\.7\.0\.11/);
  assert.equal(
    status(guests[0], `busybox ping -c 1 -W 2 ${leases[1].ip} >/dev/null`),
    0,
    'guest 1 → guest 2',
  );
  assert.equal(
    status(guests[1], `busybox ping -c 1 -W 2 ${leases[0].ip} >/dev/null`),
    0,
    'guest 2 → guest 1',
  );
  // The gateway's MAC was learned on the local bridge port only, never behind the tunnel.
  for (const h of [h1, h2]) assert.doesNotMatch(sh(h, 'bridge fdb show dev vx1007'), /02:00:0a:07:00:01/);

  for (const h of [h1, h2]) sh(h, 'ip link del go0 2>/dev/null || ip link del go1');
  for (const n of nets) await n.remove(base.id);
  assert.deepEqual([footprint(h1), footprint(h2)], before);
});
