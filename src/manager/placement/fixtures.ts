/**
 * Placement inputs for unit tests: a host and a VM's demand with plain defaults, each test
 * overriding what it is about. (Tests only; kept here so the defaults live in one place.)
 */
import type { PlacementHost, VmDemand } from './model.ts';

/** An online host of 8 cores and 8 GiB with nothing on it, seeing the shared pool `san`. */
export const placementHost = (name: string, over: Partial<PlacementHost> = {}): PlacementHost => ({
  id: name,
  name,
  state: 'online',
  cores: 8,
  memoryMiB: 8192,
  cpu: { vendor: 'GenuineIntel', model: 'x', flags: [] },
  pools: [{ name: 'san', shared: true, freeBytes: 1e13 }],
  allocated: { vcpus: 0, memoryMiB: 0 },
  groups: new Map(),
  ...over,
});

/** 2 vCPUs and 2 GiB on the shared pool `san`, any CPU, in no group. */
export const vmDemand = (over: Partial<VmDemand> = {}): VmDemand => ({
  vcpus: 2,
  memoryMiB: 2048,
  diskBytes: 0,
  pools: ['san'],
  cpu: { mode: 'host' },
  groups: [],
  ...over,
});
