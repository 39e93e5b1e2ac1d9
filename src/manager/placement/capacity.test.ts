import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CapacityVm, capacity } from './capacity.ts';
import { placementHost } from './fixtures.ts';
import { defaultPolicy, type PlacementHost } from './model.ts';

const GiB = 1024 ** 3;

const host = (name: string, over: Partial<PlacementHost> = {}): PlacementHost =>
  placementHost(name, {
    pools: [
      { name: 'san', shared: true, freeBytes: 10_000 * GiB },
      { name: 'local', shared: false, freeBytes: 100 * GiB },
    ],
    ...over,
  });

const small = { vcpus: 1, memoryMiB: 2048, diskBytes: 0 };
const three = () => [host('a'), host('b'), host('c')];

test('tolerate 0 is the plain free capacity', () => {
  const r = capacity(three(), [], { size: small, tolerate: 0 });
  assert.equal(r.fits, 12);
  assert.deepEqual(r.perHost, [
    { host: 'a', count: 4 },
    { host: 'b', count: 4 },
    { host: 'c', count: 4 },
  ]);
  assert.equal(r.limitedBy, 'memory on 3 hosts');
  assert.deepEqual(r.reservedForFailover, { vcpus: 0, memoryMiB: 0 });
});

test('3 hosts of 8 GiB, N+1: 8 VMs of 2 GiB (3+3+2), the exact answer', () => {
  // With 3, 3 and 2: losing a host of 3 puts its 3 VMs into 2 + 4 GiB free; a ninth VM (3+3+3)
  // would leave 2 + 2 GiB for 3 VMs.
  const r = capacity(three(), [], { size: small, tolerate: 1 });
  assert.equal(r.fits, 8);
  assert.deepEqual(
    r.perHost.map((p) => p.count),
    [3, 3, 2],
  );
  assert.equal(r.checked, 'every failure set');
  assert.match(r.limitedBy, /^failover \(N\+1\): one more VM and protected VMs of \w would lack room/);
  assert.deepEqual(r.reservedForFailover, { vcpus: 3, memoryMiB: 6144 });
});

test('an existing protected VM counts both as load to restart and as used room', () => {
  // a holds a protected 4 GiB VM. Six more 2 GiB VMs (a 1, b 3, c 2) survive any one failure;
  // every way of placing seven leaves some failure without room (worked through in README).
  const hosts = [host('a', { allocated: { vcpus: 2, memoryMiB: 4096 } }), host('b'), host('c')];
  const vms: CapacityVm[] = [{ hostId: 'a', vcpus: 2, memoryMiB: 4096, protected: true }];
  const r = capacity(hosts, vms, { size: small, tolerate: 1 });
  assert.equal(r.fits, 6);
  assert.equal(capacity(hosts, vms, { size: small, tolerate: 0 }).fits, 10);
});

test('unprotected VMs need no room elsewhere', () => {
  assert.equal(capacity(three(), [], { size: small, tolerate: 1, newVmsProtected: false }).fits, 12);
  const vms: CapacityVm[] = [{ hostId: 'a', vcpus: 1, memoryMiB: 2048, protected: false }];
  const hosts = [host('a', { allocated: { vcpus: 1, memoryMiB: 2048 } }), host('b'), host('c')];
  assert.equal(capacity(hosts, vms, { size: small, tolerate: 1, newVmsProtected: false }).fits, 11);
});

test('tolerating as many failures as there are online hosts leaves nothing', () => {
  for (const tolerate of [3, 5]) {
    const r = capacity(three(), [], { size: small, tolerate });
    assert.equal(r.fits, 0);
    assert.deepEqual(r.perHost, []);
    assert.equal(
      r.limitedBy,
      `tolerating ${tolerate} host failures with 3 online hosts leaves no host to restart on`,
    );
  }
  // Hosts in maintenance are not online: they neither take VMs nor survive failures.
  const r = capacity([host('a'), host('b', { state: 'maintenance' })], [], { size: small, tolerate: 1 });
  assert.equal(r.fits, 0);
  assert.match(r.limitedBy, /with 1 online host leaves/);
});

test('a cluster already short of N+k says so', () => {
  const hosts = [
    host('a', { allocated: { vcpus: 4, memoryMiB: 8192 } }),
    host('b', { allocated: { vcpus: 4, memoryMiB: 8192 } }),
  ];
  const vms: CapacityVm[] = [
    { hostId: 'a', vcpus: 4, memoryMiB: 8192, protected: true },
    { hostId: 'b', vcpus: 4, memoryMiB: 8192, protected: true },
  ];
  const r = capacity(hosts, vms, { size: small, tolerate: 1 });
  assert.equal(r.fits, 0);
  assert.match(r.limitedBy, /^already short for N\+1: protected VMs of a would lack room/);
});

test('disk: a shared pool is one budget, a local pool one per host, an unseen pool none', () => {
  const disk = { ...small, diskBytes: 40 * GiB };
  const shared = capacity(three(), [], { size: disk, tolerate: 0, pool: 'san' });
  assert.equal(shared.fits, 12);
  const tight = three().map((h) => ({ ...h, pools: [{ name: 'san', shared: true, freeBytes: 200 * GiB }] }));
  const r = capacity(tight, [], { size: disk, tolerate: 0, pool: 'san' });
  assert.equal(r.fits, 5);
  assert.equal(r.limitedBy, 'disk: shared pool san has room for 5 more');
  const local = capacity(three(), [], { size: disk, tolerate: 0, pool: 'local' });
  assert.equal(local.fits, 6);
  assert.equal(local.limitedBy, 'disk in pool local on 3 hosts');
  assert.equal(capacity(three(), [], { size: disk, tolerate: 0, pool: 'nfs' }).fits, 0);
});

/** Whether items (largest first) fit into bins, by trying every distinct assignment (small cases only). */
function packable(items: { cpu: number; mem: number }[], bins: { cpu: number; mem: number }[]): boolean {
  if (items.length === 0) return true;
  const [first, ...rest] = items;
  const tried = new Set<string>();
  for (const b of bins) {
    // Bins left with the same room are interchangeable: trying one is trying them all.
    const key = `${b.cpu}/${b.mem}`;
    if (tried.has(key)) continue;
    tried.add(key);
    if (b.cpu >= first.cpu && b.mem >= first.mem) {
      b.cpu -= first.cpu;
      b.mem -= first.mem;
      const ok = packable(rest, bins);
      b.cpu += first.cpu;
      b.mem += first.mem;
      if (ok) return true;
    }
  }
  return false;
}

function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a * 1103515245 + 12345) % 2147483648;
    return a / 2147483648;
  };
}

test('on random small clusters every answer survives every failure set, and the bound is never above it', () => {
  let verified = 0;
  for (let seed = 1; seed <= 25; seed++) {
    const rnd = random(seed);
    const hosts: PlacementHost[] = [];
    const vms: CapacityVm[] = [];
    const count = 4 + Math.floor(rnd() * 3);
    for (let i = 0; i < count; i++) {
      const memoryMiB = 8192 * (1 + Math.floor(rnd() * 3));
      const h = host(`h${i}`, { memoryMiB, cores: 2 + Math.floor(rnd() * 4) });
      for (let j = Math.floor(rnd() * 4); j > 0; j--) {
        const vm = {
          hostId: h.id,
          vcpus: 1 + Math.floor(rnd() * 2),
          memoryMiB: 1024 * (1 + Math.floor(rnd() * 4)),
          protected: rnd() < 0.6,
        };
        if (h.allocated.memoryMiB + vm.memoryMiB > memoryMiB) continue;
        h.allocated.vcpus += vm.vcpus;
        h.allocated.memoryMiB += vm.memoryMiB;
        vms.push(vm);
      }
      hosts.push(h);
    }
    const size = { vcpus: 1, memoryMiB: 1024 * (2 + Math.floor(rnd() * 3)), diskBytes: 0 };
    for (const tolerate of [1, 2]) {
      const r = capacity(hosts, vms, { size, tolerate });
      const bound = capacity(hosts, vms, { size, tolerate }, defaultPolicy, { failureSetBudget: 0 });
      assert.equal(bound.checked, 'bound');
      assert.ok(bound.fits <= r.fits, `seed ${seed} N+${tolerate}: bound ${bound.fits} > ${r.fits}`);
      const plain = capacity(hosts, vms, { size, tolerate: 0 }).fits;
      assert.ok(r.fits <= plain);
      // A cluster already short of N+k gets 0 and says so; there is nothing to verify.
      if (r.limitedBy.startsWith('already short')) {
        assert.equal(r.fits, 0);
        continue;
      }
      if (r.fits > 0) verified++;
      for (const answer of [r, bound]) {
        const added = new Map(answer.perHost.map((p) => [p.host, p.count]));
        const sets =
          tolerate === 1
            ? hosts.map((h) => [h])
            : hosts.flatMap((h, i) => hosts.slice(i + 1).map((g) => [h, g]));
        for (const failedSet of sets) {
          const failed = new Set(failedSet.map((h) => h.id));
          const items = vms
            .filter((v) => v.protected && failed.has(v.hostId))
            .map((v) => ({ cpu: v.vcpus, mem: v.memoryMiB }));
          for (const h of failedSet)
            for (let j = added.get(h.id) ?? 0; j > 0; j--)
              items.push({ cpu: size.vcpus, mem: size.memoryMiB });
          items.sort((x, y) => y.mem - x.mem || y.cpu - x.cpu);
          const bins = hosts
            .filter((h) => !failed.has(h.id))
            .map((h) => ({
              cpu: h.cores * 4 - h.allocated.vcpus - (added.get(h.id) ?? 0) * size.vcpus,
              mem: h.memoryMiB - h.allocated.memoryMiB - (added.get(h.id) ?? 0) * size.memoryMiB,
            }));
          assert.ok(
            packable(items, bins),
            `seed ${seed} N+${tolerate} (${answer.checked}): failing ${[...failed]} strands protected VMs`,
          );
        }
      }
    }
  }
  assert.ok(verified >= 20, `only ${verified} cases placed anything`);
});

test('1,000 hosts with 20 VMs each answer N+1 and N+2 quickly', () => {
  const hosts: PlacementHost[] = [];
  const vms: CapacityVm[] = [];
  for (let i = 0; i < 1000; i++) {
    const h = host(`h${String(i).padStart(4, '0')}`, { cores: 32, memoryMiB: 262144 });
    for (let j = 0; j < 20; j++) {
      const vm = { hostId: h.id, vcpus: 2, memoryMiB: 4096 * (1 + (j % 3)), protected: j % 2 === 0 };
      h.allocated.vcpus += vm.vcpus;
      h.allocated.memoryMiB += vm.memoryMiB;
      vms.push(vm);
    }
    hosts.push(h);
  }
  for (const tolerate of [1, 2]) {
    const t0 = performance.now();
    const r = capacity(hosts, vms, { size: { vcpus: 2, memoryMiB: 4096, diskBytes: 0 }, tolerate });
    const ms = performance.now() - t0;
    assert.ok(
      r.fits > 0 &&
        r.fits <
          capacity(hosts, vms, { size: { vcpus: 2, memoryMiB: 4096, diskBytes: 0 }, tolerate: 0 }).fits,
    );
    assert.ok(ms < 5000, `N+${tolerate} took ${ms} ms`);
  }
});
