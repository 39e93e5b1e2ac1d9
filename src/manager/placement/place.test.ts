import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuModel } from './cpu-models.ts';
import { placementHost, vmDemand } from './fixtures.ts';
import { defaultPolicy, type PlacementHost, type VmDemand } from './model.ts';
import { place, rejectionCounts } from './place.ts';

const intel = (model: string) => ({ vendor: 'GenuineIntel', model, flags: [...cpuModel(model)!.flags] });

const host = (name: string, over: Partial<PlacementHost> = {}): PlacementHost =>
  placementHost(name, {
    id: `id-${name}`,
    cpu: intel('Icelake-Server-noTSX'),
    pools: [{ name: 'shared', shared: true, freeBytes: 1e12 }],
    ...over,
  });

const vm = (over: Partial<VmDemand> = {}): VmDemand => vmDemand({ pools: ['shared'], ...over });

test('spread picks the host with the most headroom, pack the one with the least', () => {
  const hosts = [
    host('a', { allocated: { vcpus: 4, memoryMiB: 4096 } }),
    host('b'),
    host('c', { allocated: { vcpus: 2, memoryMiB: 2048 } }),
  ];
  assert.equal(place(hosts, vm()).hostId, 'id-b');
  assert.equal(place(hosts, vm(), { ...defaultPolicy, strategy: 'pack' }).hostId, 'id-a');
});

test('equal hosts: the first by name wins, whatever the input order', () => {
  const hosts = [host('c'), host('a'), host('b')];
  assert.equal(place(hosts, vm()).hostId, 'id-a');
  assert.equal(place([...hosts].reverse(), vm()).hostId, 'id-a');
});

test('the summary names the choice and counts rejections by filter', () => {
  const hosts = [
    host('host-a', { allocated: { vcpus: 0, memoryMiB: 8000 } }),
    host('host-b'),
    host('host-c', { allocated: { vcpus: 0, memoryMiB: 7000 } }),
    host('host-d', { groups: new Map([['web', 1]]) }),
  ];
  const p = place(hosts, vm({ groups: [{ name: 'web', kind: 'anti-affinity' }] }));
  assert.equal(p.hostId, 'id-host-b');
  assert.deepEqual(p.verdicts, []);
  assert.match(
    p.summary,
    /^host-b chosen \(rating 0\.\d\d\); 3 hosts rejected: 2 by capacity, 1 by anti-affinity$/,
  );
});

test('explain gives a verdict per host, with reasons for the rejected and ratings for the rest', () => {
  const hosts = [
    host('a', { state: 'maintenance' }),
    host('b'),
    host('c', { allocated: { vcpus: 40, memoryMiB: 0 } }),
  ];
  const p = place(hosts, vm(), defaultPolicy, { explain: true });
  assert.equal(p.hostId, 'id-b');
  assert.deepEqual(
    p.verdicts.map((v) => [v.host, v.eligible, v.filter]),
    [
      ['a', false, 'state'],
      ['b', true, undefined],
      ['c', false, 'capacity'],
    ],
  );
  assert.equal(p.verdicts[0].reason, 'host is maintenance; only online hosts take VMs');
  assert.ok((p.verdicts[1].rating ?? -1) > 0 && (p.verdicts[1].rating ?? 2) <= 1);
  assert.deepEqual(rejectionCounts(p), { state: 1, capacity: 1 });
  // Explaining does not change the answer.
  assert.equal(place(hosts, vm()).hostId, p.hostId);
  assert.equal(place(hosts, vm()).summary, p.summary);
});

test('when nothing fits, the summary says what was needed and why every host was rejected', () => {
  const hosts = [host('a', { state: 'offline' }), host('b', { allocated: { vcpus: 0, memoryMiB: 8192 } })];
  const p = place(hosts, vm());
  assert.equal(p.hostId, null);
  assert.equal(
    p.summary,
    'no host fits (needs 2 vCPUs, 2048 MiB): all 2 hosts rejected: 1 by state, 1 by capacity',
  );
  assert.equal(place([], vm()).summary, 'no host fits (needs 2 vCPUs, 2048 MiB): the cluster has no hosts');
});

test('a migration never lands on its source, and a compat VM only where its model runs', () => {
  const hosts = [
    host('a'),
    host('b', { cpu: intel('Haswell-noTSX') }),
    host('c', { cpu: intel('Haswell-noTSX') }),
  ];
  const p = place(
    hosts,
    vm({ exclude: ['id-a'], cpu: { mode: 'compat', model: 'Skylake-Server-noTSX-IBRS' } }),
    defaultPolicy,
    {
      explain: true,
    },
  );
  assert.equal(p.hostId, null);
  assert.deepEqual(rejectionCounts(p), { exclude: 1, cpu: 2 });
  assert.equal(
    place(hosts, vm({ exclude: ['id-a'], cpu: { mode: 'compat', model: 'Haswell-noTSX' } })).hostId,
    'id-b',
  );
});

test('members of an affinity group follow the first one', () => {
  const hosts = [
    host('a'),
    host('b', { groups: new Map([['db', 1]]), allocated: { vcpus: 6, memoryMiB: 6000 } }),
  ];
  assert.equal(place(hosts, vm({ groups: [{ name: 'db', kind: 'affinity' }] })).hostId, 'id-b');
  assert.equal(place(hosts, vm({ groups: [{ name: 'new', kind: 'affinity' }] })).hostId, 'id-a');
});

test('placing many VMs one after another keeps every host within its limits', () => {
  const hosts = Array.from({ length: 20 }, (_, i) =>
    host(`h${String(i).padStart(2, '0')}`, { cores: 4 + (i % 4) * 4, memoryMiB: 4096 * (1 + (i % 3)) }),
  ) as (PlacementHost & { allocated: { vcpus: number; memoryMiB: number }; groups: Map<string, number> })[];
  let placed = 0;
  for (let i = 0; i < 500; i++) {
    const v = vm({
      vcpus: 1 + (i % 4),
      memoryMiB: 512 * (1 + (i % 5)),
      groups: i % 7 === 0 ? [{ name: `g${i % 3}`, kind: 'anti-affinity' }] : [],
    });
    const p = place(hosts, v, { ...defaultPolicy, strategy: i % 2 ? 'pack' : 'spread' });
    if (p.hostId === null) continue;
    const h = hosts.find((x) => x.id === p.hostId)!;
    assert.ok(!(h.groups.get(`g${i % 3}`) && i % 7 === 0), 'anti-affinity kept');
    h.allocated.vcpus += v.vcpus;
    h.allocated.memoryMiB += v.memoryMiB;
    for (const g of v.groups) h.groups.set(g.name, (h.groups.get(g.name) ?? 0) + 1);
    placed++;
  }
  assert.ok(placed > 50);
  for (const h of hosts) {
    assert.ok(h.allocated.vcpus <= h.cores * 4);
    assert.ok(h.allocated.memoryMiB <= h.memoryMiB);
  }
});
