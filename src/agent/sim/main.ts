/**
 * Simulated hosts for benchmarks and demos, N agents in one process:
 *   node src/agent/sim/main.ts --hosts N --base-dir DIR
 *        [--manager URL --admin-token-file F [--manager-ca F] [--join URL]]
 *        [--cores N] [--memory-mib N] [--pool-gib N] [--boot-delay-ms N] [--network-mibps N]
 *        [--dirty-mibps N] [--time-scale X] [--listen ADDR] [--no-shared-pool]
 * Hosts that have not joined yet get a join token each from the manager's API (`--manager`,
 * with an admin token) and join its cluster endpoint (`--join`, by default the one the token
 * names; `--manager-ca`: the CA of the API's certificate, the manager's pki/ca.crt); a later
 * start on the same base directory needs neither. Prints `name url` per host
 * on stdout once all listen; logs go to stderr.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { requestJson } from '../../http/json-client.ts';
import { createLogger } from '../../log.ts';
import { tlsFetch } from '../../pki/identity.ts';
import { hostRoutes } from '../../wire/api/hosts.ts';
import { callRoute, type Send } from '../../wire/api-client.ts';
import { SimClock } from './clock.ts';
import { startSimHosts } from './cluster.ts';

const { values } = parseArgs({
  options: {
    hosts: { type: 'string' },
    'base-dir': { type: 'string' },
    manager: { type: 'string' },
    'admin-token-file': { type: 'string' },
    'manager-ca': { type: 'string' },
    join: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1' },
    cores: { type: 'string' },
    'memory-mib': { type: 'string' },
    'pool-gib': { type: 'string' },
    'boot-delay-ms': { type: 'string' },
    'network-mibps': { type: 'string' },
    'dirty-mibps': { type: 'string' },
    'time-scale': { type: 'string', default: '1' },
    'no-shared-pool': { type: 'boolean', default: false },
  },
});

function positive(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0)) throw new Error(`--${flag} needs a positive number, not ${value}`);
  return n;
}

const log = createLogger('sim');
try {
  const n = positive('hosts', values.hosts);
  if (!n || !Number.isInteger(n)) throw new Error('--hosts N is required');
  if (!values['base-dir']) throw new Error('--base-dir DIR is required');
  let send: Send | null = null;
  if (values.manager) {
    if (!values['admin-token-file']) throw new Error('--manager needs --admin-token-file');
    const url = values.manager.replace(/\/$/, '');
    const token = fs.readFileSync(values['admin-token-file'], 'utf8').trim();
    const ca = values['manager-ca'] ? fs.readFileSync(values['manager-ca'], 'utf8') : undefined;
    const fetch = tlsFetch(null, { ca, checkName: true });
    send = (method, path, body) =>
      requestJson(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
        body,
        timeoutMs: 120_000,
        unreachable: (why) => `cannot reach the Tern manager at ${url} (${why})`,
        peer: 'the manager',
        fetch,
      });
  }
  const poolGiB = positive('pool-gib', values['pool-gib']);
  const sim = await startSimHosts(n, {
    baseDir: values['base-dir'],
    log,
    listenHost: values.listen,
    sharedPool: !values['no-shared-pool'],
    clock: new SimClock(positive('time-scale', values['time-scale'])),
    driver: {
      cores: positive('cores', values.cores),
      memoryMiB: positive('memory-mib', values['memory-mib']),
      poolTotalBytes: poolGiB ? poolGiB * 1024 ** 3 : undefined,
      bootDelayMs: positive('boot-delay-ms', values['boot-delay-ms']),
      networkMiBps: positive('network-mibps', values['network-mibps']),
      dirtyMiBps: positive('dirty-mibps', values['dirty-mibps']),
    },
    join: async (name) => {
      if (!send)
        throw new Error(`host ${name} has not joined a cluster: give --manager and --admin-token-file`);
      const t = await callRoute(send, hostRoutes.add, { body: { name } });
      const manager = values.join ?? /--join (\S+)/.exec(t.command)?.[1];
      if (!manager) throw new Error('give --join URL: the join token names no cluster endpoint');
      return { manager, token: t.token, caFingerprint: t.caFingerprint };
    },
  });
  for (const h of sim.hosts) process.stdout.write(`${h.name} ${h.url}\n`);
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => void sim.close().then(() => process.exit(0)));
} catch (err) {
  process.stderr.write(`tern-sim: ${(err as Error).message}\n`);
  process.exit(1);
}
