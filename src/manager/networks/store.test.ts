import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Db, openDatabase } from '../db/database.ts';
import { insertNic, insertVm } from './fixtures.ts';
import { SecurityGroupStore } from './security-groups.ts';
import { NetworkStore } from './store.ts';

let counter = 0;
/** Predictable "random" bytes, so two allocations may be made to meet. */
const fixed = (b: number[]) => () => Buffer.from(b);

const vm = (db: Db, name: string) =>
  insertVm(db, `00000000-0000-4000-8000-${String(++counter).padStart(12, '0')}`, name);

test('a network is made whole, listed with its NICs, and cannot go while a NIC is on it', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db);
  const n = await nets.create({ name: 'lab', type: 'overlay', subnet: '10.5.0.0/24' });
  assert.equal(n.gateway, '10.5.0.1');
  assert.equal(n.vni, 10000);
  assert.match(n.bridge, /^tn[0-9a-f]{8}$/);
  await assert.rejects(
    nets.create({ name: 'lab', type: 'nat', subnet: '10.6.0.0/24' }),
    /a network with the name lab exists/,
  );
  const second = await nets.create({ name: 'lab2', type: 'overlay', subnet: '10.6.0.0/24' });
  assert.equal(second.vni, 10001);

  const row = await nets.row('lab');
  const vmId = await vm(db, 'web-1');
  const ip = await nets.address(row);
  assert.equal(ip, '10.5.0.2');
  const mac = await nets.freeMac();
  await insertNic(db, { mac, vmId, networkId: row.id, ip });
  assert.equal(await nets.address(row), '10.5.0.3', 'an address in use is not given again');
  assert.equal((await nets.list()).find((x) => x.name === 'lab')?.nics, 1);
  await assert.rejects(
    nets.remove('lab'),
    (e: Error & { code?: string }) => e.code === 'conflict' && /in use by web-1/.test(e.message),
  );

  await db.deleteFrom('vms').where('id', '=', vmId).execute();
  assert.equal((await nets.get('lab')).nics, 0, "a VM's NICs go with it, and their addresses are free again");
  await nets.remove('lab');
  await assert.rejects(nets.get('lab'), /does not exist/);
});

test('the database itself refuses two NICs with one MAC, or one address twice in a network', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db, fixed([1, 2, 3]));
  const row = await nets.row((await nets.create({ name: 'n', type: 'nat', subnet: '10.7.0.0/24' })).id);
  const a = await vm(db, 'a');
  const b = await vm(db, 'b');
  const mac = await nets.freeMac();
  assert.equal(mac, '02:74:6e:01:02:03');
  await insertNic(db, { mac, vmId: a, networkId: row.id, ip: '10.7.0.2' });
  assert.equal(await nets.freeMac(), '02:74:6e:01:02:04', 'the same random start walks past a MAC in use');
  assert.equal(await nets.freeMac(new Set(['02:74:6e:01:02:04'])), '02:74:6e:01:02:05');
  await assert.rejects(nets.requestedMac('02:74:6E:01:02:03'), /in use/);
  await assert.rejects(
    db
      .insertInto('nics')
      .values({ mac, vmId: b, networkId: null, ip: null, securityGroup: null, createdAt: 't' })
      .execute(),
    /UNIQUE/,
  );
  await assert.rejects(
    db
      .insertInto('nics')
      .values({
        mac: '02:00:00:00:00:09',
        vmId: b,
        networkId: row.id,
        ip: '10.7.0.2',
        securityGroup: null,
        createdAt: 't',
      })
      .execute(),
    /UNIQUE/,
  );
  await assert.rejects(nets.address(row, '10.7.0.2'), /in use/);
});

test('a security group in use, or named by another group’s rule, cannot go', async () => {
  const db = await openDatabase(':memory:');
  const groups = new SecurityGroupStore(db);
  const web = await groups.create({
    name: 'web',
    rules: [{ direction: 'in', protocol: 'tcp', ports: { from: 80, to: 80 } }],
  });
  assert.equal(web.inbound, 'deny');
  assert.equal(web.outbound, 'allow');
  await assert.rejects(
    groups.create({ name: 'x', rules: [{ direction: 'in', protocol: 'icmp', ports: { from: 1, to: 2 } }] }),
    /ports are for tcp and udp/,
  );
  await assert.rejects(
    groups.create({ name: 'x', rules: [{ direction: 'in', protocol: 'any', peer: { group: 'nope' } }] }),
    /nope does not exist/,
  );
  await groups.create({ name: 'db', rules: [{ direction: 'in', protocol: 'tcp', peer: { group: 'web' } }] });
  await assert.rejects(groups.remove('web'), /db has a rule naming web/);
  const updated = await groups.update('db', { rules: [] });
  assert.deepEqual(updated.rules, []);
  const a = await vm(db, 'a');
  await db
    .insertInto('nics')
    .values({
      mac: '02:74:6e:00:00:01',
      vmId: a,
      networkId: null,
      ip: null,
      securityGroup: web.id,
      createdAt: 't',
    })
    .execute();
  await assert.rejects(groups.remove('web'), /in use by a NIC of VM a/);
  await db.deleteFrom('vms').execute();
  await groups.remove('web');
  assert.deepEqual(
    (await groups.list()).map((g) => g.name),
    ['db'],
  );
});

test('what is given to a NIC not recorded yet is never given again until released', async () => {
  const db = await openDatabase(':memory:');
  const nets = new NetworkStore(db, fixed([9, 9, 9]));
  const row = await nets.row((await nets.create({ name: 'n', type: 'nat', subnet: '10.8.0.0/24' })).id);
  const first = { mac: await nets.freeMac(), ip: await nets.address(row) };
  const second = { mac: await nets.freeMac(), ip: await nets.address(row) };
  assert.deepEqual([first.ip, second.ip], ['10.8.0.2', '10.8.0.3']);
  assert.notEqual(first.mac, second.mac);
  await assert.rejects(nets.address(row, '10.8.0.2'), /in use/);
  nets.release([{ ...first, networkId: row.id }]);
  assert.equal(await nets.address(row), '10.8.0.2', 'released: free again');
  assert.equal(await nets.freeMac(), first.mac);
});
