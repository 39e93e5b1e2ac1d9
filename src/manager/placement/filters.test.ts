import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuModel } from './cpu-models.ts';
import { demandOf, firstRejection, rejectionReason } from './filters.ts';
import { placementHost, vmDemand } from './fixtures.ts';
import { defaultPolicy, type PlacementHost, type VmDemand } from './model.ts';

const GiB = 1024 ** 3;
const intel = (model: string) => ({ vendor: 'GenuineIntel', model, flags: [...cpuModel(model)!.flags] });

const host = (name: string, over: Partial<PlacementHost> = {}): PlacementHost =>
  placementHost(name, {
    id: `id-${name}`,
    cpu: intel('Cascadelake-Server-noTSX'),
    pools: [
      { name: 'shared', shared: true, freeBytes: 1000 * GiB },
      { name: 'local', shared: false, freeBytes: 100 * GiB },
    ],
    ...over,
  });

const vm = (over: Partial<VmDemand> = {}): VmDemand => vmDemand({ pools: ['shared'], ...over });

const verdict = (hosts: PlacementHost[], h: PlacementHost, v: VmDemand, policy = defaultPolicy) => {
  const d = demandOf(hosts, v, policy);
  const filter = firstRejection(h, d);
  return filter === null ? null : { filter, reason: rejectionReason(h, d, filter) };
};

test('an online host with room passes every filter', () => {
  const h = host('a');
  assert.equal(verdict([h], h, vm()), null);
});

test('state: offline and maintenance hosts are rejected with their state', () => {
  for (const state of ['offline', 'maintenance'] as const) {
    const h = host('a', { state });
    assert.deepEqual(verdict([h], h, vm()), {
      filter: 'state',
      reason: `host is ${state}; only online hosts take VMs`,
    });
  }
});

test('exclude: the source host of a migration is never chosen', () => {
  const h = host('a');
  assert.equal(verdict([h], h, vm({ exclude: ['id-a'] }))?.filter, 'exclude');
  assert.equal(verdict([h], h, vm({ exclude: ['id-b'] })), null);
});

test('capacity: vCPUs against cores × overcommit, naming the numbers', () => {
  const h = host('a', { allocated: { vcpus: 31, memoryMiB: 0 } });
  assert.deepEqual(verdict([h], h, vm()), {
    filter: 'capacity',
    reason: 'needs 2 vCPUs, 1 free of 8 cores × 4.0',
  });
  assert.equal(verdict([h], h, vm({ vcpus: 1 })), null);
});

test('capacity: memory against memory × overcommit', () => {
  const h = host('a', { allocated: { vcpus: 0, memoryMiB: 7168 } });
  assert.deepEqual(verdict([h], h, vm({ memoryMiB: 4096 })), {
    filter: 'capacity',
    reason: 'needs 4096 MiB, 1024 MiB free of 8192 × 1.0',
  });
  const generous = { ...defaultPolicy, memoryOvercommit: 1.5 };
  assert.equal(verdict([h], h, vm({ memoryMiB: 4096 }), generous), null);
});

test('capacity: new disk bytes against the free bytes of pools[0] on that host', () => {
  const h = host('a');
  const v = vm({ pools: ['local', 'shared'], diskBytes: 200 * GiB });
  assert.deepEqual(verdict([h], h, v), {
    filter: 'capacity',
    reason: 'needs 200.0 GiB in pool local, 100.0 GiB free × 1.0',
  });
  assert.equal(verdict([h], h, { ...v, diskBytes: 50 * GiB }), null);
  // Thin promises, as far as the operator allows them.
  assert.equal(verdict([h], h, v, { ...defaultPolicy, storageOvercommit: 2 }), null);
  assert.equal(
    verdict([h], h, { ...v, diskBytes: 201 * GiB }, { ...defaultPolicy, storageOvercommit: 2 })?.filter,
    'capacity',
  );
});

test('storage: the host must see every pool of the VM', () => {
  const h = host('a');
  assert.deepEqual(verdict([h], h, vm({ pools: ['shared', 'san-2', 'nfs'] })), {
    filter: 'storage',
    reason: 'cannot see pools san-2, nfs',
  });
});

test('cpu compat: the host must run the named model; the reason lists the missing flags', () => {
  const old = host('old', { cpu: intel('Broadwell-noTSX') });
  const r = verdict([old], old, vm({ cpu: { mode: 'compat', model: 'Skylake-Client-noTSX-IBRS' } }));
  assert.deepEqual(r, {
    filter: 'cpu',
    reason: 'cannot run CPU model Skylake-Client-noTSX-IBRS: missing xsavec, xgetbv1, ibrs',
  });
  assert.equal(verdict([old], old, vm({ cpu: { mode: 'compat', model: 'Haswell-noTSX' } })), null);
  const amd = host('amd', {
    cpu: { vendor: 'AuthenticAMD', model: 'EPYC', flags: [...cpuModel('EPYC-Milan')!.flags] },
  });
  assert.match(
    verdict([amd], amd, vm({ cpu: { mode: 'compat', model: 'Haswell-noTSX' } }))!.reason,
    /vendor GenuineIntel \(host is AuthenticAMD\)/,
  );
});

test('cpu host: with sameAs only an identical CPU passes, and the reason says what differs', () => {
  const a = host('a');
  const same = { ...intel('Cascadelake-Server-noTSX') };
  assert.equal(verdict([a], a, vm({ cpu: { mode: 'host', sameAs: same } })), null);
  const other = { ...intel('Cascadelake-Server-noTSX'), model: 'Xeon Gold 6248' };
  assert.deepEqual(verdict([a], a, vm({ cpu: { mode: 'host', sameAs: other } })), {
    filter: 'cpu',
    reason: `not the same CPU as the VM's (model "Cascadelake-Server-noTSX", not "Xeon Gold 6248")`,
  });
  const fewer = { ...same, flags: same.flags.filter((f) => f !== 'avx512_vnni') };
  assert.match(verdict([a], a, vm({ cpu: { mode: 'host', sameAs: fewer } }))!.reason, /also has avx512_vnni/);
  // Without sameAs any host will do.
  const amd = host('amd', { cpu: { vendor: 'AuthenticAMD', model: 'EPYC', flags: ['lm'] } });
  assert.equal(verdict([amd], amd, vm({ cpu: { mode: 'host' } })), null);
});

test('affinity: once a group has members, only hosts holding members pass', () => {
  const a = host('a', { groups: new Map([['db', 2]]) });
  const b = host('b');
  const v = vm({ groups: [{ name: 'db', kind: 'affinity' }] });
  assert.equal(verdict([a, b], a, v), null);
  assert.deepEqual(verdict([a, b], b, v), {
    filter: 'affinity',
    reason: 'holds no member of affinity group db, whose members are on other hosts',
  });
  // The first member of a group can go anywhere.
  assert.equal(verdict([b], b, v), null);
});

test('anti-affinity: hosts holding a member are rejected', () => {
  const a = host('a', { groups: new Map([['web', 1]]) });
  const b = host('b', { groups: new Map([['other', 3]]) });
  const v = vm({ groups: [{ name: 'web', kind: 'anti-affinity' }] });
  assert.deepEqual(verdict([a, b], a, v), {
    filter: 'anti-affinity',
    reason: 'holds 1 member of anti-affinity group web',
  });
  assert.equal(verdict([a, b], b, v), null);
});

test('filters run cheap first: the first failing one is reported', () => {
  const h = host('a', { state: 'maintenance', allocated: { vcpus: 999, memoryMiB: 99999 } });
  assert.equal(verdict([h], h, vm({ pools: ['nope'] }))?.filter, 'state');
  const full = host('b', { allocated: { vcpus: 999, memoryMiB: 0 } });
  assert.equal(verdict([full], full, vm({ pools: ['nope'] }))?.filter, 'capacity');
});

test('network: a host that lacks one of the VM’s networks, or where it failed, is rejected with the reason', () => {
  const nets = (over: Record<string, { ready: boolean; reason: string | null }> = {}) =>
    new Map(
      Object.entries({
        n1: { name: 'lab', ready: true, reason: null },
        n2: { name: 'dmz', ready: true, reason: null },
        ...Object.fromEntries(
          Object.entries(over).map(([k, v]) => [k, { name: k === 'n1' ? 'lab' : 'dmz', ...v }]),
        ),
      }),
    );
  const v = vm({ networks: ['n1', 'n2'] });
  assert.equal(verdict([], host('a', { networks: nets() }), v), null);
  const failed = host('b', {
    networks: nets({ n2: { ready: false, reason: 'the kernel has no VLAN devices' } }),
  });
  assert.deepEqual(verdict([], failed, v), {
    filter: 'network',
    reason: 'lacks network dmz: the kernel has no VLAN devices',
  });
  const pending = host('c', { networks: nets({ n1: { ready: false, reason: null } }) });
  assert.equal(verdict([], pending, v)?.reason, 'has not realized network lab yet');
  assert.equal(
    verdict([], host('d', { networks: new Map() }), v)?.reason,
    'has no network n1: the inventory does not know it',
  );
  assert.equal(
    verdict([], host('e'), v),
    null,
    'a host not told of networks: nothing known, nothing refused',
  );
  assert.equal(verdict([], failed, vm()), null, 'a VM on no managed network goes anywhere');
});
