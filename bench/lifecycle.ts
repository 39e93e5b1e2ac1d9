/**
 * bench/lifecycle: (1) from `create`+`start` to the first guest agent answer of the tiny guest
 * through Tern, side by side with the floor: the same QEMU command line launched by hand, with
 * its overlay and seed made by hand; (2) list and show latency with 10,000 VMs in the inventory,
 * against the manager's unauthenticated health route as the floor of one HTTP round trip.
 *
 *   node bench/lifecycle.ts [--runs 3] [--vms 10000] [--requests 200]
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import { detectAccelerator } from '../src/agent/qemu/accelerator.ts';
import { buildCommandLine } from '../src/agent/qemu/command-line.ts';
import { QgaClient } from '../src/agent/qemu/qga.ts';
import { createSeed, createVolume } from '../src/agent/storage/volumes.ts';
import { planVm, randomMac, seedMetaData } from '../src/manager/vms/plan.ts';
import type { Template } from '../src/wire/template.ts';
import { emptyGuestInfo, type Vm } from '../src/wire/vm.ts';
import { startCluster } from '../test/harness.ts';
import { median, percentile, table } from './report.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    vms: { type: 'string', default: '10000' },
    requests: { type: 'string', default: '200' },
  },
});
const runs = Number(values.runs);
const inventorySize = Number(values.vms);
const requests = Number(values.requests);

const ms = (n: number) => `${n.toFixed(n < 10 ? 2 : 0)}`;

/** The floor: overlay, seed and QEMU by hand, then guest-ping until the guest agent answers. */
async function rawBoot(template: Template, pool: string, dir: string): Promise<number> {
  const id = randomUUID();
  const pools = { local: pool };
  const t0 = performance.now();
  const plan = planVm({ name: `raw-${id.slice(0, 8)}` }, template, id, 'local', () => randomMac(randomBytes));
  for (const v of plan.volumes) await createVolume(pools, v);
  await createSeed(pools, { volume: plan.spec.seed!, metaData: seedMetaData(plan.spec) });
  const run = path.join(dir, id.slice(0, 8));
  fs.mkdirSync(run);
  const paths = {
    qmp: `${run}/qmp.sock`,
    qga: `${run}/qga.sock`,
    serial: `${run}/serial.sock`,
    consoleLog: `${run}/console.log`,
    pidfile: `${run}/qemu.pid`,
  };
  const r = (ref: { path: string }) => path.join(pool, ref.path);
  const args = buildCommandLine(
    plan.spec,
    {
      disks: plan.spec.disks.map((d) => r(d.volume)),
      seed: r(plan.spec.seed!),
      kernel: r(plan.spec.boot!.kernel),
      initrd: r(plan.spec.boot!.initrd!),
    },
    paths,
    detectAccelerator(),
  );
  const child = spawn('qemu-system-x86_64', args, { stdio: 'ignore', detached: true });
  try {
    while (!fs.existsSync(paths.qga)) await new Promise((res) => setTimeout(res, 10));
    const qga = new QgaClient(paths.qga);
    for (let i = 0; ; i++) {
      try {
        await qga.execute('guest-ping', undefined, { timeoutMs: 500 });
        break;
      } catch (err) {
        if (i > 600) throw err;
      }
    }
    qga.close();
    return performance.now() - t0;
  } finally {
    child.kill('SIGKILL');
  }
}

async function ternBoot(
  c: Awaited<ReturnType<typeof startCluster>>,
  name: string,
): Promise<{ total: number; started: number }> {
  const t0 = performance.now();
  const r = await c.api.request<{ task: { id: string } }>('POST', '/api/v1/vms', {
    name,
    template: 'tiny',
    start: true,
  });
  let started = 0;
  const task = await c.api.settle(r.task as never);
  started = performance.now() - t0;
  if (task.state !== 'succeeded') throw new Error(`create failed: ${JSON.stringify(task.error)}`);
  await c.api.waitVm(name, (v: Vm) => v.guest.agent === 'responding', 120_000, 'answering');
  const total = performance.now() - t0;
  await c.api.task('DELETE', `/api/v1/vms/${name}?force=true`);
  return { total, started };
}

async function latency(
  c: Awaited<ReturnType<typeof startCluster>>,
  route: string,
  auth: boolean,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    const res = await c.api.fetch(`${c.api.url}${route}`, {
      headers: auth ? { authorization: `Bearer ${c.api.token}` } : {},
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`${route}: ${res.status}`);
    out.push(performance.now() - t0);
  }
  return out;
}

const c = await startCluster('bench');
try {
  const template = await c.api.request<Template>('GET', '/api/v1/templates/tiny');
  const rawDir = fs.mkdtempSync('/tmp/tern-raw-');
  console.log(
    `# boot to first guest agent answer, tiny guest, ${detectAccelerator().accelerator}, ${runs} runs each`,
  );
  const rows: (string | number)[][] = [];
  const raw: number[] = [];
  const tern: number[] = [];
  for (let i = 0; i < runs; i++) {
    raw.push(await rawBoot(template, c.pool, rawDir));
    const t = await ternBoot(c, `bench-${i}`);
    tern.push(t.total);
    rows.push([i + 1, ms(raw[i]), ms(t.started), ms(t.total), `${(t.total / raw[i]).toFixed(2)}x`]);
  }
  rows.push(['median', ms(median(raw)), '', ms(median(tern)), `${(median(tern) / median(raw)).toFixed(2)}x`]);
  table(['run', 'raw qemu ms', 'tern qemu started ms', 'tern agent answers ms', 'tern/raw'], rows);
  fs.rmSync(rawDir, { recursive: true, force: true });

  // Fill the inventory straight through the database: making 10,000 real VMs is not the point.
  const host = (await c.api.request<{ items: { id: string }[] }>('GET', '/api/v1/hosts')).items[0];
  const db = new DatabaseSync(path.join(c.dir, 'tern.db'));
  db.exec('PRAGMA busy_timeout = 5000');
  const insert = db.prepare(
    'insert into vms (id, name, host_id, state, state_reason, template, spec, disk_sizes, guest, vnc_port, created_at, updated_at) values (?, ?, ?, ?, null, ?, ?, ?, ?, null, ?, ?)',
  );
  const now = new Date().toISOString();
  db.exec('begin');
  for (let i = 0; i < inventorySize; i++) {
    const id = randomUUID();
    const plan = planVm({ name: `vm-${String(i).padStart(5, '0')}` }, template, id, 'local', () =>
      randomMac(randomBytes),
    );
    const guest = emptyGuestInfo();
    insert.run(
      id,
      plan.spec.name,
      host.id,
      i % 3 === 0 ? 'running' : 'stopped',
      'tiny',
      JSON.stringify(plan.spec),
      JSON.stringify(plan.diskSizes),
      JSON.stringify(guest),
      now,
      now,
    );
  }
  db.exec('commit');
  db.close();

  console.log(
    `\n# API latency with ${inventorySize} VMs in the inventory, ${requests} sequential requests each`,
  );
  const routes: [string, string, boolean][] = [
    ['health (floor: one HTTP round trip)', '/api/v1/health', false],
    ['list first page of 100', '/api/v1/vms?limit=100', true],
    ['list page of 100 mid-way (cursor)', '/api/v1/vms?limit=100&cursor=vm-05000', true],
    ['list filtered by state, 100', '/api/v1/vms?limit=100&state=running', true],
    ['list name prefix vm-099', '/api/v1/vms?name=vm-099', true],
    ['list 1000', '/api/v1/vms?limit=1000', true],
    ['show one VM by name', '/api/v1/vms/vm-05000', true],
  ];
  const lrows: (string | number)[][] = [];
  let listP50 = 0;
  let showP50 = 0;
  for (const [label, route, auth] of routes) {
    const xs = await latency(c, route, auth);
    lrows.push([label, ms(percentile(xs, 0.5)), ms(percentile(xs, 0.95)), ms(percentile(xs, 0.99))]);
    if (route === '/api/v1/vms?limit=100') listP50 = percentile(xs, 0.5);
    if (route === '/api/v1/vms/vm-05000') showP50 = percentile(xs, 0.5);
  }
  table(['request', 'p50 ms', 'p95 ms', 'p99 ms'], lrows);
  console.log(
    `\nfigure: boot to guest agent tern ${ms(median(tern))} ms vs raw ${ms(median(raw))} ms (${(median(tern) / median(raw)).toFixed(2)}x); list 100 of ${inventorySize} p50 ${ms(listP50)} ms, show p50 ${ms(showP50)} ms`,
  );
} finally {
  await c.stop();
}
