/**
 * bench/network-sync: the manager's side of giving hosts their networks, without the transport
 * (each host's agent is an in-process stand-in that keeps what it is given, as the sim driver's
 * networks do). A cluster of hosts and overlay networks with one NIC per VM; measured: giving
 * every host everything (as when they all reconnect after a manager restart), and one change (a
 * VM made on one network: one more lease) reaching every host, with how many network specs were
 * sent. The baseline in the same run sends every network to every host on the change, as a
 * reconnect does.
 *
 *   node bench/network-sync.ts [--hosts 500] [--networks 10] [--vms 10000]
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { openDatabase } from '../src/manager/db/database.ts';
import { insertHost, insertNic, insertVm, KeepingAgent } from '../src/manager/networks/fixtures.ts';
import { NetworkSync } from '../src/manager/networks/host-sync.ts';
import { NetworkStore } from '../src/manager/networks/store.ts';
import { loadavg, table } from './report.ts';

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '500' },
    networks: { type: 'string', default: '10' },
    vms: { type: 'string', default: '10000' },
  },
});
const hostCount = Number(values.hosts);
const networkCount = Number(values.networks);
const vmCount = Number(values.vms);

const db = await openDatabase(':memory:');
const nets = new NetworkStore(db);
const agents = new Map<string, KeepingAgent>();
for (let i = 0; i < hostCount; i++) {
  const id = await insertHost(db, `h${i}`, `https://10.${Math.floor(i / 250)}.${i % 250}.1:7411`);
  agents.set(id, new KeepingAgent());
}
const networkIds: string[] = [];
for (let n = 0; n < networkCount; n++)
  networkIds.push(
    (await nets.create({ name: `net${n}`, type: 'overlay', subnet: `10.${100 + n}.0.0/16` })).id,
  );
const vm = async (i: number) => {
  const id = `10000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  await insertVm(db, id, `vm${i}`);
  const network = await nets.row(networkIds[i % networkCount]!);
  const ip = await nets.address(network);
  const mac = await nets.freeMac();
  await insertNic(db, { mac, vmId: id, networkId: network.id, ip });
  nets.release([{ mac, networkId: network.id, ip }]);
};
for (let i = 0; i < vmCount; i++) await vm(i);

const sync = new NetworkSync({ db, log: pino({ level: 'silent' }), agentOf: (h) => agents.get(h) ?? null });
const puts = () =>
  [...agents.values()].reduce((a, x) => a + x.calls.filter((c) => c.startsWith('put ')).length, 0);

async function measure(what: string, act: () => void) {
  const before = puts();
  const t0 = performance.now();
  act();
  await sync.settled();
  return [what, Math.round(performance.now() - t0), puts() - before] as const;
}

const rows = [];
rows.push(
  await measure('every host, everything (reconnect)', () => {
    for (const h of agents.keys()) sync.hostReported(h);
  }),
);
await vm(vmCount);
rows.push(await measure('one VM made: the change', () => sync.changed()));
await vm(vmCount + 1);
rows.push(
  await measure('one VM made: baseline (all sent)', () => {
    for (const h of agents.keys()) sync.hostReported(h);
  }),
);

console.log(`${hostCount} hosts, ${networkCount} overlay networks, ${vmCount} NICs; load ${loadavg()}\n`);
table(
  ['what', 'ms', 'specs sent'],
  rows.map((r) => [...r]),
);
const change = rows[1]!;
console.log(
  `\nFigure: one change reaches ${hostCount} hosts in ${change[1]} ms sending ${change[2]} specs (baseline ${rows[2]![1]} ms, ${rows[2]![2]} specs)`,
);
