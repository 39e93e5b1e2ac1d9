import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { openDatabase } from '../db/database.ts';
import { insertHost, insertNic, insertVm, KeepingAgent } from './fixtures.ts';
import { NetworkSync } from './host-sync.ts';
import { NetworkStore } from './store.ts';

const log = pino({ level: 'silent' });

test('every host is given every network with its leases and overlay peers, and loses what the inventory dropped', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db);
  const h1 = await insertHost(db, 'h1', 'https://10.0.0.1:7411');
  const h2 = await insertHost(db, 'h2', 'https://10.0.0.2:7411');
  const h3 = await insertHost(db, 'h3', 'https://h3.example:7411');
  const agents = new Map([h1, h2, h3].map((h) => [h, new KeepingAgent()]));
  const sync = new NetworkSync({ db, log, agentOf: (h) => agents.get(h) ?? null });

  const lab = await nets.create({ name: 'lab', type: 'overlay', subnet: '10.5.0.0/24' });
  await nets.create({ name: 'out', type: 'nat', subnet: '10.6.0.0/24' });
  await insertVm(db, 'vm-1', 'web-1');
  await insertNic(db, { mac: '02:74:6e:00:00:01', vmId: 'vm-1', networkId: lab.id, ip: '10.5.0.2' });

  sync.changed();
  await new Promise((r) => setImmediate(r));
  await sync.settled();
  const spec = agents.get(h1)!.held.get(lab.id)!;
  assert.deepEqual(spec.overlay, { vni: lab.vni, local: '10.0.0.1', peers: ['10.0.0.2'], port: 4789 });
  assert.deepEqual(spec.leases, [{ mac: '02:74:6e:00:00:01', ip: '10.5.0.2', hostname: 'web-1' }]);
  assert.equal(
    spec.gatewayMac,
    agents.get(h2)!.held.get(lab.id)!.gatewayMac,
    'one anycast gateway on every host',
  );
  assert.equal((await sync.statesOf(await nets.row(lab.id))).get(h1)?.state, 'ready');
  // A host reached by a name has no address to tunnel from: its overlay fails, with the reason.
  assert.equal(agents.get(h3)!.held.has(lab.id), false);
  assert.match(
    (await sync.statesOf(await nets.row(lab.id))).get(h3)?.reason ?? '',
    /needs an IPv4 cluster address/,
  );
  assert.equal((await sync.statesOf(await nets.row('out'))).get(h3)?.state, 'ready');

  // A host that cannot realize a network says why; the others are unaffected.
  agents.get(h2)!.refuse = 'out';
  await nets.remove('out');
  await nets.create({ name: 'out2', type: 'isolated', subnet: '10.7.0.0/24' });
  agents.get(h2)!.refuse = 'out2';
  agents.get(h2)!.calls.length = 0;
  sync.changed();
  await sync.settled();
  assert.match(
    (await sync.statesOf(await nets.row('out2'))).get(h2)?.reason ?? '',
    /could not realize it: bridge name taken/,
  );
  assert.deepEqual(agents.get(h2)!.calls, ['put out2', 'delete out'], 'lab, unchanged, is not sent again');

  // What hosts said is recorded, for placement after a manager restart too.
  const rows = await db.selectFrom('hostNetworks').selectAll().where('hostId', '=', h3).execute();
  const out2 = await nets.row('out2');
  assert.deepEqual(
    rows
      .map((r) => [r.networkId === lab.id ? 'lab' : r.networkId === out2.id ? 'out2' : r.networkId, r.state])
      .sort(),
    [
      ['lab', 'failed'],
      ['out2', 'ready'],
    ],
    "h3's word on out went with out",
  );
});

test('changes while a host syncs make one more sync after it, not one each', async () => {
  const db = await openDatabase(':memory:');
  const h1 = await insertHost(db, 'h1', 'https://10.0.0.1:7411');
  const agent = new KeepingAgent();
  let syncs = 0;
  const sync = new NetworkSync({
    db,
    log,
    agentOf: () => {
      syncs++;
      return agent;
    },
  });
  for (let i = 0; i < 10; i++) sync.hostReported(h1);
  await sync.settled();
  assert.equal(syncs, 2);
});

test('a host that joins is a new peer for every overlay on the others', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db);
  const h1 = await insertHost(db, 'h1', 'https://10.0.0.1:7411');
  const agents = new Map<string, KeepingAgent>([[h1, new KeepingAgent()]]);
  const sync = new NetworkSync({ db, log, agentOf: (h) => agents.get(h) ?? null });
  const lab = await nets.create({ name: 'lab', type: 'overlay', subnet: '10.5.0.0/24' });
  await sync.sync(h1);
  assert.deepEqual(agents.get(h1)!.held.get(lab.id)?.overlay?.peers, []);
  const h2 = await insertHost(db, 'h2', 'https://10.0.0.2:7411');
  agents.set(h2, new KeepingAgent());
  sync.hostReported(h2);
  await sync.settled();
  assert.deepEqual(agents.get(h1)!.held.get(lab.id)?.overlay?.peers, ['10.0.0.2']);
  assert.deepEqual(agents.get(h2)!.held.get(lab.id)?.overlay?.peers, ['10.0.0.1']);
});

test('a change sends each host only the networks that changed for it; a host that reconnects gets them all', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db);
  const h1 = await insertHost(db, 'h1', 'https://10.0.0.1:7411');
  const agent = new KeepingAgent();
  const sync = new NetworkSync({ db, log, agentOf: () => agent });
  const a = await nets.create({ name: 'a', type: 'nat', subnet: '10.1.0.0/24' });
  await nets.create({ name: 'b', type: 'nat', subnet: '10.2.0.0/24' });
  sync.changed();
  await sync.settled();
  assert.deepEqual(agent.calls, ['put a', 'put b']);
  agent.calls.length = 0;
  sync.changed();
  await sync.settled();
  assert.deepEqual(agent.calls, [], 'nothing changed: nothing sent');
  await insertVm(db, 'vm-1', 'web-1');
  await insertNic(db, { mac: '02:74:6e:00:00:01', vmId: 'vm-1', networkId: a.id, ip: '10.1.0.2' });
  sync.changed();
  await sync.settled();
  assert.deepEqual(agent.calls, ['put a'], 'a new lease on a: only a');
  agent.calls.length = 0;
  await nets.remove('b');
  sync.changed();
  await sync.settled();
  assert.deepEqual(agent.calls, ['delete b']);
  agent.calls.length = 0;
  sync.hostReported(h1);
  await sync.settled();
  assert.deepEqual(agent.calls, ['put a'], 'reconnected: every network again');
});
