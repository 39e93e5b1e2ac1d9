import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostFacts } from '../../wire/host.ts';
import { openDatabase } from '../db/database.ts';
import { NetworkStore } from '../networks/store.ts';
import { clusterSnapshot } from './inventory.ts';

const facts: HostFacts = {
  hostname: 'h',
  driver: 'sim',
  accelerator: 'tcg',
  acceleratorReason: '',
  cpuModel: 'x',
  cpuVendor: 'GenuineIntel',
  cpuFlags: [],
  cores: 4,
  memoryMiB: 4096,
  pools: [],
  versions: {},
} as HostFacts;

test('each host has every network as it last said of it, from the inventory (a manager restart keeps it)', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db);
  const lab = await nets.create({ name: 'lab', type: 'nat', subnet: '10.1.0.0/24' });
  const dmz = await nets.create({ name: 'dmz', type: 'nat', subnet: '10.2.0.0/24' });
  for (const name of ['h1', 'h2']) {
    await db
      .insertInto('hosts')
      .values({
        id: name,
        name,
        address: 'https://10.0.0.1:1',
        state: 'online',
        lastSeen: null,
        facts: JSON.stringify(facts),
        createdAt: 't',
      } as never)
      .execute();
  }
  const said = (hostId: string, networkId: string, state: string, reason: string | null) =>
    db
      .insertInto('hostNetworks')
      .values({ hostId, networkId, state, reason, dhcp: 'none', ports: 0, updatedAt: 't' })
      .execute();
  await said('h1', lab.id, 'ready', null);
  await said('h1', dmz.id, 'failed', 'no 802.1Q');
  const { hosts } = await clusterSnapshot(db);
  const [h1, h2] = hosts;
  assert.deepEqual(h1!.networks?.get(lab.id), { name: 'lab', ready: true, reason: null });
  assert.deepEqual(h1!.networks?.get(dmz.id), { name: 'dmz', ready: false, reason: 'no 802.1Q' });
  assert.deepEqual(
    h2!.networks?.get(lab.id),
    { name: 'lab', ready: false, reason: null },
    'said nothing: not there',
  );
});
