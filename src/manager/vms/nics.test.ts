/**
 * NIC tasks killed between their two records (the NIC's row, the VM's spec): a resumed run ends
 * with both, the same address, nothing twice; a failed one leaves neither.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Db, openDatabase } from '../db/database.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { EventBus } from '../events/bus.ts';
import { insertHost } from '../networks/fixtures.ts';
import { SecurityGroupStore } from '../networks/security-groups.ts';
import { NetworkStore } from '../networks/store.ts';
import type { TaskContext } from '../tasks/engine.ts';
import { type NicTaskDeps, nicAddTask, nicLinkTask, nicRemoveTask } from './nics.ts';
import { planVm } from './plan.ts';
import { newVmRow, VmStore } from './store.ts';

const ctx: TaskContext = {
  id: 't',
  resumed: false,
  signal: new AbortController().signal,
  step: async () => {},
  progress: async () => {},
  log: async () => {},
  throwIfCancelled: () => {},
};
const vmId = '11111111-2222-4333-8444-555555555555';

async function setup(): Promise<{ db: Db; deps: NicTaskDeps; store: VmStore; changes: number[] }> {
  const db = await openDatabase(':memory:');
  const store = new VmStore(db, new EventBus());
  const plan = planVm({ name: 'v1', diskGiB: 1 }, null, vmId, 'local', () => '02:74:6e:aa:aa:aa');
  await store.insert({ ...newVmRow(plan, null as never, null, vmId), hostId: null, state: 'stopped' });
  const networks = new NetworkStore(db);
  await networks.create({ name: 'lab', type: 'nat', subnet: '10.9.0.0/24' });
  const changes: number[] = [];
  const deps = {
    db,
    store,
    networks,
    securityGroups: new SecurityGroupStore(db),
    networkSync: { changed: () => changes.push(1) },
  } as unknown as NicTaskDeps;
  return { db, deps, store, changes };
}

const nicRows = (db: Db) => db.selectFrom('nics').selectAll().orderBy('mac').execute();
const params = { vmId, mac: '02:74:6e:00:00:07', request: { mode: 'network' as const, network: 'lab' } };

test('a NIC add killed after its row was recorded resumes to the same address, recorded once', async () => {
  const { db, deps, store } = await setup();
  const update = store.update.bind(store);
  store.update = async () => {
    throw new Error('killed');
  };
  await assert.rejects(nicAddTask(deps).run(ctx, params), /killed/);
  assert.equal((await nicRows(db)).find((n) => n.mac === params.mac)?.ip, '10.9.0.2');
  assert.equal(vmSpecOf(await store.row(vmId)).nics.length, 1, 'the spec is not written yet');
  store.update = update;
  const result = await nicAddTask(deps).run({ ...ctx, resumed: true }, params);
  assert.deepEqual(result, { mac: params.mac, ip: '10.9.0.2' });
  const nics = vmSpecOf(await store.row(vmId)).nics;
  assert.equal(nics.length, 2);
  assert.deepEqual(nics[1]!.network, {
    mode: 'network',
    network: (await deps.networks.row('lab')).id,
    bridge: (await deps.networks.row('lab')).bridge,
    ip: '10.9.0.2',
    rules: null,
  });
  // Run again (resumed after it finished): nothing twice.
  await nicAddTask(deps).run({ ...ctx, resumed: true }, params);
  assert.equal(vmSpecOf(await store.row(vmId)).nics.length, 2);
  assert.equal((await nicRows(db)).length, 2);
});

test('a NIC add that fails before the spec has it leaves no row and frees its address', async () => {
  const { db, deps, store } = await setup();
  store.update = async () => {
    throw new Error('killed');
  };
  const add = nicAddTask(deps);
  await assert.rejects(add.run(ctx, params), /killed/);
  await add.cleanup!(ctx, params, new Error('killed') as never);
  assert.deepEqual(
    (await nicRows(db)).map((n) => n.mac),
    ['02:74:6e:aa:aa:aa'],
  );
  assert.equal(await deps.networks.address(await deps.networks.row('lab')), '10.9.0.2');
});

test('a NIC remove killed after the spec dropped it resumes and frees its row; link sets the spec', async () => {
  const { db, deps, store, changes } = await setup();
  await nicAddTask(deps).run(ctx, params);
  await nicLinkTask(deps).run(ctx, { vmId, mac: params.mac, link: 'down' });
  assert.equal(vmSpecOf(await store.row(vmId)).nics[1]!.link, 'down');
  await nicLinkTask(deps).run(ctx, { vmId, mac: params.mac, link: 'up' });
  assert.equal(vmSpecOf(await store.row(vmId)).nics[1]!.link, undefined);
  const del = db.deleteFrom.bind(db);
  (db as { deleteFrom: unknown }).deleteFrom = () => {
    throw new Error('killed');
  };
  await assert.rejects(nicRemoveTask(deps).run(ctx, { vmId, mac: params.mac }), /killed/);
  (db as { deleteFrom: unknown }).deleteFrom = del;
  assert.equal(vmSpecOf(await store.row(vmId)).nics.length, 1);
  assert.equal((await nicRows(db)).length, 2, 'the row outlived the kill');
  await nicRemoveTask(deps).run({ ...ctx, resumed: true }, { vmId, mac: params.mac });
  assert.equal((await nicRows(db)).length, 1);
  await assert.rejects(nicRemoveTask(deps).run(ctx, { vmId, mac: params.mac }), /has no NIC/);
  assert.ok(changes.length >= 2, 'hosts are told of the leases that changed');
});

test('a running VM’s NICs change on its host first: a resumed add asks again and records once, at the same slot', async () => {
  const { db, deps, store } = await setup();
  const hostId = '99999999-2222-4333-8444-555555555555';
  await insertHost(db, 'h1', 'https://10.0.0.1:7411', hostId);
  await store.update(vmId, { state: 'running', hostId });
  const calls: string[] = [];
  (deps as { hosts: unknown }).hosts = {
    client: () => ({
      plugNic: async (_id: string, nic: { mac: string; slot?: number }) => {
        calls.push(`plug ${nic.mac} ${nic.slot}`);
      },
      unplugNic: async (_id: string, mac: string) => {
        calls.push(`unplug ${mac}`);
      },
      linkNic: async (_id: string, mac: string, link: string) => {
        calls.push(`link ${mac} ${link}`);
      },
    }),
  };
  const update = store.update.bind(store);
  store.update = async () => {
    throw new Error('killed');
  };
  await assert.rejects(nicAddTask(deps).run(ctx, params), /killed/);
  store.update = update;
  await nicAddTask(deps).run({ ...ctx, resumed: true }, params);
  assert.deepEqual(calls, [`plug ${params.mac} 1`, `plug ${params.mac} 1`], 'the same slot, asked again');
  const nics = vmSpecOf(await store.row(vmId)).nics;
  assert.equal(nics.length, 2);
  assert.equal(nics[1]!.slot, 1);
  assert.equal((await nicRows(db)).length, 2);

  await nicLinkTask(deps).run(ctx, { vmId, mac: params.mac, link: 'down' });
  await nicRemoveTask(deps).run(ctx, { vmId, mac: params.mac });
  assert.deepEqual(calls.slice(2), [`link ${params.mac} down`, `unplug ${params.mac}`]);
  assert.deepEqual(
    vmSpecOf(await store.row(vmId)).nics.map((n) => n.slot),
    [0],
    'the others keep their slots',
  );
  assert.equal((await nicRows(db)).length, 1);

  // A user-mode NIC is not plugged into a running VM, and nothing is held for it.
  await assert.rejects(
    nicAddTask(deps).run(ctx, { vmId, mac: '02:74:6e:00:00:08', request: { mode: 'user' } }),
    /only a NIC on a managed network is plugged into a running VM/,
  );
  await store.update(vmId, { state: 'crashed' });
  await assert.rejects(
    nicAddTask(deps).run(ctx, params),
    /VM v1 is crashed: NICs are added on a running or stopped VM/,
  );
});
