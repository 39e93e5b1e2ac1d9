/**
 * bench/replication: the sustained lag of a VM replicated every `--interval` seconds to another
 * host while its guest writes at a stated rate, and the bytes sent against the bytes dirtied.
 * The goal (issue 17): lag p99 no more than 30 s past the interval's edge.
 *
 * Two hosts' agents (the harness cluster), a tiny guest with a data disk; the guest writes
 * `--write-kib` KiB of random (incompressible) bytes a second, in 256 KiB pieces at random
 * places, with direct I/O. The bench drives the cycles itself through the agents' routes (the
 * replica's host prepares a point, the primary's host replicates the VM to it), one every
 * interval (at once when the previous one overran), so the figures are the hosts' pipeline:
 * view, read, compress, send, write, commit, without the manager's scheduling. Lag is sampled
 * every second as now minus the view instant of the newest committed point.
 *
 *   node bench/replication.ts [--interval 30] [--cycles 10] [--write-kib 1024] [--size-gib 1]
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { TernError } from '../src/errors.ts';
import { followRoute } from '../src/manager/hosts/agent-stream.ts';
import { callAgent } from '../src/manager/hosts/agent-transport.ts';
import { agentRoutes } from '../src/wire/agent-routes.ts';
import type { Host } from '../src/wire/host.ts';
import type { ReplicateVmRequest, ReplicateVmResult } from '../src/wire/replication.ts';
import type { Template } from '../src/wire/template.ts';
import type { VmSpec } from '../src/wire/vm.ts';
import { shellOn, startCluster } from '../test/harness.ts';
import { loadavg, median, percentile, table } from './report.ts';

const { values } = parseArgs({
  options: {
    interval: { type: 'string', default: '30' },
    cycles: { type: 'string', default: '10' },
    'write-kib': { type: 'string', default: '1024' },
    'size-gib': { type: 'string', default: '1' },
  },
});
const intervalMs = Number(values.interval) * 1000;
const cycles = Number(values.cycles);
const writeKiB = Number(values['write-kib']);
const size = Number(values['size-gib']) * 1024 ** 3;
const MiB = 1024 ** 2;
const mib = (b: number) => (b / MiB).toFixed(1);
const sec = (ms: number) => (ms / 1000).toFixed(1);

const c = await startCluster('bench-replication', { hosts: ['a', 'b'] });
try {
  const A = await c.agentClient('a');
  const B = await c.agentClient('b');
  const [primary] = c.hosts;
  const hostB = await c.api.request<Host>('GET', '/api/v1/hosts/b');
  const id = randomUUID();
  const rid = randomUUID();
  const t = await c.api.request<Template>('GET', '/api/v1/templates/tiny');
  const dir = `vms/${id}`;
  const data = { pool: 'local', path: `${dir}/data.qcow2` };
  await A.createVolume({
    volume: { pool: 'local', path: `${dir}/disk0.qcow2` },
    format: 'qcow2',
    backing: t.disk,
  });
  await A.createVolume({ volume: data, format: 'qcow2', sizeBytes: size });
  await A.createSeed({
    volume: { pool: 'local', path: `${dir}/seed.iso` },
    metaData: `instance-id: ${id}\nlocal-hostname: bench\n`,
  });
  const spec: VmSpec = {
    id,
    name: 'bench',
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB: 256,
    disks: [
      { volume: { pool: 'local', path: `${dir}/disk0.qcow2` }, format: 'qcow2', readonly: false, slot: 0 },
      { volume: data, format: 'qcow2', readonly: false, slot: 1 },
    ],
    nics: [{ mac: '52:54:00:72:70:02', network: { mode: 'user' } }],
    boot: t.boot!,
    seed: { pool: 'local', path: `${dir}/seed.iso` },
  };
  await A.runVm(spec);
  // The guest's shell answers once it has booted: until then, its agent does not.
  const stop = new AbortController();
  await new Promise<void>((resolve, reject) => {
    A.follow(
      (e) => {
        if (e.type === 'vm' && e.vm.id === id && e.vm.guest.agent === 'responding') resolve();
      },
      () => {},
      stop.signal,
    ).catch(reject);
  });
  stop.abort();
  await shellOn(primary, id, `cat /sys/block/vdb/size; echo S''Z`, /\d+\s+SZ/, 60_000);

  const pointId = (ms: number) =>
    new Date(ms)
      .toISOString()
      .replace(/\.\d+Z$/, 'Z')
      .replaceAll(':', '-');
  let previous: string | null = null;
  let lastId = '';
  async function cycle(): Promise<ReplicateVmResult> {
    let now = Date.now();
    // Point ids are whole seconds: two in one second would be one.
    while (pointId(now) === lastId) now += 1000;
    const point = pointId(now);
    lastId = point;
    const prep = await callAgent(
      B.transport,
      agentRoutes.prepareReceive,
      {
        params: { id: rid },
        body: { pool: 'local', point, base: previous, disks: [{ name: 'disk1', sizeBytes: size }] },
      },
      120_000,
    );
    const req: ReplicateVmRequest = {
      replication: rid,
      point,
      previous,
      bitmap: `tern-rp-${rid.slice(0, 8)}`,
      disks: [{ name: 'disk1', volume: data, format: 'qcow2' }],
      freeze: false,
      bandwidth: 0,
      target: {
        url: `${hostB.address}/agent/v1/replicas/${rid}/receive`,
        ticket: prep.ticket,
        ca: null,
        resume: prep.resume,
      },
    };
    const stream = {
      maxLine: MiB,
      silenceMs: 60_000,
      signal: AbortSignal.timeout(600_000),
      during: 'the cycle',
    };
    const r = await followRoute(
      A.transport,
      agentRoutes.replicateVm,
      { params: { id }, body: req },
      stream,
      (l) => {
        if (l.type === 'error')
          throw TernError.fromBody({ error: { code: l.code, message: l.message } }, 'failed');
        return l.type === 'done' ? l.result : undefined;
      },
    );
    previous = point;
    return r;
  }

  // The initial copy, before the guest starts writing: the sustained figures come after it.
  const initial = await cycle();
  const pieces = Math.max(1, Math.round(writeKiB / 256));
  const blocks = Math.floor(size / (256 * 1024)) - 1;
  await shellOn(
    primary,
    id,
    `(while :; do i=0; while [ $i -lt ${pieces} ]; do dd if=/dev/urandom of=/dev/vdb bs=256k count=1 seek=$((RANDOM % ${blocks})) oflag=direct 2>/dev/null; i=$((i+1)); done; sleep 1; done) >/dev/null 2>&1 & echo B''G`,
    /BG/,
  );

  const commits: { at: number; takenAt: number }[] = [
    { at: Date.now(), takenAt: Date.parse(initial.takenAt) },
  ];
  const rows: (string | number)[][] = [];
  let dirtied = 0;
  let sent = 0;
  const cycleMs: number[] = [];
  const lag: number[] = [];
  const started = Date.now();
  const sampler = setInterval(() => lag.push(Date.now() - commits.at(-1)!.takenAt), 1000);
  for (let k = 1; k <= cycles; k++) {
    const due = started + k * intervalMs;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    const t0 = Date.now();
    const r = await cycle();
    const at = Date.now();
    commits.push({ at, takenAt: Date.parse(r.takenAt) });
    const d = r.disks[0]!;
    dirtied += d.dirtyBytes;
    sent += d.sentBytes;
    cycleMs.push(at - t0);
    rows.push([
      k,
      d.mode,
      mib(d.dirtyBytes),
      mib(d.sentBytes),
      sec(at - t0),
      sec(at - Date.parse(r.takenAt)),
    ]);
  }
  clearInterval(sampler);

  console.log(
    `interval ${sec(intervalMs)} s, ${cycles} cycles, guest writing ${writeKiB} KiB/s (random, 256 KiB pieces), data disk ${mib(size)} MiB; load ${loadavg()}`,
  );
  table(['cycle', 'mode', 'dirtied MiB', 'sent MiB', 'cycle s', 'view to commit s'], rows);
  const p50 = median(lag);
  const p99 = percentile(lag, 0.99);
  console.log(
    `cycle time p50 ${sec(median(cycleMs))} s, p99 ${sec(percentile(cycleMs, 0.99))} s; lag p50 ${sec(p50)} s, p99 ${sec(p99)} s (${sec(p99 - intervalMs)} s past the interval edge); sent ${mib(sent)} MiB for ${mib(dirtied)} MiB dirtied (${(sent / Math.max(1, dirtied)).toFixed(2)}x)`,
  );
  console.log(
    `replication lag p99 ${sec(p99)} s at a ${sec(intervalMs)} s interval (${sec(p99 - intervalMs)} s past its edge; goal ≤ 30 s), ${writeKiB} KiB/s written, ${(sent / Math.max(1, dirtied)).toFixed(2)}x bytes sent per byte dirtied`,
  );
  await A.act(id, 'kill').catch(() => {});
} finally {
  await c.stop();
}
