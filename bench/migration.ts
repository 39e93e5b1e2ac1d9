/**
 * bench/migration: `tern vm migrate` end to end on a two-host cluster with a shared pool, side by
 * side in the same run with the floor (bench/migration-raw.ts): the same guest image, memory,
 * CPU model, downtime limit and bandwidth, two QEMU processes started by hand and one `migrate`
 * over raw QMP. Tern and raw migrations alternate (which goes first alternates too), both guests running all along, so noise from
 * other work on the machine falls on both. Then mirrored-storage migrations (a full clone in
 * each host's local pool) and quick migrations, reported on their own.
 *
 * Scope: Tern's wall time runs from the POST to the client seeing the task succeed on the event
 * stream (what `tern vm migrate` waits for); it includes starting the target QEMU, the memory
 * copy, resuming the target and ending the source. The raw wall time runs from spawning the
 * target QEMU to the target running (its RESUME event).
 *
 *   node bench/migration.ts [--runs 10] [--mirror 2] [--quick 2]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { detectAccelerator } from '../src/agent/qemu/accelerator.ts';
import { waitForTask } from '../src/cli/progress.ts';
import { defaultSettings } from '../src/manager/cluster/settings.ts';
import type { MigrationOutcome } from '../src/manager/migration/migrate.ts';
import type { ManagerEvent } from '../src/wire/event.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, startCluster } from '../test/harness.ts';
import { RawGuest, type RawMigrationResult } from './migration-raw.ts';
import { loadavg, median, table } from './report.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    mirror: { type: 'string', default: '2' },
    quick: { type: 'string', default: '2' },
  },
});
const runs = Number(values.runs);
const mirrorRuns = Number(values.mirror);
const quickRuns = Number(values.quick);
const goal = 1.3;

const ms = (n: number) => (Number.isFinite(n) ? `${n.toFixed(n < 10 ? 1 : 0)}` : '-');
const spread = (all: number[]) => {
  const xs = all.filter(Number.isFinite);
  return xs.length ? [ms(median(xs)), ms(Math.min(...xs)), ms(Math.max(...xs))] : ['-', '-', '-'];
};
/** Wall clock in ms with sub-ms resolution: comparable with the agents' log times. */
const now = () => performance.timeOrigin + performance.now();

/** When each task first reached each step and each state, as the event stream showed it. */
class TaskWatch {
  readonly seen = new Map<string, Map<string, number>>();
  readonly #stop = new AbortController();

  constructor(c: Cluster) {
    c.api
      .events(
        '',
        (e: ManagerEvent) => {
          if (e.type !== 'task') return;
          const t = e.task;
          const m = this.seen.get(t.id) ?? new Map<string, number>();
          this.seen.set(t.id, m);
          const at = now();
          for (const k of [`step:${t.step}`, `state:${t.state}`]) if (!m.has(k)) m.set(k, at);
        },
        this.#stop.signal,
      )
      .catch(() => {});
  }

  close(): void {
    this.#stop.abort();
  }
}

/** The agents' JSON log lines (pino: `time` in epoch ms) with a given message, per VM. */
function agentLines(c: Cluster, msg: string, vmId: string): { host: string; time: number }[] {
  const out: { host: string; time: number }[] = [];
  for (const h of c.hosts) {
    const file = path.join(c.dir, `agent-${h.name}.log`);
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!line.includes(msg) || !line.includes(vmId)) continue;
      try {
        const j = JSON.parse(line) as { msg?: string; vm?: string; time: number };
        if (j.msg === msg && j.vm === vmId) out.push({ host: h.name, time: j.time });
      } catch {
        // Not a log line of ours.
      }
    }
  }
  return out;
}

interface TernRun {
  wallMs: number;
  outcome: MigrationOutcome;
  /** Client-clock times (epoch ms) of the points of the task that the breakdown uses. */
  t: Record<string, number>;
}

async function ternMigrate(
  c: Cluster,
  watch: TaskWatch,
  name: string,
  body: Record<string, unknown>,
): Promise<TernRun> {
  const vm = await c.api.request<Vm>('GET', `/api/v1/vms/${name}`);
  const to = c.hosts.map((h) => h.name).find((h) => h !== vm.host)!;
  const t0 = now();
  const r = await c.api.request<{ task: Task }>('POST', `/api/v1/vms/${name}/migrate`, { to, ...body });
  const accepted = now();
  await waitForTask(c.api, r.task, true);
  const done = now();
  const task = await c.api.request<Task>('GET', `/api/v1/tasks/${r.task.id}`);
  if (task.state !== 'succeeded') throw new Error(`migration failed: ${JSON.stringify(task.error)}`);
  const steps = watch.seen.get(task.id) ?? new Map<string, number>();
  const since = (x: number) => (l: { time: number }) => l.time >= x - 5;
  const first = (msg: string) => agentLines(c, msg, vm.id).find(since(t0))?.time ?? Number.NaN;
  // The agents' stderr reaches their log files through a pipe: wait for the last line to land.
  for (let i = 0; i < 100 && Number.isNaN(first('released a VM that migrated away')); i++)
    await new Promise((res) => setTimeout(res, 20));
  return {
    wallMs: done - t0,
    outcome: task.result as MigrationOutcome,
    t: {
      post: t0,
      accepted,
      running: steps.get('state:running') ?? Number.NaN,
      prepare: steps.get('step:preparing the target') ?? Number.NaN,
      listening: first('waiting for an incoming VM'),
      send: steps.get('step:sending memory') ?? steps.get('step:mirroring disks, then memory') ?? Number.NaN,
      migrated: first('migrated VM'),
      resumed: first('incoming VM runs'),
      released: first('released a VM that migrated away'),
      succeeded: steps.get('state:succeeded') ?? Number.NaN,
      seen: done,
    },
  };
}

async function boot(c: Cluster, name: string, extra: Record<string, unknown> = {}): Promise<Vm> {
  const r = await c.api.request<{ task: Task }>('POST', '/api/v1/vms', {
    name,
    template: 'tiny',
    start: true,
    ...extra,
  });
  await waitForTask(c.api, r.task, true);
  return c.api.waitVm(
    name,
    (v) => v.state === 'running' && v.guest.agent === 'responding',
    180_000,
    'answering',
  );
}

const c = await startCluster('migbench', { hosts: ['a', 'b'], shared: true });
const watch = new TaskWatch(c);
let raw: RawGuest | null = null;
try {
  const vm = await boot(c, 'mig');
  console.log(
    `# live migration, tiny guest (${vm.memoryMiB} MiB, CPU ${vm.cpuModel}), ${detectAccelerator().accelerator}, downtime limit ${defaultSettings.migrationDowntimeMs} ms, bandwidth ${defaultSettings.migrationBandwidthMiBps || 'unlimited'} MiB/s, ${runs} runs each, load ${loadavg()}`,
  );
  raw = await RawGuest.boot({ cpuModel: vm.cpuModel, memoryMiB: vm.memoryMiB });
  // One of each first: the first spawn of anything after a boot pays for cold caches.
  await ternMigrate(c, watch, 'mig', {});
  await raw.migrate();

  const tern: TernRun[] = [];
  const rawRuns: RawMigrationResult[] = [];
  const perRun: (string | number)[][] = [];
  for (let i = 0; i < runs; i++) {
    // Which goes first alternates, so a drift in background load favours neither.
    let r: RawMigrationResult | null = i % 2 ? await raw.migrate() : null;
    const t = await ternMigrate(c, watch, 'mig', {});
    r ??= await raw.migrate();
    tern.push(t);
    rawRuns.push(r);
    perRun.push([
      i + 1,
      `${t.outcome.from}→${t.outcome.to}`,
      ms(t.wallMs),
      ms(t.outcome.downtimeMs),
      ms(t.outcome.qemuDowntimeMs),
      ms(r.wallMs),
      ms(r.eventDowntimeMs),
      ms(r.qemuDowntimeMs),
      `${(t.wallMs / r.wallMs).toFixed(2)}x`,
    ]);
  }
  raw.close();
  raw = null;
  table(
    [
      'run',
      'tern',
      'tern wall',
      'tern downtime',
      'tern qemu dt',
      'raw wall',
      'raw downtime',
      'raw qemu dt',
      'tern/raw',
    ],
    perRun,
  );

  console.log('\n# summary, ms (median, min, max)');
  const tw = tern.map((t) => t.wallMs);
  const rw = rawRuns.map((r) => r.wallMs);
  table(
    ['measure', 'tern med', 'min', 'max', 'raw med', 'min', 'max'],
    [
      ['wall time', ...spread(tw), ...spread(rw)],
      [
        'downtime (source stop → target resume)',
        ...spread(tern.map((t) => t.outcome.downtimeMs)),
        ...spread(rawRuns.map((r) => r.eventDowntimeMs)),
      ],
      [
        'QEMU downtime',
        ...spread(tern.map((t) => t.outcome.qemuDowntimeMs)),
        ...spread(rawRuns.map((r) => r.qemuDowntimeMs)),
      ],
      [
        'MiB sent',
        ...spread(tern.map((t) => t.outcome.transferredBytes / 2 ** 20)),
        ...spread(rawRuns.map((r) => r.transferredBytes / 2 ** 20)),
      ],
    ],
  );
  console.log(
    'scope: tern = POST /vms/NAME/migrate until the client sees the task succeed (target QEMU start, memory copy, resume, source ended);',
  );
  console.log(
    '       raw  = spawn of the target QEMU (-incoming tcp:) until its RESUME event; ending the source is not included',
  );

  // Where Tern's time goes: consecutive points, client clock (event stream) and the agents'
  // log times (same machine clock), medians over the runs.
  console.log("\n# where tern's wall time goes, ms (median over the runs; raw counterpart where one exists)");
  const d = (a: string, b: string) => tern.map((t) => t.t[b] - t.t[a]);
  const rawMed = (f: (r: RawMigrationResult) => number) => ms(median(rawRuns.map(f)));
  table(
    ['phase', 'median', 'min', 'max', 'raw median'],
    [
      ['POST answered (202)', ...spread(d('post', 'accepted')), ''],
      ['202 → task running', ...spread(d('accepted', 'running')), ''],
      ['running → step "preparing the target" (checks)', ...spread(d('running', 'prepare')), ''],
      [
        'target agent: QEMU started, listening (log)',
        ...spread(d('prepare', 'listening')),
        rawMed((r) => r.targetStartMs),
      ],
      ['→ step "sending memory"', ...spread(d('listening', 'send')), ''],
      ['source agent: migration done (log)', ...spread(d('send', 'migrated')), rawMed((r) => r.migrateMs)],
      [
        'target agent: guest runs (log; resumed when the source said done)',
        ...spread(d('migrated', 'resumed')),
        '',
      ],
      [
        'source agent: source released (log)',
        ...spread(d('resumed', 'released')),
        `(quit ${rawMed((r) => r.quitSourceMs)})`,
      ],
      ['→ task succeeded', ...spread(d('released', 'succeeded')), ''],
      ['→ client sees it', ...spread(d('succeeded', 'seen')), ''],
      ['task totalMs (manager, run start → end)', ...spread(tern.map((t) => t.outcome.totalMs)), ''],
    ],
  );

  // The floor of one manager → agent call (mutual TLS, connection kept alive): a migration
  // makes four (prepare, migrate, finish, release).
  const agent = await c.agentClient((await c.api.request<Vm>('GET', '/api/v1/vms/mig')).host!);
  const calls: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = now();
    await agent.getVm(vm.id);
    calls.push(now() - t0);
  }
  console.log(
    `manager → agent call floor (GET one VM, 30 sequential, mutual TLS): median ${ms(median(calls))} ms, min ${ms(Math.min(...calls))}, max ${ms(Math.max(...calls))}`,
  );

  // Quick migrations of the same VM: suspended to the shared pool, resumed on the other host.
  const quick: TernRun[] = [];
  for (let i = 0; i < quickRuns; i++) quick.push(await ternMigrate(c, watch, 'mig', { mode: 'quick' }));
  await c.api.task('DELETE', '/api/v1/vms/mig?force=true');

  // Mirrored storage: a full clone in the host's local pool, its disk copied over NBD.
  const mirror: TernRun[] = [];
  if (mirrorRuns > 0) {
    await boot(c, 'mirror', { pool: 'local', full: true });
    for (let i = 0; i < mirrorRuns; i++) mirror.push(await ternMigrate(c, watch, 'mirror', {}));
  }
  console.log('\n# other kinds (tern only), ms (median, min, max)');
  const kind = (label: string, xs: TernRun[]) => [
    [`${label} wall`, xs.length, ...spread(xs.map((t) => t.wallMs))],
    [`${label} downtime`, xs.length, ...spread(xs.map((t) => t.outcome.downtimeMs))],
    [`${label} QEMU downtime`, xs.length, ...spread(xs.map((t) => t.outcome.qemuDowntimeMs))],
    [`${label} MiB sent`, xs.length, ...spread(xs.map((t) => t.outcome.transferredBytes / 2 ** 20))],
  ];
  table(
    ['measure', 'runs', 'median', 'min', 'max'],
    [...(mirror.length ? kind('mirror', mirror) : []), ...(quick.length ? kind('quick', quick) : [])],
  );
  console.log(
    `storage: ${[...new Set(mirror.map((t) => t.outcome.storage))].join(',') || '-'} (mirror runs), quick downtime = source stop → target resume (the guest is down for the whole save and load)`,
  );

  const ratio = median(tw) / median(rw);
  const paired = median(tern.map((t, i) => t.wallMs / rawRuns[i].wallMs));
  console.log(
    `median of the per-run ratios (each Tern run against the raw run next to it): ${paired.toFixed(2)}x`,
  );
  console.log(
    `\ntern vm migrate: ${ratio.toFixed(2)}x raw wall time (goal ${goal}x): ${ms(median(tw))} ms vs ${ms(median(rw))} ms, downtime ${ms(median(tern.map((t) => t.outcome.downtimeMs)))} vs ${ms(median(rawRuns.map((r) => r.eventDowntimeMs)))} ms`,
  );
} finally {
  raw?.close();
  watch.close();
  await c.stop();
}
