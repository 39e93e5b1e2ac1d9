/**
 * Managed networks through the API and the CLI against simulated hosts: networks and security
 * groups as objects, NICs on VMs with addresses and MACs from the inventory (never two alike),
 * a network in use that cannot be deleted, and who may do what.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { MigrationPreview } from '../src/wire/cluster.ts';
import type { HostNetworkSpec, HostNetworkState, Network, SecurityGroup } from '../src/wire/network.ts';
import type { Task } from '../src/wire/task.ts';
import type { NicSpec, Vm } from '../src/wire/vm.ts';
import { runTern, type TestApi } from './harness.ts';
import { type SimCluster, startSimCluster, until } from './sim-harness.ts';

let cluster: SimCluster;
let api: TestApi;
const tern = (...args: string[]) => runTern(args, { env: api.cliEnv });

before(async () => {
  cluster = await startSimCluster(2);
  api = cluster.api;
});

after(async () => {
  await cluster?.close();
});

type Err = {
  status: number;
  body: { error?: { code: string; message: string; details?: Record<string, unknown> } };
};
async function refused(method: string, path: string, body: unknown, as = api): Promise<Err> {
  const r = (await as.raw(
    method,
    path,
    body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } },
  )) as Err;
  assert.ok(r.status >= 400, `${method} ${path} answered ${r.status}`);
  return r;
}

const managed = (n: NicSpec) => (n.network.mode === 'network' ? n.network : null);

async function createVm(body: Record<string, unknown>): Promise<{ task: Task; vm: Vm }> {
  const r = await api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', { template: 'sim', ...body });
  const t = await api.settle(r.task);
  assert.equal(t.state, 'succeeded', `${body.name}: ${JSON.stringify(t.error)}`);
  return r;
}

test('a network is made whole from a few words, listed, shown; bad ones are refused with the field named', async () => {
  const lab = await api.request<Network>('POST', '/api/v1/networks', {
    name: 'lab',
    type: 'overlay',
    subnet: '10.20.0.0/24',
    dhcp: { start: '10.20.0.200', end: '10.20.0.250' },
    domain: 'lab.internal',
  });
  assert.equal(lab.gateway, '10.20.0.1');
  assert.equal(lab.vni, 10000);
  assert.equal(lab.mtu, 1450);
  assert.equal(lab.bridge, `tn${lab.id.replaceAll('-', '').slice(0, 8)}`);
  assert.equal(lab.nics, 0);
  const list = await api.request<{ items: Network[] }>('GET', '/api/v1/networks');
  assert.deepEqual(
    list.items.map((n) => n.name),
    ['lab'],
  );

  for (const [body, status, field, message] of [
    [{ name: 'x', type: 'nat', subnet: '10.21.0.5/24' }, 400, 'subnet', /host bits set/],
    [{ name: 'x', type: 'nat', subnet: '10.21.0.0/24', uplink: 'eth0' }, 400, 'uplink', /no uplink/],
    [
      { name: 'x', type: 'nat', subnet: '10.21.0.0/24', gateway: '10.22.0.1' },
      400,
      'gateway',
      /no host address/,
    ],
    [
      { name: 'lab', type: 'nat', subnet: '10.21.0.0/24' },
      409,
      undefined,
      /a network with the name lab exists/,
    ],
    [{ name: 'x', type: 'overlay', subnet: '10.21.0.0/24', vni: 10000 }, 409, 'vni', /VNI 10000 is used/],
  ] as const) {
    const r = await refused('POST', '/api/v1/networks', body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.match(r.body.error?.message ?? '', message);
    if (field) assert.equal(r.body.error?.details?.field, field);
  }
  const bad = await refused('POST', '/api/v1/networks', { name: 'x', type: 'wifi', subnet: '10.21.0.0/24' });
  assert.equal(bad.status, 400, 'a type that does not exist is refused by the schema');
});

test('NICs on a network get addresses and MACs from the inventory, never two alike, and keep the network from going', async () => {
  const web = await api.request<SecurityGroup>('POST', '/api/v1/security-groups', {
    name: 'web',
    rules: [{ direction: 'in', protocol: 'tcp', ports: { from: 80, to: 80 } }],
  });
  assert.equal(web.inbound, 'deny');
  const a = await createVm({
    name: 'net-a',
    nics: [{ mode: 'network', network: 'lab', group: 'web' }, { mode: 'user' }],
  });
  const b = await createVm({ name: 'net-b', nics: [{ mode: 'network', network: 'lab', ip: '10.20.0.7' }] });
  const [nicA, userA] = a.vm.nics;
  const [nicB] = b.vm.nics;
  assert.deepEqual(managed(nicA!), {
    mode: 'network',
    network: (await api.request<Network>('GET', '/api/v1/networks/lab')).id,
    bridge: (await api.request<Network>('GET', '/api/v1/networks/lab')).bridge,
    ip: '10.20.0.2',
    rules: {
      inbound: 'deny',
      outbound: 'allow',
      rules: [{ direction: 'in', protocol: 'tcp', ports: { from: 80, to: 80 } }],
    },
  });
  assert.equal(managed(nicB!)?.ip, '10.20.0.7');
  assert.equal(managed(nicB!)?.rules, null, 'no group: anti-spoofing only');
  const macs = [nicA!.mac, userA!.mac, nicB!.mac];
  for (const mac of macs) assert.match(mac, /^02:74:6e:/);
  assert.equal(new Set(macs).size, 3);
  assert.equal((await api.request<Network>('GET', '/api/v1/networks/lab')).nics, 2);

  // Asked for what another has, or what the network cannot give: refused, nothing made.
  const inUse = await refused('POST', '/api/v1/vms', {
    name: 'net-c',
    template: 'sim',
    nics: [{ mode: 'network', network: 'lab', ip: '10.20.0.7' }],
  });
  assert.equal(inUse.status, 409);
  assert.match(inUse.body.error?.message ?? '', /NIC 0 on lab: 10.20.0.7 is in use/);
  const outside = await refused('POST', '/api/v1/vms', {
    name: 'net-c',
    template: 'sim',
    nics: [{ mode: 'network', network: 'lab', ip: '10.99.0.7' }],
  });
  assert.equal(outside.status, 400);
  assert.match(outside.body.error?.message ?? '', /not in the network's subnet 10.20.0.0\/24/);
  const sameMac = await refused('POST', '/api/v1/vms', {
    name: 'net-c',
    template: 'sim',
    nics: [{ mode: 'network', network: 'lab', mac: nicA!.mac.toUpperCase() }],
  });
  assert.equal(sameMac.status, 409);
  assert.match(sameMac.body.error?.message ?? '', /MAC .* is in use by another NIC/);
  const nowhere = await refused('POST', '/api/v1/vms', {
    name: 'net-c',
    template: 'sim',
    nics: [{ mode: 'network', network: 'nowhere' }],
  });
  assert.equal(nowhere.status, 404);
  const list = await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?name=net-c');
  assert.equal(list.items.length, 0);

  // In use: the network and the group stay, and say by whom.
  const del = await refused('DELETE', '/api/v1/networks/lab', undefined);
  assert.equal(del.status, 409);
  assert.match(del.body.error?.message ?? '', /network lab is in use by net-a, net-b/);
  const delGroup = await refused('DELETE', '/api/v1/security-groups/web', undefined);
  assert.equal(delGroup.status, 409);

  // A deleted VM frees its address: the next VM gets it again.
  assert.equal((await api.task('DELETE', '/api/v1/vms/net-a')).state, 'succeeded');
  const c = await createVm({ name: 'net-c', nics: [{ mode: 'network', network: 'lab' }] });
  assert.equal(managed(c.vm.nics[0]!)?.ip, '10.20.0.2');
  assert.notEqual(c.vm.nics[0]!.mac, nicA!.mac);
  for (const name of ['net-b', 'net-c'])
    assert.equal((await api.task('DELETE', `/api/v1/vms/${name}`)).state, 'succeeded');
  await api.request('DELETE', '/api/v1/security-groups/web');
  await api.request('DELETE', '/api/v1/networks/lab');
  assert.equal((await refused('GET', '/api/v1/networks/lab', undefined)).status, 404);
});

test('the CLI makes, lists and deletes networks and security groups, and puts a VM on one with --nic', async () => {
  const made = await tern(
    'network',
    'create',
    'cli-net',
    '--type',
    'nat',
    '--subnet',
    '10.30.0.0/24',
    '--dhcp',
    '10.30.0.100-10.30.0.150',
  );
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /^gateway: +10\.30\.0\.1$/m);
  assert.match(made.stdout, /^DHCP range: +10\.30\.0\.100-10\.30\.0\.150$/m);
  const group = await tern(
    'security-group',
    'create',
    'ssh',
    '--rule',
    'in tcp 22',
    '--rule',
    'in icmp 10.0.0.0/8',
  );
  assert.equal(group.code, 0, group.stderr);
  assert.match(group.stdout, /^rules: +in tcp 22; in icmp 10\.0\.0\.0\/8$/m);
  const vm = await tern(
    'vm',
    'create',
    'cli-vm',
    '--template',
    'sim',
    '--nic',
    'cli-net,ip=10.30.0.9,group=ssh',
  );
  assert.equal(vm.code, 0, vm.stderr);
  const v = await api.request<Vm>('GET', '/api/v1/vms/cli-vm');
  assert.equal(managed(v.nics[0]!)?.ip, '10.30.0.9');
  const show = await tern('vm', 'show', 'cli-vm');
  assert.match(show.stdout, new RegExp(`^nics: +${v.nics[0]!.mac} cli-net 10\\.30\\.0\\.9$`, 'm'));
  const list = await tern('network', 'list');
  assert.match(
    list.stdout,
    /^cli-net +nat +10\.30\.0\.0\/24 +10\.30\.0\.1 +10\.30\.0\.100-10\.30\.0\.150 +tn[0-9a-f]{8} +1$/m,
  );
  const refusedDelete = await tern('network', 'delete', 'cli-net');
  assert.equal(refusedDelete.code, 1);
  assert.match(refusedDelete.stderr, /network cli-net is in use by cli-vm/);
  assert.equal((await tern('vm', 'delete', 'cli-vm')).code, 0);
  const deleted = await tern('network', 'delete', 'cli-net');
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal((await tern('security-group', 'delete', 'ssh')).code, 0);
});

test('self-service users see networks and put their VMs on them, but do not make networks', async () => {
  await api.request('POST', '/api/v1/networks', {
    name: 'shared-net',
    type: 'isolated',
    subnet: '10.40.0.0/24',
  });
  await api.request('POST', '/api/v1/users', {
    name: 'netuser',
    password: 'netuser-password-1',
    role: 'user',
  });
  const t = await api.request<{ token: string }>('POST', '/api/v1/tokens', {
    name: 'netuser-token',
    user: 'netuser',
  });
  const user = api.as(t.token);
  await api.request('POST', '/api/v1/projects', { name: 'netproject' });
  await api.request('PUT', '/api/v1/projects/netproject/members/user/netuser');
  assert.equal((await user.request<{ items: Network[] }>('GET', '/api/v1/networks')).items.length, 1);
  const r = await refused(
    'POST',
    '/api/v1/networks',
    { name: 'mine', type: 'isolated', subnet: '10.41.0.0/24' },
    user,
  );
  assert.equal(r.status, 403);
  assert.match(r.body.error?.message ?? '', /network\.write/);
  const vm = await user.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
    name: 'user-vm',
    template: 'sim',
    nics: [{ mode: 'network', network: 'shared-net' }],
  });
  assert.equal((await api.settle(vm.task)).state, 'succeeded');
  assert.equal(managed(vm.vm.nics[0]!)?.ip, '10.40.0.2');
  assert.equal((await api.task('DELETE', '/api/v1/vms/user-vm')).state, 'succeeded');
  await api.request('DELETE', '/api/v1/networks/shared-net');
});

type HostStates = { items: { host: string; state: HostNetworkState | null }[] };
const hostStates = (network: string) => api.request<HostStates>('GET', `/api/v1/networks/${network}/hosts`);

/** Waits (bounded) until every host has said something of the network, and gives what they said. */
const realized = (network: string) =>
  until(`network ${network} reported by every host`, 10_000, async () => {
    const s = await hostStates(network);
    return s.items.every((h) => h.state !== null) ? s : undefined;
  });

test('every host realizes a network; a host that cannot is left out of placement with its reason; deleting it tears it down everywhere', async () => {
  const [h1, h2] = cluster.sim.hosts.map((h) => h.name) as [string, string];
  const good = cluster.sim.host(h1).driver.networks;
  const goodApply = good.apply.bind(good);
  let leases: HostNetworkSpec['leases'] = [];
  good.apply = async (spec) => {
    if (spec.name === 'place-net') leases = spec.leases;
    return goodApply(spec);
  };
  // What the host had been told when each VM's QEMU was asked to start.
  const leasesAtStart = new Map<string, HostNetworkSpec['leases']>();
  const driver = cluster.sim.host(h1).driver;
  const run = driver.run.bind(driver);
  driver.run = async (spec) => {
    leasesAtStart.set(spec.name, leases);
    return run(spec);
  };
  const broken = cluster.sim.host(h2).driver.networks;
  const apply = broken.apply.bind(broken);
  broken.apply = async (spec) => {
    if (spec.name === 'place-net') throw new Error('the bridge name is taken by another interface');
    return apply(spec);
  };
  try {
    const net = await api.request<Network>('POST', '/api/v1/networks', {
      name: 'place-net',
      type: 'nat',
      subnet: '10.50.0.0/24',
    });
    const states = await realized('place-net');
    const by = new Map(states.items.map((h) => [h.host, h.state!]));
    assert.equal(by.get(h1)?.state, 'ready');
    assert.equal(by.get(h2)?.state, 'failed');
    assert.match(by.get(h2)?.reason ?? '', /could not realize it: .*bridge name is taken/);
    assert.equal(
      cluster.sim
        .host(h1)
        .driver.networks.list()
        .find((n) => n.id === net.id)?.bridge,
      net.bridge,
    );

    // Every VM on it goes to the one host that has it, and stays off the other.
    const made: Vm[] = [];
    for (const name of ['pl-1', 'pl-2', 'pl-3']) {
      made.push(
        (await createVm({ name, start: true, nics: [{ mode: 'network', network: 'place-net' }] })).vm,
      );
    }
    for (const v of made) assert.equal((await api.request<Vm>('GET', `/api/v1/vms/${v.name}`)).host, h1);
    const preview = await api.request<MigrationPreview>('POST', '/api/v1/vms/pl-1/migrate/preview', {
      to: h2,
    });
    const verdict = preview.placement.verdicts.find((v) => v.host === h2);
    assert.equal(verdict?.filter, 'network');
    assert.match(verdict?.reason ?? '', /lacks network place-net: the host could not realize it/);
    const moved = await refused('POST', '/api/v1/vms/pl-1/migrate', { to: h2 });
    assert.equal(moved.status, 409);
    const explain = await tern(
      'vm',
      'create',
      'pl-4',
      '--template',
      'sim',
      '--nic',
      'place-net',
      '--explain',
    );
    assert.equal(explain.code, 0, explain.stderr);
    assert.match(explain.stdout, new RegExp(`${h2}.*lacks network place-net`));
    // Each VM's host knew its MAC, address and name before it started (DHCP and DNS).
    for (const v of made) {
      const nic = managed(v.nics[0]!)!;
      assert.deepEqual(
        leasesAtStart.get(v.name)?.find((l) => l.mac === v.nics[0]!.mac),
        { mac: v.nics[0]!.mac, ip: nic.ip, hostname: v.name },
      );
    }
    for (const name of ['pl-1', 'pl-2', 'pl-3']) {
      const t = await api.task('DELETE', `/api/v1/vms/${name}?force=true`);
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    }
  } finally {
    broken.apply = apply;
    good.apply = goodApply;
    driver.run = run;
  }
  await api.request('DELETE', '/api/v1/networks/place-net');
  await until('place-net gone from every host', 10_000, async () =>
    cluster.sim.hosts.every(
      (h) =>
        !cluster.sim
          .host(h.name)
          .driver.networks.list()
          .some((n) => n.name === 'place-net'),
    )
      ? true
      : undefined,
  );
});

test('VMs made at the same time on one network each get an address of their own', async () => {
  await api.request('POST', '/api/v1/networks', { name: 'busy', type: 'isolated', subnet: '10.60.0.0/24' });
  const names = Array.from({ length: 12 }, (_, i) => `busy-${i + 1}`);
  const answers = await Promise.all(
    names.map((name) =>
      api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
        name,
        template: 'sim',
        nics: [{ mode: 'network', network: 'busy' }],
      }),
    ),
  );
  for (const a of answers) assert.equal((await api.settle(a.task)).state, 'succeeded');
  const ips = answers.map((a) => managed(a.vm.nics[0]!)?.ip);
  assert.equal(new Set(ips).size, names.length, ips.join(' '));
  for (const name of names)
    assert.equal((await api.task('DELETE', `/api/v1/vms/${name}`)).state, 'succeeded');
  await api.request('DELETE', '/api/v1/networks/busy');
});

test('tern vm nic adds a NIC on a network to a stopped VM, sets its link and removes it, freeing its address', async () => {
  await api.request('POST', '/api/v1/networks', { name: 'nicnet', type: 'nat', subnet: '10.70.0.0/24' });
  await createVm({ name: 'nic-vm' });
  const add = await tern('vm', 'nic', 'add', 'nic-vm', 'nicnet,ip=10.70.0.40');
  assert.equal(add.code, 0, add.stderr);
  const v = await api.request<Vm>('GET', '/api/v1/vms/nic-vm');
  assert.equal(v.nics.length, 2);
  const mac = v.nics[1]!.mac;
  assert.equal(managed(v.nics[1]!)?.ip, '10.70.0.40');
  const link = await tern('vm', 'nic', 'link', 'nic-vm', mac, 'down');
  assert.equal(link.code, 0, link.stderr);
  const list = await tern('vm', 'nic', 'list', 'nic-vm');
  assert.match(list.stdout, new RegExp(`^${mac} +nicnet +10\\.70\\.0\\.40 +down$`, 'm'));
  const taken = await tern('vm', 'nic', 'add', 'nic-vm', 'nicnet,ip=10.70.0.40');
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /10\.70\.0\.40 is in use/);
  const outside = await refused('POST', '/api/v1/vms/nic-vm/nics', {
    mode: 'network',
    network: 'nicnet',
    ip: '10.71.0.1',
  });
  assert.equal(outside.status, 400, 'refused when asked, before any task');
  assert.match(outside.body.error?.message ?? '', /not in the network's subnet/);
  assert.equal((await api.request<Network>('GET', '/api/v1/networks/nicnet')).nics, 1);
  const remove = await tern('vm', 'nic', 'remove', 'nic-vm', mac);
  assert.equal(remove.code, 0, remove.stderr);
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/nic-vm')).nics.length, 1);
  assert.equal((await api.request<Network>('GET', '/api/v1/networks/nicnet')).nics, 0);
  assert.equal((await api.task('DELETE', '/api/v1/vms/nic-vm')).state, 'succeeded');
  await api.request('DELETE', '/api/v1/networks/nicnet');
});

test('a VM on a network migrates only where the network is ready, and keeps its MAC and address', async () => {
  const [h1, h2] = cluster.sim.hosts.map((h) => h.name) as [string, string];
  await api.request('POST', '/api/v1/networks', {
    name: 'move-net',
    type: 'overlay',
    subnet: '10.80.0.0/24',
  });
  const { vm } = await createVm({
    name: 'mover',
    start: true,
    nics: [{ mode: 'network', network: 'move-net' }],
  });
  const from = (await api.request<Vm>('GET', '/api/v1/vms/mover')).host!;
  const to = from === h1 ? h2 : h1;
  const t = await api.task('POST', '/api/v1/vms/mover/migrate', { to });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const moved = await api.request<Vm>('GET', '/api/v1/vms/mover');
  assert.equal(moved.host, to);
  assert.equal(moved.nics[0]!.mac, vm.nics[0]!.mac);
  assert.deepEqual(moved.nics[0]!.network, vm.nics[0]!.network);
  assert.equal((await api.task('DELETE', '/api/v1/vms/mover?force=true')).state, 'succeeded');
  await api.request('DELETE', '/api/v1/networks/move-net');
});

test('a security group change reaches running VMs without a restart: its own NICs, NICs whose rules name it, and a host that missed it once it is back', async () => {
  await api.request('POST', '/api/v1/networks', { name: 'sg-net', type: 'isolated', subnet: '10.90.0.0/24' });
  await api.request('POST', '/api/v1/security-groups', { name: 'sg-db', rules: [] });
  await api.request('POST', '/api/v1/security-groups', {
    name: 'sg-app',
    rules: [{ direction: 'in', protocol: 'tcp', ports: { from: 22, to: 22 } }],
  });
  const app = await createVm({
    name: 'sg-app-vm',
    start: true,
    nics: [{ mode: 'network', network: 'sg-net', group: 'sg-app', ip: '10.90.0.10' }],
  });
  const mac = app.vm.nics[0]!.mac;
  /** The rules of the app VM's NIC as its host runs it, and as the inventory records them. */
  const rulesOnHost = async () => {
    const v = await api.request<Vm>('GET', '/api/v1/vms/sg-app-vm');
    const spec = cluster.sim.host(v.host!).driver.spec(v.id);
    return spec ? managed(spec.nics.find((n) => n.mac === mac)!)?.rules : undefined;
  };
  const rulesInInventory = async () =>
    managed((await api.request<Vm>('GET', '/api/v1/vms/sg-app-vm')).nics[0]!)?.rules;
  const reaches = (what: string, want: unknown) =>
    until(what, 15_000, async () => {
      const [host, inv] = [await rulesOnHost(), await rulesInInventory()];
      return (
        (JSON.stringify(host) === JSON.stringify(want) && JSON.stringify(inv) === JSON.stringify(want)) ||
        undefined
      );
    });
  const pidOf = async () => {
    const v = await api.request<Vm>('GET', '/api/v1/vms/sg-app-vm');
    return cluster.sim.host(v.host!).driver.get(v.id)?.pid;
  };
  const pid = await pidOf();

  // The group's own rules change.
  await api.request('PATCH', '/api/v1/security-groups/sg-app', {
    rules: [{ direction: 'in', protocol: 'tcp', ports: { from: 443, to: 443 } }],
  });
  await reaches('the new rule on the running port', {
    inbound: 'deny',
    outbound: 'allow',
    rules: [{ direction: 'in', protocol: 'tcp', ports: { from: 443, to: 443 } }],
  });

  // A rule naming another group reaches that group's NICs: one that joins (a VM made in it) is let in.
  await api.request('PATCH', '/api/v1/security-groups/sg-app', {
    rules: [{ direction: 'in', protocol: 'any', peer: { group: 'sg-db' } }],
  });
  await reaches('a rule naming an empty group allows nothing', {
    inbound: 'deny',
    outbound: 'allow',
    rules: [],
  });
  await createVm({
    name: 'sg-db-vm',
    nics: [{ mode: 'network', network: 'sg-net', group: 'sg-db', ip: '10.90.0.20' }],
  });
  await reaches('the peer group member let in', {
    inbound: 'deny',
    outbound: 'allow',
    rules: [{ direction: 'in', protocol: 'any', peers: ['10.90.0.20/32'] }],
  });

  // A host that cannot be reached misses the change: the inventory keeps what the host has, and
  // the host gets it once it is back.
  const host = cluster.sim.host((await api.request<Vm>('GET', '/api/v1/vms/sg-app-vm')).host!);
  host.driver.faults.setReachable(false);
  await api.request('PATCH', '/api/v1/security-groups/sg-app', { inbound: 'allow' });
  const missed = {
    inbound: 'deny',
    outbound: 'allow',
    rules: [{ direction: 'in', protocol: 'any', peers: ['10.90.0.20/32'] }],
  };
  assert.deepEqual(await rulesInInventory(), missed, 'not recorded before the host took it');
  host.driver.faults.setReachable(true);
  await reaches('the missed change once the host is back', { ...missed, inbound: 'allow' });
  assert.equal(await pidOf(), pid, 'the VM was not restarted');

  for (const name of ['sg-app-vm', 'sg-db-vm'])
    assert.equal((await api.task('DELETE', `/api/v1/vms/${name}?force=true`)).state, 'succeeded');
});

test("a simulated host's ports follow its VMs: plugged at start and hot-plug, moved by a migration, gone at stop", async () => {
  const [h1, h2] = cluster.sim.hosts.map((h) => h.name) as [string, string];
  const net = await api.request<Network>('POST', '/api/v1/networks', {
    name: 'port-net',
    type: 'isolated',
    subnet: '10.91.0.0/24',
  });
  const ports = () =>
    Object.fromEntries(
      cluster.sim.hosts.map((h) => [
        h.name,
        h.driver.networks.list().find((n) => n.id === net.id)?.ports ?? 0,
      ]),
    );
  const expect = (want: Record<string, number>) =>
    until(
      `ports ${JSON.stringify(want)}`,
      15_000,
      async () => JSON.stringify(ports()) === JSON.stringify(want) || undefined,
    ).catch(() => assert.deepEqual(ports(), want));
  await createVm({ name: 'porter', start: true, nics: [{ mode: 'network', network: 'port-net' }] });
  const from = (await api.request<Vm>('GET', '/api/v1/vms/porter')).host!;
  const to = from === h1 ? h2 : h1;
  await expect({ [h1]: from === h1 ? 1 : 0, [h2]: from === h2 ? 1 : 0 });

  const added = await api.task('POST', '/api/v1/vms/porter/nics', { mode: 'network', network: 'port-net' });
  assert.equal(added.state, 'succeeded', JSON.stringify(added.error));
  await expect({ [h1]: from === h1 ? 2 : 0, [h2]: from === h2 ? 2 : 0 });

  const moved = await api.task('POST', '/api/v1/vms/porter/migrate', { to });
  assert.equal(moved.state, 'succeeded', JSON.stringify(moved.error));
  await expect({ [h1]: to === h1 ? 2 : 0, [h2]: to === h2 ? 2 : 0 });

  assert.equal((await api.task('POST', '/api/v1/vms/porter/stop')).state, 'succeeded');
  await expect({ [h1]: 0, [h2]: 0 });
  assert.equal((await api.task('DELETE', '/api/v1/vms/porter?force=true')).state, 'succeeded');
  await api.request('DELETE', '/api/v1/networks/port-net');
});
