/** Starts an agent (driver + protocol server); used by the agent process and by all-in-one mode. */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { BackupFiles } from './backup/backup-files.ts';
import type { HypervisorDriver } from './driver.ts';
import { heartbeat, type JoinParams, join, loadMembership } from './enrol.ts';
import { freePort } from './free-port.ts';
import { HaGuard } from './ha/guard.ts';
import { QemuDriver } from './qemu/driver.ts';
import { buildAgentServer } from './server.ts';

export interface AgentOptions {
  stateDir: string;
  host: string;
  /** 0: any free port. */
  port: number;
  pools: Record<string, string>;
  /** Names of the pools every host sees at the same path. */
  sharedPools?: string[];
  /** Directories images may be imported from by path (default: `<stateDir>/import`). */
  importDirs?: string[];
  log: Logger;
  heartbeatMs?: number;
  driver?: HypervisorDriver;
  /** Joins a cluster on first start; later starts use the certificate kept in the state dir. */
  join?: JoinParams;
  /** How the manager reaches this agent (default https://host:port). */
  advertise?: string;
  /**
   * How this agent reaches the manager's cluster endpoint, instead of the address kept at
   * join: a path through a proxy (a simulated host's network cable). The manager is still
   * authenticated by the cluster CA.
   */
  managerUrl?: string;
  /**
   * Run the HA watchdog process (default: with the QEMU driver only; simulated hosts have no
   * processes to kill, and fence in-process).
   */
  haWatchdog?: boolean;
}

export interface RunningAgent {
  url: string;
  driver: HypervisorDriver;
  close(): Promise<void>;
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  fs.mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  for (const dir of Object.values(opts.pools)) fs.mkdirSync(dir, { recursive: true });
  // The address goes into the certificate request, so the port is settled before joining.
  const port = opts.port || (await freePort(opts.host));
  const url = opts.advertise ?? `https://${opts.host}:${port}`;
  let membership = loadMembership(opts.stateDir);
  if (!membership) {
    if (!opts.join) {
      throw new TernError(
        'invalid_request',
        `this host has not joined a cluster (no certificate in ${opts.stateDir}/pki); start it with the command \`tern host add NAME\` prints`,
      );
    }
    membership = await join(opts.stateDir, opts.join, url);
    opts.log.info({ manager: membership.manager }, 'joined the cluster');
  }
  if (opts.managerUrl) membership = { ...membership, manager: opts.managerUrl.replace(/\/$/, '') };
  const driver =
    opts.driver ??
    new QemuDriver({
      stateDir: opts.stateDir,
      pools: opts.pools,
      sharedPools: opts.sharedPools ?? [],
      log: opts.log,
      heartbeatMs: opts.heartbeatMs,
    });
  await driver.init();
  // At most every 2 s: HA needs a network heartbeat at least every quarter of its timeout,
  // and the shortest timeout is 10 s.
  const beatMs = Math.min(opts.heartbeatMs ?? 5000, 2000);
  const guard = new HaGuard({
    stateDir: opts.stateDir,
    pools: opts.pools,
    driver,
    log: opts.log,
    heartbeatMs: beatMs,
    ...((opts.haWatchdog ?? !opts.driver) ? {} : { watchdog: null }),
  });
  const importDirs = opts.importDirs ?? [path.join(opts.stateDir, 'import')];
  for (const dir of importDirs) fs.mkdirSync(dir, { recursive: true });
  const app = await buildAgentServer({
    driver,
    pools: opts.pools,
    importDirs,
    backupFiles: new BackupFiles(opts.stateDir, opts.log),
    identity: membership.identity,
    log: opts.log,
    fenced: () => guard.fenced,
  });
  await app.listen({ host: opts.host, port });
  opts.log.info({ port }, 'agent listening');
  // Started once listening: a start that fails to listen (and is retried) leaves no loop behind.
  guard.start();
  const stopBeating = heartbeat(
    membership,
    beatMs,
    opts.log,
    (r, sentAt) => guard.heartbeatAnswered(r, sentAt),
    () => ({ haGeneration: guard.generation }),
  );
  return {
    url,
    driver,
    async close() {
      await stopBeating();
      await guard.close();
      await app.close();
      await driver.close();
    },
  };
}
