/**
 * High availability at scale with simulated hosts, through the real manager and the real agent
 * protocol: 100 sim hosts join over mutual TLS, heartbeat, and run the real HA guard, which
 * renews each host's lease in the statefile on the shared pool (sim hosts fence in-process).
 * 3,000 VMs run with a mix of restart policies. Then, in rounds with a seeded RNG
 * (HA_SIM_SEED=n repeats one), 5 random hosts lose power at once (from the second round on,
 * one of them a host that lost power before), each round once every host has confirmed the
 * protected VMs it runs: every `restart` and `best-effort` VM of theirs must run again on
 * exactly one survivor, `none` ones must not, no other VM may be lost, and the inventory must
 * agree with what the hosts really run (each sim driver's own list). Powered on again, the
 * hosts must not bring back stale copies. A network cut alone must restart nothing (the hosts
 * still renew their leases: `isolated`); a network and storage cut must make the hosts fence
 * (kill their protected VMs) before the manager restarts them elsewhere; a restart refused by
 * the host it lands on must be tried again until the VM runs. Throughout, a sampler over every
 * host's driver checks that no VM ever runs on two hosts at once.
 *
 * Sizes: HA_SIM_HOSTS (100), HA_SIM_VMS (500: CI's size; 3000 for the full-scale run, about ten
 * minutes of creating VMs on two cores), HA_SIM_ROUNDS (3).
 */
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import type { SimHost, SimHosts } from '../src/agent/sim/cluster.ts';
import { failAfterMs } from '../src/manager/ha/detector.ts';
import type { FailoverOutcome } from '../src/manager/ha/failover.ts';
import type { ManagerEvent } from '../src/wire/event.ts';
import type { HaHostStatus, VmHaPolicy } from '../src/wire/ha.ts';
import type { Host } from '../src/wire/host.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import type { TestApi } from './harness.ts';
import { seededRandom } from './seeded-random.ts';
import { type SimCluster, startSimCluster, until } from './sim-harness.ts';

const hostCount = Number(process.env.HA_SIM_HOSTS ?? 100);
const vmCount = Number(process.env.HA_SIM_VMS ?? 500);
const rounds = Number(process.env.HA_SIM_ROUNDS ?? 3);
const failuresPerRound = 5;
const timeoutS = 10;
const failMs = failAfterMs(timeoutS);
const seed = Number(process.env.HA_SIM_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`# ha-sim: seed ${seed} (HA_SIM_SEED=${seed} repeats this run)`);

const random = seededRandom(seed);

/** The policy of the i-th VM: 60 % restart (high, medium, low), 20 % best-effort, 20 % none. */
function policyOf(i: number): VmHaPolicy {
  const k = i % 10;
  const restart = k < 6 ? 'restart' : k < 8 ? 'best-effort' : 'none';
  const priority = (['high', 'medium', 'low'] as const)[i % 3];
  return { restart, priority, order: i % 7, delayS: 0 };
}

let cluster: SimCluster;
let api: TestApi;
let sim: SimHosts;
const policies = new Map<string, VmHaPolicy>(); // by VM id
const names = new Map<string, string>(); // VM id -> name
const hostIds = new Map<string, string>(); // host name -> id
const timings: string[] = [];

// --- what the hosts really run -------------------------------------------------------------------

const live = (state: string) => state === 'running' || state === 'paused';

/** Every VM that has a live process, with the hosts it has one on: the ground truth. */
function truth(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const h of sim.hosts) {
    for (const vm of h.driver.list()) {
      if (!live(vm.state)) continue;
      const on = out.get(vm.id);
      if (on) on.push(h.name);
      else out.set(vm.id, [h.name]);
    }
  }
  return out;
}

/**
 * Samples every host's driver until stopped: each VM seen live on two hosts at once. A
 * sample is synchronous, so it is one instant of the whole simulated cluster.
 */
function sampleCopies() {
  const doubles: string[] = [];
  let samples = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      samples++;
      for (const [id, on] of truth()) {
        if (on.length > 1 && doubles.length < 20) doubles.push(`${names.get(id)} on ${on.join(', ')}`);
      }
      // Unreferenced: a test that failed before stopping its sampler does not hold the process.
      await new Promise((r) => setTimeout(r, 100).unref());
    }
  })();
  return async () => {
    running = false;
    await done;
    assert.ok(samples > 1, 'the sampler ran');
    return doubles;
  };
}

// --- what the manager says -----------------------------------------------------------------------

async function inventory(): Promise<Vm[]> {
  const out: Vm[] = [];
  let cursor: string | null = null;
  for (;;) {
    const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = await api.request<{ items: Vm[]; nextCursor: string | null }>(
      'GET',
      `/api/v1/vms?limit=1000${q}`,
    );
    out.push(...page.items);
    if (!page.nextCursor || page.items.length === 0) return out;
    cursor = page.nextCursor;
  }
}

type HaStatus = HaHostStatus;
const haStatus = async () =>
  new Map(
    (await api.request<{ items: HaStatus[] }>('GET', '/api/v1/ha/status')).items.map((s) => [s.host, s]),
  );

const finished = (t: Task) => t.state === 'succeeded' || t.state === 'failed' || t.state === 'cancelled';

/** Every task the manager announces on one event stream, for waits on any of them. */
class TaskWatch {
  readonly tasks = new Map<string, Task>();
  readonly #waiters = new Set<() => void>();
  readonly #stop = new AbortController();
  #failed: Error | null = null;

  start(): void {
    api
      .events(
        '',
        (e: ManagerEvent) => {
          if (e.type !== 'task') return;
          this.tasks.set(e.task.id, e.task);
          for (const w of this.#waiters) w();
        },
        this.#stop.signal,
      )
      .catch((err: Error) => {
        if (this.#stop.signal.aborted) return;
        this.#failed = err;
        for (const w of this.#waiters) w();
      });
  }

  stop(): void {
    this.#stop.abort();
  }

  /** Waits until a task the stream announced satisfies `ok`. */
  async waitFor(what: string, timeoutMs: number, ok: (t: Task) => boolean): Promise<Task> {
    const find = () => [...this.tasks.values()].find(ok);
    const found = find();
    if (found) return found;
    return new Promise<Task>((resolve, reject) => {
      const check = () => {
        if (this.#failed) return done(this.#failed);
        const t = find();
        if (t) done(null, t);
      };
      const done = (err: Error | null, t?: Task) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (err) reject(err);
        else resolve(t!);
      };
      const timer = setTimeout(() => done(new Error(`not ${what} within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.add(check);
    });
  }

  /** Waits for each of `ids` to end, as the stream (or a read, for one that ended before) tells. */
  async settle(ids: string[], timeoutMs: number): Promise<Task[]> {
    const out: Task[] = [];
    for (const id of ids) {
      const known = this.tasks.get(id);
      if (known && finished(known)) {
        out.push(known);
        continue;
      }
      const read = await api.request<Task>('GET', `/api/v1/tasks/${id}`);
      out.push(
        finished(read)
          ? read
          : await this.waitFor(`task ${id} done`, timeoutMs, (t) => t.id === id && finished(t)),
      );
    }
    return out;
  }

  failoverOf(hostName: string, since: number): Task | undefined {
    const lock = `ha:${hostIds.get(hostName)}`;
    return [...this.tasks.values()].find(
      (t) => t.kind === 'ha.failover' && t.objects.includes(lock) && Date.parse(t.createdAt) >= since,
    );
  }
}
const watch = new TaskWatch();

// --- set-up --------------------------------------------------------------------------------------

before(async () => {
  const t0 = Date.now();
  cluster = await startSimCluster(hostCount, {
    driver: { cores: 64, memoryMiB: 64 * 1024, bootDelayMs: 100, guestHeartbeatMs: 0 },
  });
  ({ api, sim } = cluster);
  for (const h of (await api.request<{ items: Host[] }>('GET', `/api/v1/hosts?limit=1000`)).items)
    hostIds.set(h.name, h.id);
  timings.push(`${hostCount} hosts joined in ${Date.now() - t0} ms`);
  watch.start();

  // The policies are set while HA is off: admission weighs every protected VM against the
  // whole cluster, which is for an operator adding one, not for a script adding thousands.
  const t1 = Date.now();
  let next = 0;
  const created: string[] = [];
  const worker = async () => {
    while (next < vmCount) {
      const i = next++;
      const name = `vm-${String(i).padStart(4, '0')}`;
      const r = await api.request<{ task: Task }>('POST', '/api/v1/vms', {
        name,
        template: 'sim',
        start: true,
      });
      created.push(r.task.id);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  timings.push(`${vmCount} creations submitted in ${Date.now() - t1} ms`);
  const tasks = await watch.settle(created, 600_000);
  timings.push(`${vmCount} creations done in ${Date.now() - t1} ms`);
  const failed = tasks.filter((t) => t.state !== 'succeeded');
  assert.deepEqual(
    failed.map((t) => t.error?.message),
    [],
    'every VM was created and started',
  );
  const vms = await inventory();
  assert.equal(vms.length, vmCount);
  vms.sort((a, b) => (a.name < b.name ? -1 : 1));
  next = 0;
  const protect = async () => {
    while (next < vms.length) {
      const i = next++;
      const vm = vms[i];
      const policy = policyOf(i);
      await api.request('PUT', `/api/v1/vms/${vm.name}/ha`, policy);
      policies.set(vm.id, policy);
      names.set(vm.id, vm.name);
    }
  };
  await Promise.all(Array.from({ length: 8 }, protect));
  timings.push(`${vmCount} VMs created, started and given a policy in ${Date.now() - t1} ms`);
  await api.request('PATCH', '/api/v1/ha/settings', { enabled: true, statefilePool: 'shared', timeoutS });
  await allProtecting();
});

/**
 * Every host renews its lease and has confirmed every protected VM the inventory places on it:
 * only those does its fence kill, so only those would a failover restart. A VM just restarted
 * on a host is unconfirmed until the host's next heartbeats; a round that failed the host
 * before then would rightly leave it behind.
 */
async function allProtecting(): Promise<void> {
  let missing = '';
  await until('every host healthy and protecting in the HA watch', 120_000, async () => {
    const s = [...(await haStatus()).values()];
    const wrong = s.filter((h) => h.state !== 'healthy' || !h.leaseSeen || h.unconfirmed > 0);
    missing =
      s.length < hostCount
        ? `${s.length} of ${hostCount} hosts watched`
        : wrong
            .slice(0, 10)
            .map((h) => `${h.host} ${h.state}${h.leaseSeen ? '' : ' unseen'} unconfirmed ${h.unconfirmed}`)
            .join(', ');
    return s.length === hostCount && wrong.length === 0 ? true : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}: ${missing}`);
  });
}

const lag = monitorEventLoopDelay({ resolution: 20 });
lag.enable();

after(async () => {
  watch.stop();
  lag.disable();
  timings.push(
    `event loop delay: p99 ${Math.round(lag.percentile(99) / 1e6)} ms, max ${Math.round(lag.max / 1e6)} ms`,
  );
  for (const line of timings) console.log(`# ha-sim: ${line}`);
  await cluster?.close();
});

// --- checks --------------------------------------------------------------------------------------

/** Every VM live in truth runs on exactly one host, the one the inventory names, and is running there. */
async function inventoryAgrees(): Promise<Map<string, string[]>> {
  const t = truth();
  const inv = new Map((await inventory()).map((vm) => [vm.id, vm]));
  assert.equal(inv.size, vmCount, 'no VM left the inventory');
  const wrong: string[] = [];
  for (const [id, on] of t) {
    const vm = inv.get(id);
    if (on.length !== 1) wrong.push(`${names.get(id)} live on ${on.join(', ')}`);
    else if (vm?.host !== on[0] || vm.state !== 'running')
      wrong.push(`${names.get(id)} runs on ${on[0]}, the inventory says ${vm?.state} on ${vm?.host}`);
  }
  for (const [id, vm] of inv) {
    if (vm.state === 'running' && !t.has(id))
      wrong.push(`${vm.name} is running on ${vm.host} for the inventory only`);
  }
  assert.deepEqual(wrong, [], 'the inventory agrees with what the hosts run');
  return t;
}

/** The VMs each host really runs. */
function byHost(t: Map<string, string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>(sim.hosts.map((h) => [h.name, []]));
  for (const [id, on] of t) for (const h of on) out.get(h)!.push(id);
  return out;
}

function pick<T>(from: readonly T[], n: number): T[] {
  const pool = [...from];
  const out: T[] = [];
  while (out.length < n && pool.length > 0) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]);
  return out;
}

const failedBefore: SimHost[] = [];
const restarts = (id: string) => policies.get(id)?.restart !== 'none';

async function backOnline(hosts: SimHost[]): Promise<void> {
  for (const h of hosts) {
    await h.settled();
    assert.ok(h.running, `the agent of ${h.name} runs again`);
    await api.waitHost(h.name, (x) => x.state === 'online', 60_000, 'online again');
  }
  // Healthy in the HA watch too, so a later failure of the same host is acted on.
  const wanted = new Set(hosts.map((h) => h.name));
  await until('the hosts healthy in the HA watch again', 30_000, async () => {
    const s = await haStatus();
    return [...wanted].every((n) => s.get(n)?.state === 'healthy' && s.get(n)?.leaseSeen) ? true : undefined;
  });
}

// --- the scenarios -------------------------------------------------------------------------------

test('the cluster starts with every VM running once, and HA plans for the failures', async () => {
  const t = await inventoryAgrees();
  assert.equal(t.size, vmCount, 'every VM runs');
  const plan = await api.request<{ tolerates: number; summary: string }>('GET', '/api/v1/ha/plan');
  assert.ok(plan.tolerates >= failuresPerRound, plan.summary);
});

for (let round = 1; round <= rounds; round++) {
  test(`round ${round}: ${failuresPerRound} random hosts lose power at once`, async () => {
    await allProtecting();
    const before = await inventoryAgrees();
    const onHost = byHost(before);
    // Any host, and from the second round on one that lost power before: a host that fails
    // again after it came back must be handled like any other.
    const again = pick(failedBefore, 1);
    const failed = [
      ...again,
      ...pick(
        sim.hosts.filter((h) => !again.includes(h)),
        failuresPerRound - again.length,
      ),
    ];
    failedBefore.push(...failed.filter((h) => !failedBefore.includes(h)));
    const failedNames = new Set(failed.map((h) => h.name));
    const victims = failed.flatMap((h) => onHost.get(h.name)!);
    const expectRestart = victims.filter(restarts);
    const expectDown = victims.filter((id) => !restarts(id));
    console.log(
      `# ha-sim round ${round}: power off ${[...failedNames].join(', ')}: ${victims.length} VMs, ` +
        `${expectRestart.length} to restart, ${expectDown.length} with policy none`,
    );
    // A round that fails must not leave its hosts down for the tests after it.
    const stopSampling = sampleCopies();
    try {
      const offAt = Date.now();
      for (const h of failed) h.driver.powerOff();
      for (const h of failed) {
        await h.settled();
        assert.equal(h.running, false, `the agent of ${h.name} stopped with the power`);
      }

      // Each failed host's failover, as the manager announces it, until it ends.
      const outcomes: FailoverOutcome[] = [];
      for (const h of failed) {
        const started = await watch.waitFor(`a failover of ${h.name}`, failMs + 30_000, (t) =>
          Boolean(watch.failoverOf(h.name, offAt - 1000)?.id === t.id),
        );
        const [done] = await watch.settle([started.id], 120_000);
        assert.equal(done.state, 'succeeded', `failover of ${h.name}: ${JSON.stringify(done.error)}`);
        // Not before the host could have fenced: its last heartbeat or renewal was at most 2 s
        // before the power went, and it is declared failed T_fail after that.
        assert.ok(
          Date.parse(done.createdAt) - offAt >= failMs - 2_500,
          `failover of ${h.name} began ${Date.parse(done.createdAt) - offAt} ms after the power loss`,
        );
        outcomes.push(done.result as FailoverOutcome);
      }
      timings.push(`round ${round}: ${victims.length} VMs failed over in ${Date.now() - offAt} ms`);
      const doubles = await stopSampling();
      assert.deepEqual(doubles, [], 'no VM ran on two hosts at once');

      assert.deepEqual(
        outcomes.flatMap((o) => o.notRestarted.filter((n) => !/policy is none/.test(n.reason))),
        [],
        'nothing that should restart was left behind',
      );
      const t = await inventoryAgrees();
      const wrong: string[] = [];
      for (const id of expectRestart) {
        const on = t.get(id) ?? [];
        if (on.length !== 1 || failedNames.has(on[0]))
          wrong.push(`${names.get(id)} (${policies.get(id)?.restart}) on [${on}]`);
      }
      for (const id of expectDown)
        if (t.has(id)) wrong.push(`${names.get(id)} (none) restarted on ${t.get(id)}`);
      // Every other VM still runs where it did.
      for (const [id, on] of before) {
        if (victims.includes(id)) continue;
        if (t.get(id)?.join() !== on.join())
          wrong.push(`${names.get(id)} moved from ${on} to [${t.get(id)}]`);
      }
      assert.deepEqual(wrong, [], 'restart and best-effort VMs run once on a survivor, none VMs do not run');
      const restartedNames = new Set(outcomes.flatMap((o) => o.restarted.map((r) => r.vm)));
      assert.deepEqual(
        expectRestart.map((id) => names.get(id)).filter((n) => !restartedNames.has(n!)),
        [],
        'the failover tasks report every restart',
      );
      const inv = new Map((await inventory()).map((vm) => [vm.id, vm]));
      for (const id of expectDown) {
        const vm = inv.get(id)!;
        assert.ok(failedNames.has(vm.host!), `${vm.name} stays on its failed host`);
        assert.notEqual(vm.state, 'running', vm.name);
      }
    } catch (err) {
      for (const h of failed) h.driver.powerOn();
      await stopSampling().catch(() => []);
      throw err;
    }

    // Back on: the hosts find their old VMs crashed and must not bring any of them back.
    const stopSampling2 = sampleCopies();
    for (const h of failed) h.driver.powerOn();
    await backOnline(failed);
    assert.deepEqual(await stopSampling2(), [], 'no VM ran on two hosts while the failed ones came back');
    const back = await inventoryAgrees();
    for (const h of failed) {
      const stale = h.driver.list().filter((v) => live(v.state));
      assert.deepEqual(
        stale.map((v) => names.get(v.id)),
        [],
        `${h.name} runs no stale copy after its power came back`,
      );
    }
    for (const id of expectRestart) assert.equal(back.get(id)?.length, 1, names.get(id));
    for (const id of expectDown) {
      const vm = await api.waitVm(id, (v) => v.state === 'crashed', 30_000, 'crashed, as its host found it');
      assert.ok(failedNames.has(vm.host!), `${vm.name} stays on its host`);
    }
  });
}

test('a network cut alone restarts nothing: the hosts still renew their leases', async () => {
  await allProtecting();
  const before = await inventoryAgrees();
  const onHost = byHost(before);
  const cut = pick(
    sim.hosts.filter((h) => onHost.get(h.name)!.length > 0),
    3,
  );
  const cutNames = new Set(cut.map((h) => h.name));
  const theirs = cut.flatMap((h) => onHost.get(h.name)!);
  const stopSampling = sampleCopies();
  const cutAt = Date.now();
  for (const h of cut) h.driver.setReachable(false);
  // Isolated: the heartbeat stopped (the cut goes both ways), the lease still moves.
  await until('the cut hosts isolated in the HA watch', failMs, async () => {
    const s = await haStatus();
    return cut.every((h) => s.get(h.name)?.state === 'isolated') ? true : undefined;
  });
  // Nothing may happen, which only time shows: past T_fail of network silence, with a margin.
  await until('the cut hosts silent for longer than T_fail', failMs + 30_000, async () => {
    const s = await haStatus();
    const all = cut.every((h) => {
      const x = s.get(h.name);
      assert.equal(x?.state, 'isolated', `${h.name} stays isolated, not ${x?.state}`);
      return x.networkSilentMs >= failMs + 3_000;
    });
    return all ? true : undefined;
  });
  for (const h of cut) assert.equal(watch.failoverOf(h.name, cutAt), undefined, `no failover of ${h.name}`);
  const during = truth();
  for (const id of theirs) {
    assert.deepEqual(during.get(id), [before.get(id)![0]], `${names.get(id)} still runs on its host, once`);
  }
  const inv = new Map((await inventory()).map((vm) => [vm.id, vm]));
  for (const id of theirs) {
    const vm = inv.get(id)!;
    assert.ok(cutNames.has(vm.host!), `${vm.name} stays on its host in the inventory`);
    assert.equal(vm.state, 'unknown', `${vm.name}: its host is unreachable`);
  }
  for (const h of cut) h.driver.setReachable(true);
  await backOnline(cut);
  for (const id of theirs) await api.waitVm(id, (v) => v.state === 'running', 30_000, 'running again');
  assert.deepEqual(await stopSampling(), [], 'no VM ran on two hosts at once');
  await inventoryAgrees();
});

test('a network and storage cut: the hosts fence their protected VMs before they restart elsewhere', async () => {
  await allProtecting();
  const before = await inventoryAgrees();
  const onHost = byHost(before);
  const cut = pick(
    sim.hosts.filter(
      (h) => onHost.get(h.name)!.some(restarts) && onHost.get(h.name)!.some((id) => !restarts(id)),
    ),
    2,
  );
  assert.equal(cut.length, 2, 'two hosts with protected and unprotected VMs');
  const cutNames = new Set(cut.map((h) => h.name));
  const protectedVms = cut.flatMap((h) => onHost.get(h.name)!.filter(restarts));
  const unprotected = cut.flatMap((h) => onHost.get(h.name)!.filter((id) => !restarts(id)));
  // Exact order from the drivers' own events: when each copy stopped on its cut host, when
  // the new one ran elsewhere.
  const stoppedAt = new Map<string, number>();
  const startedAt = new Map<string, number>();
  const listeners = sim.hosts.map((h) => {
    const on = (vm: { id: string; state: string }) => {
      if (cutNames.has(h.name) && !live(vm.state) && !stoppedAt.has(vm.id))
        stoppedAt.set(vm.id, performance.now());
      if (!cutNames.has(h.name) && live(vm.state) && !startedAt.has(vm.id))
        startedAt.set(vm.id, performance.now());
    };
    h.driver.events.on('vm', on);
    return () => h.driver.events.off('vm', on);
  });
  const stopSampling = sampleCopies();
  try {
    const cutAt = Date.now();
    const cutAtMono = performance.now();
    for (const h of cut) {
      h.driver.setReachable(false);
      h.driver.setStorageReachable(false);
    }
    for (const h of cut) {
      const started = await watch.waitFor(`a failover of ${h.name}`, failMs + 30_000, (t) =>
        Boolean(watch.failoverOf(h.name, cutAt - 1000)?.id === t.id),
      );
      const [done] = await watch.settle([started.id], 120_000);
      assert.equal(done.state, 'succeeded', `failover of ${h.name}: ${JSON.stringify(done.error)}`);
    }
    const wrong: string[] = [];
    for (const id of protectedVms) {
      const stop = stoppedAt.get(id);
      const start = startedAt.get(id);
      if (stop === undefined) wrong.push(`${names.get(id)} was never fenced`);
      else if (start === undefined) wrong.push(`${names.get(id)} never ran elsewhere`);
      else if (!(stop < start))
        wrong.push(`${names.get(id)} ran elsewhere ${Math.round(stop - start)} ms before its fence`);
      // The fence comes T_fence after the host's last success, at most 2 s before the cut.
      else if (stop - cutAtMono < timeoutS * 1000 - 2_500)
        wrong.push(`${names.get(id)} fenced ${Math.round(stop - cutAtMono)} ms after the cut`);
    }
    assert.deepEqual(wrong, [], 'every protected VM fenced, then restarted elsewhere');
    const t = truth();
    for (const id of protectedVms) {
      const on = t.get(id) ?? [];
      assert.ok(on.length === 1 && !cutNames.has(on[0]), `${names.get(id)} runs once on a survivor: [${on}]`);
    }
    // The fence kills only what HA restarts; the rest keeps running where it was.
    for (const id of unprotected) assert.deepEqual(t.get(id), before.get(id), `${names.get(id)} untouched`);
    assert.deepEqual(await stopSampling(), [], 'no VM ran on two hosts at once');
  } finally {
    for (const off of listeners) off();
    for (const h of cut) {
      h.driver.setStorageReachable(true);
      h.driver.setReachable(true);
    }
  }
  await backOnline(cut);
  for (const h of cut) {
    const stale = h.driver.list().filter((v) => live(v.state) && restarts(v.id));
    assert.deepEqual(
      stale.map((v) => names.get(v.id)),
      [],
      `${h.name} brings back no fenced VM`,
    );
  }
  for (const id of unprotected) await api.waitVm(id, (v) => v.state === 'running', 30_000, 'running again');
  await inventoryAgrees();
});

test('a restart that fails on its new host is tried again until the VM runs', async () => {
  await allProtecting();
  const before = await inventoryAgrees();
  const onHost = byHost(before);
  const mustRestart = (id: string) => policies.get(id)?.restart === 'restart';
  const [host] = pick(
    sim.hosts.filter((h) => onHost.get(h.name)!.some(mustRestart)),
    1,
  );
  const theirs = onHost.get(host.name)!.filter(mustRestart);
  const others = sim.hosts.filter((h) => h !== host);
  // Every other host refuses its next start: the first restart landing on each one fails.
  for (const h of others) h.driver.faults.failNext('run', 1);
  try {
    const offAt = Date.now();
    host.driver.powerOff();
    await host.settled();
    const started = await watch.waitFor(`a failover of ${host.name}`, failMs + 30_000, (t) =>
      Boolean(watch.failoverOf(host.name, offAt - 1000)?.id === t.id),
    );
    const [done] = await watch.settle([started.id], 120_000);
    assert.equal(done.state, 'succeeded', `failover of ${host.name}: ${JSON.stringify(done.error)}`);
    const outcome = done.result as FailoverOutcome;
    assert.deepEqual(
      theirs.map((id) => names.get(id)).filter((n) => !outcome.restarted.some((r) => r.vm === n)),
      [],
      'the failover reports every restart VM restarted',
    );
    const t = truth();
    for (const id of theirs) {
      const on = t.get(id) ?? [];
      assert.ok(on.length === 1 && on[0] !== host.name, `${names.get(id)} runs once on a survivor: [${on}]`);
    }
  } finally {
    for (const h of others) h.driver.faults.failNext('run', 0);
    host.driver.powerOn();
  }
  await backOnline([host]);
  await inventoryAgrees();
});
