/**
 * bench/provisioning: N linked clones of the tiny template on one host. (1) Wall time until all
 * are created, side by side with the floor: a raw `qemu-img create -b` loop (sequential, as a
 * person's script would run it, and in parallel), with and without a `genisoimage` seed per
 * clone, and the same volumes made straight through the host agent; (2) wall time until all are
 * booted with their guest agent answering; (3) the disk space of the clones against the template
 * base and against N full copies; (4) the cost of each call a creation makes, one at a time.
 *
 *   node bench/provisioning.ts [--clones 20] [--runs 3] [--reps 10] [--boot-timeout 900] [--no-boot]
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import type { AgentClient } from '../src/manager/hosts/agent-client.ts';
import type { ClusterSettings } from '../src/wire/cluster.ts';
import type { ManagerEvent } from '../src/wire/event.ts';
import type { Host } from '../src/wire/host.ts';
import type { Task } from '../src/wire/task.ts';
import type { Template } from '../src/wire/template.ts';
import type { Vm, VolumeRef } from '../src/wire/vm.ts';
import { type Cluster, startCluster, tempDir } from '../test/harness.ts';
import { loadavg, median, table } from './report.ts';

const { values } = parseArgs({
  options: {
    clones: { type: 'string', default: '20' },
    runs: { type: 'string', default: '3' },
    reps: { type: 'string', default: '10' },
    'boot-timeout': { type: 'string', default: '900' },
    'no-boot': { type: 'boolean', default: false },
  },
});
const clones = Number(values.clones);
const runs = Number(values.runs);
const reps = Number(values.reps);
const bootTimeoutMs = Number(values['boot-timeout']) * 1000;

const run = promisify(execFile);
const max = (xs: number[]) => Math.max(...xs);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ms = (n: number) => `${n.toFixed(n < 10 ? 2 : 0)}`;
const sec = (n: number) => `${(n / 1000).toFixed(1)}`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const MiB = 1024 * 1024;
const mib = (n: number) => (n / MiB).toFixed(n < 10 * MiB ? 2 : 1);

/** Allocated bytes, as `du` counts them. */
const allocated = (file: string) => fs.statSync(file).blocks * 512;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/**
 * Follows the manager's whole event stream from one connection: when each task first reached
 * each step and a final state, and when each VM's guest agent first answered.
 */
class Watch {
  readonly tasks = new Map<string, Task>();
  readonly taskSteps = new Map<string, Map<string, number>>();
  readonly taskEnded = new Map<string, number>();
  readonly vms = new Map<string, Vm>();
  readonly agentAnswered = new Map<string, number>();
  readonly #stop = new AbortController();
  #waiters: (() => void)[] = [];
  #reading: Promise<void> = Promise.resolve();

  static async open(c: Cluster): Promise<Watch> {
    const w = new Watch();
    const res = await c.api.fetch(`${c.api.url}/api/v1/events`, {
      headers: { authorization: `Bearer ${c.api.token}` },
      signal: w.#stop.signal,
    });
    if (!res.ok || !res.body) throw new Error(`event stream answered ${res.status}`);
    w.#reading = w.#read(res.body).catch((err) => {
      if (!w.#stop.signal.aborted) console.error(`event stream ended: ${(err as Error).message}`);
    });
    return w;
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of body) {
      buffer += decoder.decode(chunk, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const data = buffer
          .slice(0, end)
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        buffer = buffer.slice(end + 2);
        if (data) this.#on(JSON.parse(data) as ManagerEvent, performance.now());
      }
    }
  }

  #on(e: ManagerEvent, at: number): void {
    if (e.type === 'task') {
      this.tasks.set(e.task.id, e.task);
      const steps = this.taskSteps.get(e.task.id) ?? new Map<string, number>();
      if (!steps.has(e.task.step)) steps.set(e.task.step, at);
      this.taskSteps.set(e.task.id, steps);
      if (['succeeded', 'failed', 'cancelled'].includes(e.task.state) && !this.taskEnded.has(e.task.id))
        this.taskEnded.set(e.task.id, at);
    } else if (e.type === 'vm') {
      this.vms.set(e.vm.id, e.vm);
      if (e.vm.guest.agent === 'responding' && !this.agentAnswered.has(e.vm.id))
        this.agentAnswered.set(e.vm.id, at);
    } else {
      return;
    }
    for (const check of this.#waiters) check();
  }

  /** Resolves when `done()` holds, checked on every event; rejects after `timeoutMs`. */
  until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        finish();
        resolve();
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`not ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== check);
      };
      this.#waiters.push(check);
    });
  }

  /** Waits until every task has ended; throws unless all succeeded. */
  async settle(ids: string[], timeoutMs: number, what: string): Promise<number> {
    await this.until(() => ids.every((id) => this.taskEnded.has(id)), timeoutMs, what);
    const failed = ids.map((id) => this.tasks.get(id)!).filter((t) => t.state !== 'succeeded');
    if (failed.length > 0)
      throw new Error(`${what}: ${failed.length} tasks failed, e.g. ${JSON.stringify(failed[0].error)}`);
    return max(ids.map((id) => this.taskEnded.get(id)!));
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#reading;
  }
}

// ---------------------------------------------------------------------------------------------
// The floor: what a person's script does, run from this process.

const seedFiles = (dir: string, name: string) => {
  fs.writeFileSync(path.join(dir, 'meta-data'), `instance-id: ${name}\nlocal-hostname: ${name}\n`);
  fs.writeFileSync(path.join(dir, 'user-data'), '#cloud-config\n{}\n');
  return [path.join(dir, 'meta-data'), path.join(dir, 'user-data')];
};

async function rawClone(base: string, baseFormat: string, dir: string, seed: boolean): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', baseFormat, `${dir}/disk0.qcow2`]);
  if (seed) {
    const files = seedFiles(dir, path.basename(dir));
    await run('genisoimage', [
      '-quiet',
      '-output',
      `${dir}/seed.iso`,
      '-volid',
      'cidata',
      '-joliet',
      '-rock',
      ...files,
    ]);
  }
}

async function floor(
  base: string,
  baseFormat: string,
  scratch: string,
  seed: boolean,
  parallel: boolean,
): Promise<number> {
  const dir = fs.mkdtempSync(path.join(scratch, 'floor-'));
  const dirs = Array.from({ length: clones }, (_, i) => path.join(dir, `web-${i + 1}`));
  const t0 = performance.now();
  if (parallel) await Promise.all(dirs.map((d) => rawClone(base, baseFormat, d, seed)));
  else for (const d of dirs) await rawClone(base, baseFormat, d, seed);
  const wall = performance.now() - t0;
  fs.rmSync(dir, { recursive: true, force: true });
  return wall;
}

// ---------------------------------------------------------------------------------------------
// Straight through the host agent: what the manager's create task asks of it, without the manager.

async function agentClones(agent: AgentClient, template: Template, tag: string): Promise<number> {
  const refs = Array.from({ length: clones }, (_, i) => ({
    disk: { pool: template.disk.pool, path: `bench-${tag}/web-${i + 1}/disk0.qcow2` },
    seed: { pool: template.disk.pool, path: `bench-${tag}/web-${i + 1}/seed.iso` },
  }));
  const t0 = performance.now();
  await Promise.all(
    refs.map(async (r, i) => {
      await agent.createVolume({ volume: r.disk, format: 'qcow2', backing: template.disk });
      await agent.createSeed({
        volume: r.seed,
        metaData: `instance-id: ${tag}-${i}\nlocal-hostname: web-${i}\n`,
      });
    }),
  );
  const wall = performance.now() - t0;
  for (const r of refs) {
    await agent.deleteVolume(r.disk);
    await agent.deleteVolume(r.seed);
  }
  return wall;
}

// ---------------------------------------------------------------------------------------------
// Through Tern: N creates submitted at once, each VM its own task, as `tern vm create web-{1..N}` does.

interface TernCreation {
  wall: number;
  vms: Vm[];
  tasks: string[];
  postMs: number[];
  t0: number;
}

async function ternCreate(c: Cluster, watch: Watch, prefix: string): Promise<TernCreation> {
  const t0 = performance.now();
  const postMs: number[] = [];
  const accepted = await Promise.all(
    Array.from({ length: clones }, async (_, i) => {
      const r = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
        name: `${prefix}-${i + 1}`,
        template: 'tiny',
      });
      postMs.push(performance.now() - t0);
      return r;
    }),
  );
  const tasks = accepted.map((r) => r.task.id);
  const last = await watch.settle(tasks, 300_000, 'all created');
  return { wall: last - t0, vms: accepted.map((r) => r.vm), tasks, postMs, t0 };
}

async function deleteAll(c: Cluster, watch: Watch, vms: Vm[]): Promise<void> {
  const accepted = await Promise.all(
    vms.map((vm) => c.api.request<{ task: Task }>('DELETE', `/api/v1/vms/${vm.id}?force=true`)),
  );
  await watch.settle(
    accepted.map((r) => r.task.id),
    300_000,
    'all deleted',
  );
}

/** Where each create task spent its time, from the step changes on the event stream. */
function phases(watch: Watch, creation: TernCreation) {
  const out = { queued: [] as number[], volume: [] as number[], seed: [] as number[], total: [] as number[] };
  for (const id of creation.tasks) {
    const steps = [...watch.taskSteps.get(id)!.entries()];
    const at = (prefix: string) => steps.find(([s]) => s.startsWith(prefix))?.[1];
    const volume = at('creating ');
    const seed = at('writing the cloud-init seed');
    const end = watch.taskEnded.get(id)!;
    if (volume === undefined || seed === undefined) continue;
    out.queued.push(volume - creation.t0);
    out.volume.push(seed - volume);
    out.seed.push(end - seed);
    out.total.push(end - creation.t0);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

const loadBefore = loadavg();
const scratch = tempDir('tern-prov');
const c = await startCluster('prov');
let watch: Watch | undefined;
let keep: Vm[] = [];
let ok = false;
try {
  // All clones boot at once on one host, one vCPU each: more than a small host's cores times the
  // default overcommit. Starts are admitted against the overcommit, so allow what is measured.
  const [host] = (await c.api.request<{ items: Host[] }>('GET', '/api/v1/hosts')).items;
  const cpuOvercommit = Math.ceil(clones / (host.facts?.cores ?? 1));
  const settings = await c.api.request<ClusterSettings>('GET', '/api/v1/cluster/settings');
  if (settings.cpuOvercommit < cpuOvercommit) {
    await c.api.request('PATCH', '/api/v1/cluster/settings', { cpuOvercommit });
    console.log(`cpuOvercommit ${cpuOvercommit} (${clones} 1-vCPU clones on ${host.facts?.cores} cores)`);
  }
  watch = await Watch.open(c);
  const w = watch;
  const template = await c.api.request<Template>('GET', '/api/v1/templates/tiny');
  const pools: Record<string, string> = { [template.disk.pool]: c.pool };
  const file = (ref: VolumeRef) => path.join(pools[ref.pool] ?? c.pool, ref.path);
  const base = file(template.disk);
  const baseInfo = JSON.parse((await run('qemu-img', ['info', '--output=json', base])).stdout) as {
    format: string;
    'virtual-size': number;
  };
  const baseAlloc = allocated(base);
  const agent = await c.agentClient();
  console.log(`# load before: ${loadBefore}`);
  console.log(
    `# template tiny: ${baseInfo.format}, virtual ${mib(baseInfo['virtual-size'])} MiB, allocated ${mib(baseAlloc)} MiB`,
  );

  // Warm-up, not measured: the manager and agent are long-running services, so their first
  // request (route compilation, JIT) is not what a user's twentieth VM costs.
  const warm = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
    name: 'warm-up',
    template: 'tiny',
  });
  await w.settle([warm.task.id], 60_000, 'warm-up created');
  await deleteAll(c, w, [warm.vm]);
  await floor(base, baseInfo.format, scratch, true, false);

  // 1. Creation, `runs` times; the last run's VMs stay for the boot.
  console.log(`\n# creation of ${clones} linked clones, wall ms, ${runs} runs`);
  const cols = {
    seq: [] as number[],
    seqSeed: [] as number[],
    par: [] as number[],
    parSeed: [] as number[],
    agent: [] as number[],
    tern: [] as number[],
  };
  let lastCreation: TernCreation | undefined;
  const allPhases = {
    queued: [] as number[],
    volume: [] as number[],
    seed: [] as number[],
    total: [] as number[],
  };
  const postMs: number[] = [];
  const rows: (string | number)[][] = [];
  for (let r = 0; r < runs; r++) {
    cols.seq.push(await floor(base, baseInfo.format, scratch, false, false));
    cols.seqSeed.push(await floor(base, baseInfo.format, scratch, true, false));
    cols.par.push(await floor(base, baseInfo.format, scratch, false, true));
    cols.parSeed.push(await floor(base, baseInfo.format, scratch, true, true));
    cols.agent.push(await agentClones(agent, template, `r${r}`));
    const creation = await ternCreate(c, w, `r${r}-web`);
    cols.tern.push(creation.wall);
    const p = phases(w, creation);
    for (const k of Object.keys(allPhases) as (keyof typeof allPhases)[]) allPhases[k].push(...p[k]);
    postMs.push(...creation.postMs);
    rows.push([
      r + 1,
      ms(cols.seq[r]),
      ms(cols.seqSeed[r]),
      ms(cols.par[r]),
      ms(cols.parSeed[r]),
      ms(cols.agent[r]),
      ms(creation.wall),
      ratio(creation.wall, cols.seq[r]),
      ratio(creation.wall, cols.seqSeed[r]),
    ]);
    if (r < runs - 1) await deleteAll(c, w, creation.vms);
    else lastCreation = creation;
  }
  keep = lastCreation!.vms;
  rows.push([
    'median',
    ms(median(cols.seq)),
    ms(median(cols.seqSeed)),
    ms(median(cols.par)),
    ms(median(cols.parSeed)),
    ms(median(cols.agent)),
    ms(median(cols.tern)),
    ratio(median(cols.tern), median(cols.seq)),
    ratio(median(cols.tern), median(cols.seqSeed)),
  ]);
  table(
    [
      'run',
      'floor seq',
      'floor seq+seed',
      'floor par',
      'floor par+seed',
      'agent direct par',
      'tern',
      'tern/floor seq',
      'tern/seq+seed',
    ],
    rows,
  );

  console.log(`\n# where a create task's time goes, ${clones} submitted at once (all runs, ms)`);
  table(
    ['phase', 'median', 'max'],
    [
      ['POST /api/v1/vms answered (from first POST)', ms(median(postMs)), ms(max(postMs))],
      ['first POST to task at its volume step', ms(median(allPhases.queued)), ms(max(allPhases.queued))],
      ['volume step (agent POST /volumes)', ms(median(allPhases.volume)), ms(max(allPhases.volume))],
      ['seed step (agent POST /volumes/seed) + state', ms(median(allPhases.seed)), ms(max(allPhases.seed))],
      ['first POST to task succeeded', ms(median(allPhases.total)), ms(max(allPhases.total))],
    ],
  );

  // 2. Disk space right after creation.
  const vmFiles = (vm: Vm) => {
    const disk = file(vm.disks[0].volume);
    return { disk, seed: path.join(path.dirname(disk), 'seed.iso') };
  };
  const space = () => {
    const files = keep.map(vmFiles);
    return {
      disks: files.reduce((a, f) => a + allocated(f.disk), 0),
      seeds: files.reduce((a, f) => a + allocated(f.seed), 0),
    };
  };
  const created = space();

  // 3. The cost of each call, one at a time on an idle host.
  console.log(`\n# one call at a time, ${reps} reps, ms`);
  const oneDir = fs.mkdtempSync(path.join(scratch, 'one-'));
  const each = async (fn: (i: number) => Promise<unknown>) => {
    const xs: number[] = [];
    for (let i = 0; i < reps; i++) xs.push(await timed(() => fn(i)));
    return xs;
  };
  const oneRef = (i: number, f: string) => ({ pool: template.disk.pool, path: `bench-one/${i}/${f}` });
  const calls: [string, number[]][] = [
    ['spawn `true` (process spawn from Node)', await each(() => run('true', []))],
    [
      'qemu-img create -b (process)',
      await each((i) =>
        run('qemu-img', [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-b',
          base,
          '-F',
          baseInfo.format,
          `${oneDir}/${i}.qcow2`,
        ]),
      ),
    ],
    [
      'qemu-img info -U --output=json (process)',
      await each(() => run('qemu-img', ['info', '-U', '--output=json', base])),
    ],
    [
      'genisoimage seed (process, with staging files)',
      await each(async (i) => {
        const d = path.join(oneDir, `s${i}`);
        fs.mkdirSync(d);
        const files = seedFiles(d, `s${i}`);
        await run('genisoimage', [
          '-quiet',
          '-output',
          `${d}/seed.iso`,
          '-volid',
          'cidata',
          '-joliet',
          '-rock',
          ...files,
        ]);
      }),
    ],
    ['agent GET /agent/v1/info (HTTP round trip)', await each(() => agent.info())],
    ['agent GET /agent/v1/volumes/info', await each(() => agent.volumeInfo(template.disk))],
    [
      'agent POST /agent/v1/volumes (linked clone)',
      await each((i) =>
        agent.createVolume({ volume: oneRef(i, 'disk0.qcow2'), format: 'qcow2', backing: template.disk }),
      ),
    ],
    [
      'agent POST /agent/v1/volumes/seed',
      await each((i) =>
        agent.createSeed({
          volume: oneRef(i, 'seed.iso'),
          metaData: `instance-id: one-${i}\nlocal-hostname: one\n`,
        }),
      ),
    ],
  ];
  for (let i = 0; i < reps; i++) {
    await agent.deleteVolume(oneRef(i, 'disk0.qcow2'));
    await agent.deleteVolume(oneRef(i, 'seed.iso'));
  }
  const single: Vm[] = [];
  calls.push([
    'tern POST /api/v1/vms to task succeeded (one VM)',
    await each(async (i) => {
      const r = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
        name: `one-${i}`,
        template: 'tiny',
      });
      single.push(r.vm);
      await w.settle([r.task.id], 60_000, 'created');
    }),
  ]);
  await deleteAll(c, w, single);
  fs.rmSync(oneDir, { recursive: true, force: true });
  table(
    ['call', 'median', 'max'],
    calls.map(([label, xs]) => [label, ms(median(xs)), ms(max(xs))]),
  );

  // 4. Boot all of them at once, until every guest agent answers.
  let boot: { wall: number; running: number; answered: number[]; missing: number } | undefined;
  let booted = created;
  if (!values['no-boot']) {
    console.log(`\n# boot all ${clones} at once (load before: ${loadavg()})`);
    const t0 = performance.now();
    const started = await Promise.all(
      keep.map((vm) => c.api.request<{ task: Task }>('POST', `/api/v1/vms/${vm.id}/start`)),
    );
    const running = await w.settle(
      started.map((r) => r.task.id),
      300_000,
      'all started',
    );
    let missing = 0;
    try {
      await w.until(() => keep.every((vm) => w.agentAnswered.has(vm.id)), bootTimeoutMs, 'all answering');
    } catch (err) {
      missing = keep.filter((vm) => !w.agentAnswered.has(vm.id)).length;
      console.log(`! ${(err as Error).message}: ${missing} of ${clones} guest agents silent`);
    }
    const answered = keep
      .filter((vm) => w.agentAnswered.has(vm.id))
      .map((vm) => w.agentAnswered.get(vm.id)! - t0)
      .sort((a, b) => a - b);
    boot = { wall: answered.length ? max(answered) : Number.NaN, running: running - t0, answered, missing };
    booted = space();
    table(
      ['measure', 's'],
      [
        ['all start tasks succeeded (QEMU running)', sec(boot.running)],
        ['first guest agent answers', sec(answered[0])],
        ['median guest agent answers', sec(median(answered))],
        [`all ${clones} guest agents answer`, sec(boot.wall)],
        ['mean time to answer per VM', sec(mean(answered))],
        ['boot-all time / clones (per-VM average)', sec(boot.wall / clones)],
      ],
    );
    console.log(`# load after boot: ${loadavg()}`);
  }

  // 5. Disk space: the clones against the base and against full copies.
  const fullDir = fs.mkdtempSync(path.join(scratch, 'full-'));
  const fullMs = await timed(() =>
    run('qemu-img', ['convert', '-q', '-U', '-O', 'qcow2', base, `${fullDir}/full.qcow2`]),
  );
  const fullAlloc = allocated(`${fullDir}/full.qcow2`);
  fs.rmSync(fullDir, { recursive: true, force: true });
  console.log(
    `\n# disk space, allocated (du); base ${mib(baseAlloc)} MiB; one full copy (qemu-img convert, ${ms(fullMs)} ms) ${mib(fullAlloc)} MiB`,
  );
  const pctBase = (n: number) => `${((100 * n) / baseAlloc).toFixed(2)}%`;
  const pctFull = (n: number) => `${((100 * n) / (clones * fullAlloc)).toFixed(2)}%`;
  const spaceRows = (label: string, s: { disks: number; seeds: number }) => [
    [`${label}: ${clones} overlays`, mib(s.disks), mib(s.disks / clones), pctBase(s.disks), pctFull(s.disks)],
    [`${label}: ${clones} seeds`, mib(s.seeds), mib(s.seeds / clones), pctBase(s.seeds), pctFull(s.seeds)],
    [
      `${label}: overlays + seeds`,
      mib(s.disks + s.seeds),
      mib((s.disks + s.seeds) / clones),
      pctBase(s.disks + s.seeds),
      pctFull(s.disks + s.seeds),
    ],
  ];
  table(
    ['what', 'MiB', 'MiB per clone', '% of base', `% of ${clones} full copies`],
    [
      ...spaceRows('after create', created),
      ...(boot ? spaceRows('after boot', booted) : []),
      [
        `${clones} full copies (${clones} x measured copy)`,
        mib(clones * fullAlloc),
        mib(fullAlloc),
        pctBase(clones * fullAlloc),
        '100.00%',
      ],
      [
        `${clones} x base allocated`,
        mib(clones * baseAlloc),
        mib(baseAlloc),
        pctBase(clones * baseAlloc),
        pctFull(clones * baseAlloc),
      ],
    ],
  );

  const loadAfter = loadavg();
  console.log(`# load after: ${loadAfter}`);
  const tern = median(cols.tern);
  const seq = median(cols.seq);
  const seqSeed = median(cols.seqSeed);
  const bootPart = boot
    ? `boot all ${clones} to guest agent ${sec(boot.wall)} s (${sec(boot.wall / clones)} s per VM${boot.missing ? `, ${boot.missing} silent` : ''})`
    : 'boot skipped';
  console.log(
    `\nfigure: create ${clones} linked clones tern ${ms(tern)} ms vs qemu-img create -b loop ${ms(seq)} ms (${ratio(tern, seq)}; ${ratio(tern, seqSeed)} vs loop with seeds ${ms(seqSeed)} ms); ${bootPart}; space of ${clones} overlays ${pctBase(created.disks)} of base after create, ${pctBase(booted.disks)} after boot (${pctBase(booted.disks + booted.seeds)} with seeds), ${pctFull(booted.disks + booted.seeds)} of ${clones} full copies`,
  );
  ok = true;
} finally {
  if (watch) {
    if (keep.length > 0)
      await deleteAll(c, watch, keep).catch((err) => console.error(`cleanup: ${err.message}`));
    await watch.close();
  }
  await c.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
  if (ok) fs.rmSync(c.dir, { recursive: true, force: true });
  else console.error(`cluster state kept in ${c.dir}`);
}
