/**
 * NIC hot-plug against a monitor that plays QEMU: an agent killed midway (port plugged, backend
 * or device already in QEMU, the spec not yet written) is finished by the next call without a
 * second port or a duplicate id; a device the guest released already is not asked for again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NicSpec, VmSpec } from '../../wire/vm.ts';
import { RecordedNetworks } from '../network/recorded-networks.ts';
import { testSpec } from '../network/test-specs.ts';
import { plugNicRunning, unplugNicRunning } from './nic-hotplug.ts';
import type { VmProcess } from './vm-process.ts';

const net = testSpec('isolated', 7);
const vmId = '6f1c2b9e-8f0a-4c1e-9d3b-2a7e5c4d1f00';
const nic: NicSpec = {
  mac: '02:aa:07:00:00:01',
  network: { mode: 'network', network: net.id, bridge: net.bridge, ip: '10.7.0.11', rules: null },
};

/** A running VM whose QEMU keeps devices and backends as QEMU would, refusing duplicate ids. */
function fakeVm() {
  const devices = new Set<string>();
  const netdevs = new Set<string>();
  const sent: string[] = [];
  let spec: VmSpec = {
    id: vmId,
    name: 'v',
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB: 64,
    disks: [],
    nics: [],
  };
  const monitor = {
    async execute(command: string, args: Record<string, unknown> = {}) {
      sent.push(command);
      const id = String(args.id);
      switch (command) {
        case 'qom-list':
          return [...devices].map((name) => ({ name, type: 'child<virtio-net-pci>' }));
        case 'netdev_add':
          if (netdevs.has(id)) throw new Error(`Duplicate ID '${id}' for netdev`);
          netdevs.add(id);
          return {};
        case 'netdev_del':
          if (!netdevs.delete(id)) throw new Error(`Device '${id}' not found`);
          return {};
        case 'device_add':
          if (devices.has(id)) throw new Error(`Duplicate device ID '${id}'`);
          devices.add(id);
          return {};
        case 'device_del':
          if (!devices.delete(id)) throw new Error(`Device '${id}' not found`);
          return {};
        default:
          return {};
      }
    },
  };
  const vm = {
    id: vmId,
    get spec() {
      return spec;
    },
    monitor,
    updateSpec(s: VmSpec) {
      spec = s;
    },
    // The guest releases at once.
    event: async () => ({}),
  } as unknown as VmProcess;
  return { vm, devices, netdevs, sent };
}

test('a plug an agent kill cut short is finished by the next one: the same port, no duplicate id', async () => {
  const networks = new RecordedNetworks();
  await networks.apply(net);
  const { vm, devices, netdevs } = fakeVm();
  // What a killed agent left: the port, the backend and the device, but not the spec.
  await networks.plug({ network: net.id, vm: vmId, mac: nic.mac, ip: '10.7.0.11', rules: null });
  netdevs.add('net0');
  devices.add('net0-dev');
  await plugNicRunning(vm, nic, networks);
  assert.equal(networks.portsOf(vmId).length, 1, 'the port it had, not a second');
  assert.deepEqual(vm.spec.nics, [{ ...nic, slot: 0 }]);

  // Killed after the backend only: it is made again with its device.
  const other = { ...nic, mac: '02:aa:07:00:00:02' };
  netdevs.add('net1');
  await plugNicRunning(vm, other, networks);
  assert.ok(devices.has('net1-dev'));
  assert.equal(networks.portsOf(vmId).length, 2);
  await plugNicRunning(vm, other, networks);
  assert.equal(vm.spec.nics.length, 2, 'a NIC the VM has is done');
});

test('an unplug whose device the guest released already finishes without asking again', async () => {
  const networks = new RecordedNetworks();
  await networks.apply(net);
  const { vm, devices, sent } = fakeVm();
  await plugNicRunning(vm, nic, networks);
  devices.delete('net0-dev');
  sent.length = 0;
  await unplugNicRunning(vm, nic.mac, networks);
  assert.ok(!sent.includes('device_del'));
  assert.deepEqual(vm.spec.nics, []);
  assert.deepEqual(networks.portsOf(vmId), [], 'its port is gone');
  await unplugNicRunning(vm, nic.mac, networks);
});
