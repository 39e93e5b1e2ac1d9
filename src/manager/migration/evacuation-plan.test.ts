import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostFacts } from '../../wire/host.ts';
import type { VmSpec } from '../../wire/vm.ts';
import type { ClusterSnapshot } from '../cluster/inventory.ts';
import { placementHost } from '../placement/fixtures.ts';
import { defaultPolicy, type PlacementHost } from '../placement/model.ts';
import { type EvacuatingVm, planEvacuation } from './evacuation-plan.ts';

const facts = (hostname: string, memoryMiB = 8192): HostFacts => ({
  hostname,
  driver: 'sim',
  accelerator: 'kvm',
  acceleratorReason: '',
  cpuModel: 'x',
  cpuVendor: 'GenuineIntel',
  cpuFlags: [],
  cores: 8,
  memoryMiB,
  pools: [
    { name: 'san', path: '/p/san', shared: true, totalBytes: 1e13, freeBytes: 1e13 },
    { name: 'local', path: '/p/local', shared: false, totalBytes: 1e12, freeBytes: 1e12 },
  ],
  versions: {},
});

const snapshot = (...hosts: PlacementHost[]): ClusterSnapshot => ({
  hosts,
  facts: new Map(hosts.map((h) => [h.id, facts(h.name, h.memoryMiB)])),
});

const vm = (name: string, memoryMiB: number, over: Partial<EvacuatingVm> = {}): EvacuatingVm => {
  const spec: VmSpec = {
    id: `id-${name}`,
    name,
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB,
    disks: [{ volume: { pool: 'san', path: `vms/${name}/disk0.qcow2` }, format: 'qcow2', readonly: false }],
    nics: [],
  };
  return {
    id: spec.id,
    name,
    state: 'running',
    hostId: 'h1',
    diskSizes: '[1073741824]',
    cpuMode: 'compat',
    spec,
    groups: [],
    ...over,
  };
};

const h1 = placementHost('h1', { allocated: { vcpus: 3, memoryMiB: 6144 } });

test('each planned move takes room on its target before the next VM is placed', () => {
  // h2 and h3 have room for one 3-GiB VM each: two VMs must not both be sent to the emptier one.
  const h2 = placementHost('h2', { memoryMiB: 4096 });
  const h3 = placementHost('h3', { memoryMiB: 4096, allocated: { vcpus: 0, memoryMiB: 512 } });
  const plan = planEvacuation({
    hostId: 'h1',
    vms: [vm('a', 3072), vm('b', 3072)],
    snapshot: snapshot(h1, h2, h3),
    policy: defaultPolicy,
  });
  assert.deepEqual(plan.unmovable, []);
  assert.deepEqual(
    plan.moves.map((m) => [m.vm, m.toName]),
    [
      ['a', 'h2'],
      ['b', 'h3'],
    ],
  );
});

test('what cannot move says why: no room, paused, a group that keeps it away', () => {
  const h2 = placementHost('h2', { memoryMiB: 4096, groups: new Map([['apart', 1]]) });
  const plan = planEvacuation({
    hostId: 'h1',
    vms: [
      vm('big', 6000),
      vm('held', 512, { state: 'paused' }),
      vm('grouped', 512, { groups: [{ name: 'apart', kind: 'anti-affinity' }] }),
      vm('fits', 512),
    ],
    snapshot: snapshot(h1, h2),
    policy: defaultPolicy,
  });
  assert.deepEqual(
    plan.moves.map((m) => m.vm),
    ['fits'],
  );
  const why = Object.fromEntries(plan.unmovable.map((u) => [u.vm, u.reason]));
  assert.deepEqual(Object.keys(why).sort(), ['big', 'grouped', 'held']);
  assert.match(why.held, /it is paused; only running VMs migrate/);
  assert.match(why.big, /6000 MiB.*capacity/);
  assert.match(why.grouped, /anti-affinity/);
});

test('the host being emptied is never a target, even with room', () => {
  const plan = planEvacuation({
    hostId: 'h1',
    vms: [vm('a', 512)],
    snapshot: snapshot(placementHost('h1')),
    policy: defaultPolicy,
  });
  assert.equal(plan.moves.length, 0);
  assert.equal(plan.unmovable[0]?.vm, 'a');
});

test('a disk in a pool the target cannot take is a refused move, not a guess', () => {
  // The target sees san but has no local pool to mirror a local disk into.
  const bare = placementHost('h2');
  const s = snapshot(h1, bare);
  s.facts.set('h2', { ...facts('h2'), pools: [facts('h2').pools[0]!] });
  const local = vm('l', 512, { diskSizes: '[1024]' });
  local.spec.disks[0]!.volume.pool = 'local';
  const plan = planEvacuation({ hostId: 'h1', vms: [local], snapshot: s, policy: defaultPolicy });
  assert.equal(plan.moves.length, 0);
  assert.equal(plan.unmovable.length, 1);
});
