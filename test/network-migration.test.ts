/**
 * The whole path of an overlay network with real parts: two hosts, each its own network
 * namespace joined to the other only through the machine's bridge, realize one overlay network
 * (a bridge and a VXLAN device each, the gateway the same on both); a tiny guest on each host
 * gets its inventory address, and they reach each other by name across the tunnel, also after
 * one of them moved to the other host by live migration, keeping its MAC and address.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import type { GuestExecResult } from '../src/wire/guest-command.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, startCluster } from './harness.ts';

let c: Cluster;
const answering = (v: Vm) => v.state === 'running' && v.guest.agent === 'responding';

before(async () => {
  c = await startCluster('network-migration', { hosts: ['na', 'nb'], shared: true, isolated: true });
  await c.api.request('POST', '/api/v1/networks', {
    name: 'span',
    type: 'overlay',
    subnet: '10.211.0.0/24',
    domain: 'span.internal',
  });
  await c.api.request('POST', '/api/v1/placement-groups', { name: 'span-apart', kind: 'anti-affinity' });
  for (const name of ['s1', 's2']) {
    const t = await c.api.task('POST', '/api/v1/vms', {
      name,
      template: 'tiny',
      start: true,
      groups: ['span-apart'],
      nics: [{ mode: 'network', network: 'span' }],
    });
    assert.equal(t.state, 'succeeded', `${name}: ${JSON.stringify(t.error)}`);
  }
  for (const name of ['s1', 's2']) await c.api.waitVm(name, answering, 180_000, `${name} up`);
});
after(async () => {
  await c?.stop();
});

async function sh(vm: string, script: string): Promise<{ code: number; out: string }> {
  const r = await c.api.request<GuestExecResult>('POST', `/api/v1/vms/${vm}/exec`, {
    command: ['sh', '-c', script],
    timeoutSeconds: 20,
  });
  return { code: r.exitCode ?? -1, out: Buffer.from(r.stdout, 'base64').toString('utf8') };
}

/** Pings `target` from `vm`, a few tries (ARP across the tunnel and the first DNS answer take a moment). */
const ping = (vm: string, target: string) =>
  sh(vm, `for i in 1 2 3 4 5 6 7 8; do ping -c 1 -W 1 ${target} >/dev/null && exit 0; done; exit 1`);

/** The ports (taps named by the agent) on host `name`. */
function taps(name: string | null): string[] {
  const h = c.hosts.find((x) => x.name === name);
  assert.ok(h?.isolation, `host ${name}`);
  return execFileSync('ip', ['netns', 'exec', h.isolation.ns, 'ip', '-br', 'link'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(/\s+/)[0].split('@')[0])
    .filter((n) => /^tt[0-9a-f]{12}$/.test(n));
}

const vm = (name: string) => c.api.request<Vm>('GET', `/api/v1/vms/${name}`);

test('two guests on an overlay on two hosts reach each other by name, also after a live migration', async () => {
  const [s1, s2] = [await vm('s1'), await vm('s2')];
  assert.notEqual(s1.host, s2.host, 'one guest on each host');
  for (const v of [s1, s2]) {
    const n = v.nics[0]!.network;
    assert.equal(n.mode, 'network');
    const ip = n.mode === 'network' ? n.ip! : '';
    const link = await sh(v.name, 'ip -4 -o addr show dev eth0');
    assert.match(link.out, new RegExp(`inet ${ip.replaceAll('.', '\\.')}/24`), `${v.name}: ${link.out}`);
    // DHCP, answered by the guest's own host (never across the tunnel), offers the same address.
    const dhcp = await sh(
      v.name,
      `printf '#!/bin/sh\\n[ "$1" = bound ] && echo "lease=$ip"\\nexit 0\\n' >/tmp/lease.sh && chmod +x /tmp/lease.sh && udhcpc -i eth0 -n -q -t 5 -T 1 -s /tmp/lease.sh`,
    );
    assert.match(dhcp.out, new RegExp(`^lease=${ip.replaceAll('.', '\\.')}$`, 'm'), `${v.name}: ${dhcp.out}`);
  }
  assert.equal(taps(s1.host).length, 1);
  assert.equal(taps(s2.host).length, 1);
  assert.equal((await ping('s1', 's2')).code, 0, 's1 reaches s2 by name across the tunnel');
  assert.equal((await ping('s2', 's1.span.internal')).code, 0, 's2 reaches s1 by its full name');

  // The group only kept them apart at creation; s2 now joins s1's host.
  await c.api.request('DELETE', '/api/v1/placement-groups/span-apart');
  const t = await c.api.task('POST', '/api/v1/vms/s2/migrate', { to: s1.host });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const moved = await vm('s2');
  assert.equal(moved.host, s1.host);
  assert.equal(moved.nics[0]!.mac, s2.nics[0]!.mac);
  assert.deepEqual(moved.nics[0]!.network, s2.nics[0]!.network, 'same address, same network');
  assert.equal((await ping('s1', 's2')).code, 0, 's1 reaches s2 on the same host now');
  assert.equal((await ping('s2', 's1')).code, 0);
  // The target plugged its port before its QEMU started; the source's went with the QEMU it released.
  assert.equal(taps(s1.host).length, 2);
  const deadline = Date.now() + 15_000;
  while (taps(s2.host).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(taps(s2.host), [], 'no port left where s2 was');
});
