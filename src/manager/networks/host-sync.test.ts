import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { HostNetworkSpec, HostNetworkState } from '../../wire/network.ts';
import { type Db, openDatabase } from '../db/database.ts';
import { type NetworkAgent, NetworkSync } from './host-sync.ts';
import { NetworkStore } from './store.ts';

const log = pino({ level: 'silent' });

/** A host's agent that keeps what it is given, as the sim driver does; `refuse` fails a network by name. */
class FakeAgent implements NetworkAgent {
  readonly held = new Map<string, HostNetworkSpec>();
  readonly calls: string[] = [];
  refuse: string | null = null;
  async listNetworks(): Promise<HostNetworkState[]> {
    return [...this.held.values()].map((s) => state(s));
  }
  async putNetwork(spec: HostNetworkSpec): Promise<HostNetworkState> {
    this.calls.push(`put ${spec.name}`);
    if (spec.name === this.refuse) throw new Error('bridge name taken by another interface');
    this.held.set(spec.id, spec);
    return state(spec);
  }
  async deleteNetwork(id: string): Promise<void> {
    this.calls.push(`delete ${this.held.get(id)?.name ?? id}`);
    this.held.delete(id);
  }
}
const state = (s: HostNetworkSpec): HostNetworkState => ({
  id: s.id,
  name: s.name,
  bridge: s.bridge,
  state: 'ready',
  reason: null,
  dhcp: s.dhcp || s.leases.length ? 'running' : 'none',
  ports: 0,
});

async function host(db: Db, name: string, address: string): Promise<string> {
  const id = `00000000-0000-4000-8000-${name.padStart(12, '0')}`;
  await db
    .insertInto('hosts')
    .values({
      id,
      name,
      address,
      state: 'online',
      lastSeen: null,
      facts: null,
      createdAt: 't',
    } as never)
    .execute();
  return id;
}

test('every host is given every network with its leases and overlay peers, and loses what the inventory dropped', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db);
  const h1 = await host(db, 'h1', 'https://10.0.0.1:7411');
  const h2 = await host(db, 'h2', 'https://10.0.0.2:7411');
  const h3 = await host(db, 'h3', 'https://h3.example:7411');
  const agents = new Map([h1, h2, h3].map((h) => [h, new FakeAgent()]));
  const sync = new NetworkSync({ db, log, agentOf: (h) => agents.get(h) ?? null });

  const lab = await nets.create({ name: 'lab', type: 'overlay', subnet: '10.5.0.0/24' });
  await nets.create({ name: 'out', type: 'nat', subnet: '10.6.0.0/24' });
  await db
    .insertInto('vms')
    .values({
      id: 'vm-1',
      name: 'web-1',
      state: 'stopped',
      spec: '{}',
      diskSizes: '[]',
      guest: '{}',
      cpuMode: 'compat',
      createdAt: 't',
      updatedAt: 't',
    } as never)
    .execute();
  await db
    .insertInto('nics')
    .values({
      mac: '02:74:6e:00:00:01',
      vmId: 'vm-1',
      networkId: lab.id,
      ip: '10.5.0.2',
      securityGroup: null,
      createdAt: 't',
    })
    .execute();

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
  const h1 = await host(db, 'h1', 'https://10.0.0.1:7411');
  const agent = new FakeAgent();
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
  const h1 = await host(db, 'h1', 'https://10.0.0.1:7411');
  const agents = new Map<string, FakeAgent>([[h1, new FakeAgent()]]);
  const sync = new NetworkSync({ db, log, agentOf: (h) => agents.get(h) ?? null });
  const lab = await nets.create({ name: 'lab', type: 'overlay', subnet: '10.5.0.0/24' });
  await sync.sync(h1);
  assert.deepEqual(agents.get(h1)!.held.get(lab.id)?.overlay?.peers, []);
  const h2 = await host(db, 'h2', 'https://10.0.0.2:7411');
  agents.set(h2, new FakeAgent());
  sync.hostReported(h2);
  await sync.settled();
  assert.deepEqual(agents.get(h1)!.held.get(lab.id)?.overlay?.peers, ['10.0.0.2']);
  assert.deepEqual(agents.get(h2)!.held.get(lab.id)?.overlay?.peers, ['10.0.0.1']);
});

test('a change sends each host only the networks that changed for it; a host that reconnects gets them all', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db);
  const h1 = await host(db, 'h1', 'https://10.0.0.1:7411');
  const agent = new FakeAgent();
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
  await db
    .insertInto('vms')
    .values({
      id: 'vm-1',
      name: 'web-1',
      state: 'stopped',
      spec: '{}',
      diskSizes: '[]',
      guest: '{}',
      cpuMode: 'compat',
      createdAt: 't',
      updatedAt: 't',
    } as never)
    .execute();
  await db
    .insertInto('nics')
    .values({
      mac: '02:74:6e:00:00:01',
      vmId: 'vm-1',
      networkId: a.id,
      ip: '10.1.0.2',
      securityGroup: null,
      createdAt: 't',
    })
    .execute();
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
