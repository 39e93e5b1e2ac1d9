/**
 * The agent process:
 *   node src/agent/main.ts --state-dir DIR --port N --pool name=dir [--shared-pool name=dir]
 *                          [--join URL --join-token T --ca-fingerprint F] [--advertise URL]
 *                          [--import-dir DIR]...   (where images may be imported from by path;
 *                                                   default: STATE-DIR/import)
 * The first start joins the cluster with the token `tern host add` printed; later starts use
 * the certificate kept in the state directory. VMs it runs outlive it; a new agent on the same
 * state directory reattaches to them.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../log.ts';
import { startAgent } from './start.ts';

const { values } = parseArgs({
  options: {
    'state-dir': { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7411' },
    join: { type: 'string' },
    'join-token': { type: 'string' },
    'ca-fingerprint': { type: 'string' },
    advertise: { type: 'string' },
    pool: { type: 'string', multiple: true, default: [] },
    'shared-pool': { type: 'string', multiple: true, default: [] },
    'import-dir': { type: 'string', multiple: true, default: [] },
  },
});

// Disks, seeds and the host's key are readable by the agent's user only (QEMU inherits it).
process.umask(0o077);
const log = createLogger('agent');

function joinParams() {
  const { join, 'join-token': token, 'ca-fingerprint': caFingerprint } = values;
  if (!join && !token && !caFingerprint) return undefined;
  if (!join || !token || !caFingerprint) {
    throw new Error('joining needs all of --join URL, --join-token T and --ca-fingerprint F');
  }
  return { manager: join, token, caFingerprint };
}
try {
  const stateDir = path.resolve(values['state-dir'] ?? '/var/lib/tern/agent');
  const pools: Record<string, string> = {};
  // Shared pools are directories every host sees at the same path (NFS, a cluster filesystem).
  const shared: string[] = [];
  for (const [p, isShared] of [
    ...values.pool.map((x) => [x, false] as const),
    ...values['shared-pool'].map((x) => [x, true] as const),
  ]) {
    const [name, dir] = p.split('=');
    if (!name || !dir) throw new Error(`--pool and --shared-pool take name=directory, got ${p}`);
    pools[name] = path.resolve(dir);
    if (isShared) shared.push(name);
  }
  if (Object.keys(pools).length === 0) pools.local = path.join(stateDir, 'pools', 'local');
  const agent = await startAgent({
    stateDir,
    host: values.host,
    port: Number(values.port),
    join: joinParams(),
    advertise: values.advertise,
    pools,
    sharedPools: shared,
    ...(values['import-dir'].length > 0
      ? { importDirs: values['import-dir'].map((d) => path.resolve(d)) }
      : {}),
    log,
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => void agent.close().then(() => process.exit(0)));
} catch (err) {
  log.fatal((err as Error).message);
  process.stderr.write(`tern-agent: ${(err as Error).message}\n`);
  process.exit(1);
}
