import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type FailoverCluster, failover } from './failover.ts';

/** Hosts given as [memory limit, memory used, protected VM sizes in MiB]; CPU never binds here. */
function cluster(hosts: [number, number, number[]][]): FailoverCluster {
  return {
    names: hosts.map((_, i) => `h${i}`),
    capCpu: Float64Array.from(hosts.map(() => 1000)),
    capMem: Float64Array.from(hosts.map((h) => h[0])),
    usedCpu: Float64Array.from(hosts.map(() => 0)),
    usedMem: Float64Array.from(hosts.map((h) => h[1])),
    items: hosts.map((h) => h[2].map((mem) => ({ cpu: 1, mem })).sort((a, b) => b.mem - a.mem)),
  };
}
const none = (n: number) => new Float64Array(n);
const noNewVm = { vcpus: 1, memoryMiB: 1024, protected: true };

test('room split across hosts does not take a VM bigger than any piece', () => {
  // 6 GiB free in all on h1 and h2, but 3 GiB each: the 4 GiB VM of h0 has nowhere to go.
  const c = cluster([
    [8192, 4096, [4096]],
    [8192, 5120, []],
    [8192, 5120, []],
  ]);
  assert.match(failover(c, none(3), noNewVm, 1, true) ?? '', /protected VMs of h0 would lack room/);
  assert.notEqual(failover(c, none(3), noNewVm, 1, false), null);
});

test('first fit decreasing finds the packing the bound cannot prove', () => {
  // h0's 4 + 2 GiB fit h1's 4 GiB and h2's 2 GiB exactly; the bound (one largest VM of slack
  // per host) cannot show it, the enumeration can.
  const c = cluster([
    [8192, 6144, [4096, 2048]],
    [8192, 4096, []],
    [8192, 6144, []],
  ]);
  assert.equal(failover(c, none(3), noNewVm, 1, true), null);
  assert.notEqual(failover(c, none(3), noNewVm, 1, false), null);
});

test('with plenty of room the bound alone clears every failure set', () => {
  const c = cluster(
    Array.from({ length: 10 }, (): [number, number, number[]] => [65536, 8192, [2048, 2048]]),
  );
  assert.equal(failover(c, none(10), noNewVm, 3, false), null);
  assert.equal(failover(c, none(10), noNewVm, 3, true), null);
});

test('new VMs count as load when protected and only as used room when not', () => {
  const c = cluster([
    [8192, 0, []],
    [8192, 0, []],
  ]);
  const added = Float64Array.from([3, 2]);
  assert.notEqual(failover(c, added, { vcpus: 1, memoryMiB: 2048, protected: true }, 1, true), null);
  assert.equal(failover(c, added, { vcpus: 1, memoryMiB: 2048, protected: false }, 1, true), null);
});
