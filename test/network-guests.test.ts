/**
 * Real guests on a managed network: the host plugs each NIC's port (a tap of the agent's, on
 * the network's bridge, its rules applied) before QEMU starts, QEMU opens it, the guests get
 * their inventory addresses (also by DHCP) and reach each other by name; ports stay while QEMU
 * runs across an agent restart and go when it ends, whoever ended it; a security group's change
 * reaches a running guest's port at once. The host is a network
 * namespace (isolated cluster), removed at the end with everything in it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { GuestExecResult } from '../src/wire/guest-command.ts';
import type { Network } from '../src/wire/network.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuPids, startCluster } from './harness.ts';

let c: Cluster;
let lab: Network;
const answering = (v: Vm) => v.state === 'running' && v.guest.agent === 'responding';

before(async () => {
  c = await startCluster('network-guests', { isolated: true });
  lab = await c.api.request<Network>('POST', '/api/v1/networks', {
    name: 'lab',
    type: 'isolated',
    subnet: '10.77.0.0/24',
    domain: 'lab.internal',
  });
  // g2's NIC is in a group that lets everything in until the last test changes it.
  await c.api.request('POST', '/api/v1/security-groups', { name: 'g2-in', inbound: 'allow' });
  for (const name of ['g1', 'g2']) {
    const t = await c.api.task('POST', '/api/v1/vms', {
      name,
      template: 'tiny',
      start: true,
      nics: [{ mode: 'network', network: 'lab', ...(name === 'g2' ? { group: 'g2-in' } : {}) }],
    });
    assert.equal(t.state, 'succeeded', `${name}: ${JSON.stringify(t.error)}`);
  }
  for (const name of ['g1', 'g2']) await c.api.waitVm(name, answering, 120_000, `${name} up`);
});
after(async () => {
  await c?.stop();
});

const host = () => c.hosts[0];
/** The ports (taps named by the agent) on the host. */
const taps = (): string[] =>
  execFileSync('ip', ['netns', 'exec', host().isolation!.ns, 'ip', '-br', 'link'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(/\s+/)[0].split('@')[0])
    .filter((n) => /^tt[0-9a-f]{12}$/.test(n));

async function sh(vm: string, script: string): Promise<{ code: number; out: string; err: string }> {
  const r = await c.api.request<GuestExecResult>('POST', `/api/v1/vms/${vm}/exec`, {
    command: ['sh', '-c', script],
    timeoutSeconds: 20,
  });
  return {
    code: r.exitCode ?? -1,
    out: Buffer.from(r.stdout, 'base64').toString('utf8'),
    err: Buffer.from(r.stderr, 'base64').toString('utf8'),
  };
}

const addressOf = async (name: string) => {
  const vm = await c.api.request<Vm>('GET', `/api/v1/vms/${name}`);
  const n = vm.nics[0].network;
  assert.equal(n.mode, 'network');
  return { mac: vm.nics[0].mac, ip: n.mode === 'network' ? n.ip! : '' };
};

/** Asks DHCP on `ifc` of `vm` (bringing it up) and prints the address offered, configuring nothing. */
const lease = (vm: string, ifc: string) =>
  sh(
    vm,
    `printf '#!/bin/sh\\n[ "$1" = bound ] && echo "lease=$ip"\\nexit 0\\n' >/tmp/lease.sh && chmod +x /tmp/lease.sh && ip link set ${ifc} up && udhcpc -i ${ifc} -n -q -t 5 -T 1 -s /tmp/lease.sh`,
  );

/** Pings `target` from `vm`, a few tries (ARP and the first DNS answer take a moment). */
const ping = (vm: string, target: string) =>
  sh(vm, `for i in 1 2 3 4 5; do ping -c 1 -W 1 ${target} >/dev/null && exit 0; done; exit 1`);

test('two guests on a managed network have their inventory addresses, by DHCP too, and reach each other by name', async () => {
  assert.equal(taps().length, 2, 'one port per NIC');
  for (const name of ['g1', 'g2']) {
    const { mac, ip } = await addressOf(name);
    const link = await sh(name, 'cat /sys/class/net/eth0/address; ip -4 -o addr show dev eth0');
    assert.ok(link.out.startsWith(`${mac}\n`), `${name}: ${link.out}`);
    assert.match(link.out, new RegExp(`inet ${ip.replaceAll('.', '\\.')}/24`));
    // The guest took its address from cloud-init's network-config; DHCP through the same tap
    // and port rules offers it the very same one.
    const dhcp = await lease(name, 'eth0');
    assert.match(dhcp.out, new RegExp(`^lease=${ip.replaceAll('.', '\\.')}$`, 'm'), `${name}: ${dhcp.out}`);
  }
  assert.equal((await ping('g1', 'g2')).code, 0, 'g1 reaches g2 by name');
  assert.equal((await ping('g2', 'g1.lab.internal')).code, 0, 'g2 reaches g1 by its full name');
});

test('ports stay while QEMU runs across an agent restart; a QEMU that ended while no agent ran loses its port', async () => {
  const before = taps().sort();
  await host().agent.kill();
  await host().start();
  await c.api.waitVm('g1', answering, 60_000, 'g1 followed again');
  assert.deepEqual(taps().sort(), before, 'the running VMs kept their ports');
  assert.equal((await ping('g1', 'g2')).code, 0);

  const g2 = await c.api.request<Vm>('GET', '/api/v1/vms/g2');
  await host().agent.kill();
  for (const pid of qemuPids(g2.id)) process.kill(pid, 'SIGKILL');
  await host().start();
  await c.api.waitVm('g2', (v) => v.state === 'crashed', 60_000, 'g2 seen crashed');
  const deadline = Date.now() + 15_000;
  while (taps().length !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(taps().length, 1, "the crashed VM's port is gone, the running one's stays");
});

test('a stopped VM leaves no port; a link set down is down when it starts again', async () => {
  const { mac } = await addressOf('g1');
  let t = await c.api.task('POST', '/api/v1/vms/g1/stop', {});
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const deadline = Date.now() + 15_000;
  while (taps().length !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(taps(), [], 'no port left');

  t = await c.api.task('PUT', `/api/v1/vms/g1/nics/${mac}/link`, { link: 'down' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  t = await c.api.task('POST', '/api/v1/vms/g1/start', {});
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('g1', answering, 120_000, 'g1 up again');
  assert.equal(taps().length, 1);
  assert.equal((await sh('g1', 'cat /sys/class/net/eth0/carrier')).out.trim(), '0', 'no carrier');
});

test('a running guest: its link goes down and up again, and a NIC is plugged in (with its lease) and out', async () => {
  // g1's link was left down by the test before; g2 was left crashed.
  let t = await c.api.task('POST', '/api/v1/vms/g2/start', {});
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('g2', answering, 120_000, 'g2 up again');
  const g1 = await addressOf('g1');
  const link = async (up: 'up' | 'down') => {
    const r = await c.api.task('PUT', `/api/v1/vms/g1/nics/${g1.mac}/link`, { link: up });
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
  };
  await link('up');
  assert.equal((await ping('g1', 'g2')).code, 0, 'the link up: g1 reaches g2');
  await link('down');
  assert.notEqual((await sh('g1', 'ping -c 2 -W 1 g2 >/dev/null')).code, 0, 'the link down: it does not');
  await link('up');
  assert.equal((await ping('g1', 'g2')).code, 0, 'up again: it does');

  const ports = taps().length;
  t = await c.api.task('POST', '/api/v1/vms/g2/nics', { mode: 'network', network: 'lab' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const added = t.result as { mac: string; ip: string };
  assert.equal(taps().length, ports + 1, 'its port is plugged');
  const seen = await sh(
    'g2',
    `for i in $(seq 50); do for n in /sys/class/net/*; do [ "$(cat $n/address)" = ${added.mac} ] && echo \${n##*/} && exit 0; done; sleep 0.2; done; exit 1`,
  );
  assert.equal(seen.code, 0, 'the guest sees the NIC');
  const ifc = seen.out.trim();
  // Its lease reaches the host's DHCP through the network's next push (it is not the plug's).
  const leases = path.join(host().stateDir, 'networks', lab.id, 'dnsmasq.dhcp-hosts');
  const deadline = Date.now() + 15_000;
  while (!fs.readFileSync(leases, 'utf8').includes(added.mac) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  assert.ok(fs.readFileSync(leases, 'utf8').includes(added.mac), 'the host has its lease');
  const got = await lease('g2', ifc);
  assert.match(got.out, new RegExp(`^lease=${added.ip.replaceAll('.', '\\.')}$`, 'm'), got.err);

  t = await c.api.task('DELETE', `/api/v1/vms/g2/nics/${added.mac}`);
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.equal(taps().length, ports, 'its port is gone');
  const gone = await sh('g2', `[ ! -e /sys/class/net/${ifc} ]`);
  assert.equal(gone.code, 0, 'the guest let go of it');
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/g2');
  assert.equal(vm.nics.length, 1);
});

test("a security group's change reaches a running guest's port at once: a ping blocked, then let in again, no restart", async () => {
  const { ip } = await addressOf('g2');
  const boot = (await c.api.request<Vm>('GET', '/api/v1/vms/g2')).guest.bootId;
  assert.equal((await ping('g1', ip)).code, 0, 'everything let in: g1 reaches g2');

  await c.api.request('PATCH', '/api/v1/security-groups/g2-in', { inbound: 'deny' });
  let blocked = false;
  for (const deadline = Date.now() + 20_000; !blocked && Date.now() < deadline; )
    blocked = (await sh('g1', `ping -c 1 -W 1 ${ip} >/dev/null`)).code !== 0;
  assert.ok(blocked, 'inbound denied: the ping does not reach g2');

  await c.api.request('PATCH', '/api/v1/security-groups/g2-in', {
    rules: [{ direction: 'in', protocol: 'icmp' }],
  });
  assert.equal((await ping('g1', ip)).code, 0, 'ICMP let in: g1 reaches g2 again');
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/g2')).guest.bootId, boot, 'g2 was not restarted');
});
