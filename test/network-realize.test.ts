/**
 * Networks realized on a host (a network namespace standing in for one): every type, applied
 * twice, changed, realized again at agent start, its dnsmasq restarted when it dies, and torn
 * down leaving `ip -br link` and `nft list ruleset` as they were.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { dnsmasqPaths, dnsmasqPid } from '../src/agent/network/dnsmasq.ts';
import { KernelNetworks } from '../src/agent/network/kernel-networks.ts';
import { testNic, testSpec } from '../src/agent/network/test-specs.ts';
import { createLogger } from '../src/log.ts';
import { cleanup, footprint, namespace, pids, sh } from './netns.ts';

after(cleanup);
const log = createLogger('test', 'silent');

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('every network type is realized idempotently, kept, realized again at start, and torn down leaving nothing', async (t) => {
  const host = namespace('h');
  sh(host, 'ip link add up0 type veth peer name up1 && ip link set up0 up && ip link set up1 up');
  const before = footprint(host);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-net-'));
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  let nets = new KernelNetworks({ stateDir, log, netns: host, watchMs: 50 });
  t.after(() => nets.close());

  const specs = [
    testSpec('nat', 1, { leases: [testNic(1, 1)] }),
    testSpec('isolated', 2),
    testSpec('overlay', 3),
    testSpec('bridge', 4, { gateway: null, dhcp: null, uplink: 'up0' }),
  ];
  for (const spec of specs) assert.equal((await nets.apply(spec)).state, 'ready', spec.type);
  const links = sh(host, 'ip -br link');
  for (const spec of specs)
    assert.match(links, new RegExp(`^${spec.bridge}\\s+\\S+\\s+${spec.gatewayMac}`, 'm'));
  assert.match(
    sh(host, 'ip -d link show vx1003'),
    /vxlan id 1003 local 10\.255\.0\.1 .*dstport 4789 nolearning/,
  );
  assert.match(sh(host, 'bridge fdb show dev vx1003'), /00:00:00:00:00:00 dst 10\.255\.0\.2 self permanent/);
  assert.match(sh(host, 'ip -br link show up0'), /up0@up1\s+UP/);
  assert.match(sh(host, 'ip link show up0'), /master tn00000004/);
  assert.match(sh(host, 'ip -br addr show tn00000001'), /10\.1\.0\.1\/24/);
  const states = Object.fromEntries(nets.list().map((n) => [n.name, n.dhcp]));
  assert.deepEqual(states, { net1: 'running', net2: 'running', net3: 'running', net4: 'none' });

  // Applying again changes nothing; new leases are a reload, a new shape a restart.
  const dns = dnsmasqPaths(path.join(stateDir, 'networks', specs[0].id));
  const pid = dnsmasqPid(dns);
  const tables = 'nft list table inet tern_tn00000001; nft list table bridge tern_tn00000001';
  const ruleset = sh(host, tables);
  await nets.apply(specs[0]);
  assert.equal(dnsmasqPid(dns), pid);
  assert.equal(sh(host, tables), ruleset);
  await nets.apply({ ...specs[0], leases: [testNic(1, 1), testNic(1, 2)] });
  assert.equal(dnsmasqPid(dns), pid);
  await nets.apply({ ...specs[0], leases: [testNic(1, 1), testNic(1, 2)], domain: 'other' });
  assert.notEqual(dnsmasqPid(dns), pid);

  // A dnsmasq that dies is started again.
  process.kill(dnsmasqPid(dns), 'SIGKILL');
  await until('dnsmasq restarted', () => dnsmasqPid(dns) !== 0);

  // A restarted agent realizes what it kept: the bridge someone removed comes back.
  await nets.close();
  sh(host, 'ip link del tn00000002 && nft delete table inet tern_tn00000002');
  nets = new KernelNetworks({ stateDir, log, netns: host, watchMs: 0 });
  await nets.reconcile();
  assert.deepEqual(
    nets.list().map((n) => [n.name, n.state]),
    specs.map((s) => [s.name, 'ready']),
  );
  assert.match(sh(host, 'ip -br addr show tn00000002'), /10\.2\.0\.1\/24/);
  assert.match(sh(host, 'nft list tables'), /table inet tern_tn00000002/);

  // A bad spec is refused before anything is touched; a bridge name that is not ours too.
  await assert.rejects(nets.apply(testSpec('nat', 5, { gateway: '10.9.9.1' })), /not a host address/);
  await assert.rejects(
    nets.apply(testSpec('nat', 5, { bridge: 'up1' })),
    /exists on this host and is not Tern's/,
  );
  // VLAN: refused here with the reason, kept as failed.
  const vlan = await nets.apply(testSpec('bridge', 6, { vlan: 10 }));
  assert.equal(vlan.state, 'failed');
  assert.match(vlan.reason ?? '', /802\.1Q/);

  for (const spec of [...specs, testSpec('bridge', 6)]) await nets.remove(spec.id);
  await nets.remove(specs[0].id);
  assert.deepEqual(footprint(host), before);
  assert.deepEqual(pids(host), []);
  assert.deepEqual(fs.readdirSync(path.join(stateDir, 'networks')), []);
});

test('a kept port is plugged again at start after a reboot: its tap on the bridge, its chains in place, up', async (t) => {
  const host = namespace('h');
  const before = footprint(host);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-net-'));
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const spec = testSpec('nat', 7, { leases: [testNic(7, 1)] });
  let nets = new KernelNetworks({ stateDir, log, netns: host, watchMs: 0 });
  t.after(() => nets.close());
  await nets.apply(spec);
  const vm = '00000000-0000-4000-8000-0000000000aa';
  const tap = await nets.plug({ network: spec.id, vm, ...testNic(7, 1), rules: null });
  const other = await nets.plug({ network: spec.id, vm, ...testNic(7, 2), rules: null });
  const plugged = (name: string) => {
    assert.match(sh(host, `ip link show ${name}`), new RegExp(`<[^>]*\\bUP\\b.*master ${spec.bridge}`));
    assert.match(
      sh(host, `nft list map bridge tern_${spec.bridge} out_ports`),
      new RegExp(`"${name}" : jump`),
    );
  };
  plugged(tap);

  // A reboot: interfaces, ruleset and dnsmasq gone; the kept files stay.
  await nets.close();
  process.kill(dnsmasqPid(dnsmasqPaths(path.join(stateDir, 'networks', spec.id))), 'SIGKILL');
  sh(host, `ip link del ${tap}; ip link del ${spec.bridge}; nft delete table bridge tern_${spec.bridge}`);
  assert.doesNotMatch(sh(host, `ip link show ${other}`), /master/);
  nets = new KernelNetworks({ stateDir, log, netns: host, watchMs: 0 });
  await nets.reconcile();
  assert.equal(nets.list()[0]?.state, 'ready');
  // Made again, and (the tap that stayed) put back on the bridge made again.
  plugged(tap);
  plugged(other);

  for (const p of nets.portsOf(vm)) await nets.unplug(p);
  await nets.remove(spec.id);
  assert.deepEqual(footprint(host), before);
});

test('ports plugged and unplugged together are done together, in the network link group; a bad port fails alone', async (t) => {
  const host = namespace('h');
  const before = footprint(host);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-net-'));
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const spec = testSpec('nat', 8);
  const nets = new KernelNetworks({ stateDir, log, netns: host, watchMs: 0 });
  t.after(() => nets.close());
  await nets.apply(spec);
  const group = JSON.parse(fs.readFileSync(path.join(stateDir, 'networks', spec.id, 'group.json'), 'utf8'));
  const vm = '00000000-0000-4000-8000-0000000000aa';
  // Asked at once, as by VMs starting together: they wait in the queue and go in one batch.
  const asked = Array.from({ length: 20 }, (_, i) =>
    nets.plug({ network: spec.id, vm, ...testNic(8, i + 1), rules: null }),
  );
  // A MAC nftables refuses fails its batch; the others are then plugged alone.
  const bad = nets.plug({ network: spec.id, vm, mac: 'zz:00', ip: '10.8.0.99', rules: null });
  const missing = nets.plug({
    network: '00000000-0000-4000-8000-00000000ffff',
    vm,
    ...testNic(8, 30),
    rules: null,
  });
  await assert.rejects(bad);
  await assert.rejects(missing, /not realized/);
  const taps = await Promise.all(asked);
  assert.equal(new Set(taps).size, 20);
  // `ip -j link show group` also answers an empty object per link without a name: left out.
  const members = () =>
    (
      JSON.parse(sh(host, `ip -j link show group ${group}`)) as {
        ifname?: string;
        flags: string[];
        master: string;
      }[]
    ).filter((l) => l.ifname);
  const inGroup = members();
  assert.deepEqual(inGroup.map((l) => l.ifname).sort(), [...taps].sort());
  for (const l of inGroup) {
    assert.equal(l.master, spec.bridge);
    assert.ok(l.flags.includes('UP'), l.ifname);
  }
  const chains = () =>
    sh(host, `nft list map bridge tern_${spec.bridge} out_ports`).match(/jump out_/g)?.length ?? 0;
  assert.equal(chains(), 20);

  // Half unplugged at once (one VM stopping of two): the other half stays as it was.
  await Promise.all([
    ...taps.slice(0, 10).map((tap) => nets.unplug(tap)),
    nets.unplug(taps[0]),
    nets.unplug('ttnotthere0'),
  ]);
  assert.deepEqual(
    members()
      .map((l) => l.ifname)
      .sort(),
    taps.slice(10).sort(),
  );
  assert.equal(chains(), 10);
  assert.equal(nets.list()[0]?.ports, 10);
  assert.equal(fs.readdirSync(path.join(stateDir, 'networks', spec.id, 'ports')).length, 10);
  await assert.rejects(nets.remove(spec.id), /10 VM NICs/);

  await Promise.all(taps.slice(10).map((tap) => nets.unplug(tap)));
  await nets.remove(spec.id);
  assert.deepEqual(footprint(host), before);
});
