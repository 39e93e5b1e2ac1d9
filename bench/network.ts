/**
 * bench/network: a `nat` network with 100 NICs (ports) on one host, applied and torn down by the
 * agent's own network code (src/agent/network/: the bridge, a tap per port, both nftables
 * tables with every port's anti-spoofing and security chains, dnsmasq with 100 fixed leases).
 *
 * Side by side in the same run, each round:
 *   - "before": the way the agent plugged ports before they were batched, kept as the
 *     baseline: `apply`, then per port its tap made and put on the bridge, its chains in a
 *     transaction of their own, up (four processes); per port `ip link del` and its chains
 *     dropped, then `remove`;
 *   - "agent, together": the agent's path with the plugs asked at once (a host starting 100
 *     one-NIC VMs), then the unplugs at once (stopping them), then `remove`: they wait in the
 *     agent's queue and go in batches, one nftables transaction and one `ip -batch` each;
 *   - "agent, one by one": the same calls, each waiting for the one before: nothing to batch,
 *     a plug is two processes (its chains, then its tap made, on the bridge and up);
 *   - "agent at start": the agent's start (`reconcile`) realizing the same kept network with its
 *     100 ports, the whole ruleset in one nftables transaction; torn down as "together";
 *   - "floor by hand": the same result with the fewest processes: one `ip -batch` for the bridge
 *     and the taps, one `nft -f` for the ruleset, the same dnsmasq; torn down by one netlink
 *     batch (`ip link del group`), one `nft -f` and the bridge.
 * Then where a port's time goes: each step of `plug` and `unplug` alone, per port.
 *
 * Everything runs in a network namespace the benchmark makes (it runs itself again inside it)
 * and removes at the end, also on failure, with every process in it: the machine's own
 * interfaces and ruleset are never touched.
 *
 *   node bench/network.ts [--ports 100] [--runs 5]
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { dnsmasqPaths, dnsmasqPid, ensureDnsmasq, stopDnsmasq } from '../src/agent/network/dnsmasq.ts';
import { hostShell } from '../src/agent/network/host-shell.ts';
import { KernelNetworks } from '../src/agent/network/kernel-networks.ts';
import { NetworkStore } from '../src/agent/network/network-store.ts';
import {
  addPortRules,
  networkRules,
  removeNetworkRules,
  removePortRules,
} from '../src/agent/network/nft-rules.ts';
import { makeTap, newTapName, removeTap, tapUp } from '../src/agent/network/taps.ts';
import { testNic, testSpec } from '../src/agent/network/test-specs.ts';
import { createLogger } from '../src/log.ts';
import type { PortRules } from '../src/wire/network.ts';
import { loadavg, median, percentile, table } from './report.ts';

const { values } = parseArgs({
  options: {
    ports: { type: 'string', default: '100' },
    runs: { type: 'string', default: '5' },
    inside: { type: 'boolean', default: false },
  },
});

if (!values.inside) {
  // Outside: make the namespace, run again inside it, and remove it whatever happened.
  const ns = `tnbench${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const removeNamespace = () => {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    execFileSync('ip', ['netns', 'del', ns]);
  };
  // Ctrl-C reaches the inner run too; this one waits for it and then cleans up.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => undefined);
  const argv = [process.execPath, import.meta.filename, '--inside', ...process.argv.slice(2)];
  const env = { ...process.env, TERN_BENCH_OUTER_NETNS: fs.readlinkSync('/proc/self/ns/net') };
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'inherit', env });
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  removeNamespace();
  process.exit(code);
}

// Inside: never in the machine's own network namespace.
const outer = process.env.TERN_BENCH_OUTER_NETNS;
if (!outer || fs.readlinkSync('/proc/self/ns/net') === outer)
  throw new Error('bench/network runs its work only inside the namespace it makes');

const count = Number(values.ports);
const runs = Number(values.runs);
const log = createLogger('bench', 'silent');
const shell = hostShell();
const sh = (cmd: string, input?: string) =>
  execFileSync('sh', ['-ec', cmd], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
const ms = (n: number) => (n < 10 ? n.toFixed(2) : n.toFixed(0));

/** A common security group: SSH and ping in, everything else inbound denied, outbound open. */
const rules: PortRules = {
  inbound: 'deny',
  outbound: 'allow',
  rules: [
    { direction: 'in', protocol: 'tcp', ports: { from: 22, to: 22 } },
    { direction: 'in', protocol: 'icmp' },
  ],
};
const nics = Array.from({ length: count }, (_, i) => testNic(1, i + 1));
// Addresses up to .254: 10 + 244 NICs at most.
if (count < 1 || count > 244) throw new Error('--ports: 1 to 244');
const spec = testSpec('nat', 1, { leases: nics });
const vm = '00000000-0000-4000-8000-0000000000aa';
const ports = () => nics.map((n) => ({ network: spec.id, vm, mac: n.mac, ip: n.ip, rules }));

sh('ip link set lo up');
const footprint = () => sh('ip -br link | sort; nft list ruleset');
const before = footprint();

/** Checks what an applied network is: every port up on the bridge with its chains, DHCP serving. */
function check(stateDir: string): void {
  const taps = sh(`ip -br link show master ${spec.bridge}`)
    .split('\n')
    .filter((l) => /^tt[0-9a-f]{12}\s.*<[^>]*\bUP\b/.test(l)).length;
  const elements = (sh(`nft list map bridge tern_${spec.bridge} out_ports`).match(/jump out_/g) ?? []).length;
  const paths = dnsmasqPaths(path.join(stateDir, 'networks', spec.id));
  const leases = fs.readFileSync(paths.dhcpHosts, 'utf8').split('\n').filter(Boolean).length;
  if (taps !== count || elements !== count || leases !== count || !dnsmasqPid(paths))
    throw new Error(
      `applied: ${taps} taps up, ${elements} ports in nftables, ${leases} leases, dnsmasq ${dnsmasqPid(paths)}`,
    );
}

function checkGone(what: string): void {
  const now = footprint();
  if (now !== before) throw new Error(`${what} left something behind:\n${now}`);
}

const stateDirs: string[] = [];
const freshState = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-bench-net-'));
  stateDirs.push(dir);
  return dir;
};

/**
 * The previous way, kept as the baseline: `apply`, then per port its tap made and put on the
 * bridge, its chains in a transaction of their own, up (four processes); per port its tap
 * deleted and its chains dropped (two processes, each waiting for the kernel), then `remove`.
 */
async function previousWay(): Promise<{ apply: number; down: number }> {
  const stateDir = freshState();
  const nets = new KernelNetworks({ stateDir, log, watchMs: 0 });
  const plans = ports().map((p) => ({ tap: newTapName(), ...p }));
  const t0 = performance.now();
  if ((await nets.apply(spec)).state !== 'ready') throw new Error('apply failed');
  for (const p of plans) {
    await makeTap(shell, p.tap, spec.bridge, spec.mtu);
    await shell.run(['nft', '-f', '-'], addPortRules(spec, p, false));
    await tapUp(shell, p.tap);
  }
  const apply = performance.now() - t0;
  check(stateDir);
  const t1 = performance.now();
  for (const p of plans) {
    await removeTap(shell, p.tap);
    await shell.run(['nft', '-f', '-'], removePortRules(spec.bridge, p.tap));
  }
  await nets.remove(spec.id);
  const down = performance.now() - t1;
  await nets.close();
  checkGone('before');
  return { apply, down };
}

/**
 * The agent's path as VMs come and go: `apply`, `plug` each port, `unplug` each port, `remove`.
 * `together`: the plugs (and then the unplugs) asked at once, as by a host starting (stopping)
 * 100 one-NIC VMs, so they wait in the agent's queue and go in batches; otherwise one after
 * another, each waiting for the one before (VMs started one by one): nothing to coalesce.
 */
async function agent(together: boolean): Promise<{ apply: number; down: number }> {
  const stateDir = freshState();
  const nets = new KernelNetworks({ stateDir, log, watchMs: 0 });
  const t0 = performance.now();
  if ((await nets.apply(spec)).state !== 'ready') throw new Error('apply failed');
  const taps: string[] = [];
  if (together) taps.push(...(await Promise.all(ports().map((p) => nets.plug(p)))));
  else for (const p of ports()) taps.push(await nets.plug(p));
  const apply = performance.now() - t0;
  check(stateDir);
  const t1 = performance.now();
  if (together) await Promise.all(taps.map((tap) => nets.unplug(tap)));
  else for (const tap of taps) await nets.unplug(tap);
  await nets.remove(spec.id);
  const down = performance.now() - t1;
  await nets.close();
  checkGone(together ? 'the agent, together' : 'the agent, one by one');
  return { apply, down };
}

/** The agent at start: the kept network and its ports realized, the ruleset in one transaction. */
async function oneTransaction(): Promise<{ apply: number; down: number }> {
  const stateDir = freshState();
  const store = new NetworkStore(stateDir);
  store.saveSpec(spec);
  for (const p of ports()) store.savePort({ tap: newTapName(), ...p });
  const nets = new KernelNetworks({ stateDir, log, watchMs: 0 });
  const t0 = performance.now();
  await nets.reconcile();
  const apply = performance.now() - t0;
  if (nets.list()[0]?.state !== 'ready') throw new Error(`reconcile: ${nets.list()[0]?.reason}`);
  check(stateDir);
  const t1 = performance.now();
  await Promise.all(nets.portsOf(vm).map((tap) => nets.unplug(tap)));
  await nets.remove(spec.id);
  const down = performance.now() - t1;
  await nets.close();
  checkGone('one transaction');
  return { apply, down };
}

/** The fewest processes: one ip batch, one nft transaction, the same dnsmasq; batch teardown. */
async function byHand(): Promise<{ apply: number; down: number }> {
  const stateDir = freshState();
  const paths = dnsmasqPaths(path.join(stateDir, 'networks', spec.id));
  fs.mkdirSync(path.join(stateDir, 'networks', spec.id), { recursive: true });
  const plans = ports().map((p) => ({ tap: newTapName(), ...p }));
  // An interface group of the taps' own, so one netlink request deletes them all.
  const group = 4242;
  const t0 = performance.now();
  const batch = [
    `link add ${spec.bridge} type bridge`,
    `link set ${spec.bridge} address ${spec.gatewayMac} mtu ${spec.mtu} up`,
    `addr add ${spec.gateway}/24 dev ${spec.bridge}`,
    ...plans.map((p) => `tuntap add dev ${p.tap} mode tap vnet_hdr`),
    ...plans.map((p) => `link set ${p.tap} master ${spec.bridge} mtu ${spec.mtu} group ${group}`),
  ];
  await shell.run(['ip', '-batch', '-'], `${batch.join('\n')}\n`);
  await shell.run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  await shell.run(['nft', '-f', '-'], networkRules(spec, plans));
  await ensureDnsmasq(shell, spec, paths);
  await shell.run(['ip', '-batch', '-'], plans.map((p) => `link set ${p.tap} up\n`).join(''));
  const apply = performance.now() - t0;
  check(stateDir);
  const t1 = performance.now();
  await stopDnsmasq(paths);
  await shell.run(['ip', 'link', 'del', 'group', String(group)]);
  await shell.run(['nft', '-f', '-'], removeNetworkRules(spec.bridge));
  await shell.run(['ip', 'link', 'del', spec.bridge]);
  const down = performance.now() - t1;
  checkGone('floor by hand');
  return { apply, down };
}

/** Each step of a port's plug and unplug alone, per port, on an applied network. */
async function steps(): Promise<Record<string, number[]>> {
  const stateDir = freshState();
  const nets = new KernelNetworks({ stateDir, log, watchMs: 0 });
  await nets.apply({ ...spec, leases: [] });
  const t: Record<string, number[]> = {};
  const time = async (step: string, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    t[step] ??= [];
    t[step].push(performance.now() - t0);
  };
  const plans = ports().map((p) => ({ tap: newTapName(), ...p }));
  for (const p of plans) {
    await time('a process (sh -c true), the floor of every step', () => shell.run(['true']));
    await time('plug: ip tuntap add + ip link set master (makeTap)', () =>
      makeTap(shell, p.tap, spec.bridge, spec.mtu),
    );
    await time("plug: nft -f, the port's chains (addPortRules)", () =>
      shell.run(['nft', '-f', '-'], addPortRules(spec, p, false)),
    );
    await time('plug: ip link set up (tapUp)', () => tapUp(shell, p.tap));
  }
  for (const p of plans) {
    await time('unplug: ip link del (removeTap)', () => removeTap(shell, p.tap));
    await time("unplug: nft -f, the port's chains gone (removePortRules)", () =>
      shell.run(['nft', '-f', '-'], removePortRules(spec.bridge, p.tap)),
    );
  }
  await nets.remove(spec.id);
  await nets.close();
  checkGone('the steps');
  return t;
}

try {
  console.log(
    `# a nat network with ${count} ports (tap, anti-spoofing + security chains) and dnsmasq with ${count} fixed leases, ${runs} rounds; load ${loadavg()}`,
  );
  const kinds = [
    'before',
    'agent, together',
    'agent, one by one',
    'agent at start',
    'floor by hand',
  ] as const;
  const fns = {
    before: previousWay,
    'agent, together': () => agent(true),
    'agent, one by one': () => agent(false),
    'agent at start': oneTransaction,
    'floor by hand': byHand,
  };
  const got: Record<string, { apply: number[]; down: number[] }> = {};
  const rows: (string | number)[][] = [];
  for (let r = 0; r < runs; r++) {
    const row: (string | number)[] = [r + 1];
    for (const k of kinds) {
      const x = await fns[k]();
      got[k] ??= { apply: [], down: [] };
      got[k].apply.push(x.apply);
      got[k].down.push(x.down);
      row.push(ms(x.apply), ms(x.down));
    }
    rows.push(row);
  }
  for (const [label, f] of [
    ['median', (xs: number[]) => median(xs)],
    ['p95', (xs: number[]) => percentile(xs, 0.95)],
  ] as const)
    rows.push([label, ...kinds.flatMap((k) => [ms(f(got[k].apply)), ms(f(got[k].down))])]);
  table(['round', ...kinds.flatMap((k) => [`${k}: apply ms`, 'teardown ms'])], rows);

  console.log(`\n# where a port's time goes: each step alone, ${count} ports`);
  const t = await steps();
  table(
    ['step', 'median ms', 'p95 ms', `x ${count} ms`],
    Object.entries(t).map(([step, xs]) => [
      step,
      ms(median(xs)),
      ms(percentile(xs, 0.95)),
      ms(median(xs) * count),
    ]),
  );

  const m = (k: (typeof kinds)[number]) => `${ms(median(got[k].apply))} / ${ms(median(got[k].down))} ms`;
  const met = (k: (typeof kinds)[number]) =>
    median(got[k].apply) <= 2000 && median(got[k].down) <= 2000 ? 'met' : 'not met';
  console.log(
    `\nfigure: ${count} ports, apply / teardown medians: the agent, together ${m('agent, together')} (goal ≤ 2000 each: ${met('agent, together')}); one by one ${m('agent, one by one')} (${met('agent, one by one')}); before ${m('before')}; at start ${m('agent at start')}; floor by hand ${m('floor by hand')}; load ${loadavg()}`,
  );
} finally {
  for (const dir of stateDirs) {
    // A dnsmasq a failed round left behind: the namespace's removal ends it too.
    await stopDnsmasq(dnsmasqPaths(path.join(dir, 'networks', spec.id))).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
