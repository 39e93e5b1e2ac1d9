/**
 * All-in-one Tern: a manager on embedded SQLite plus a local host agent, talking the same
 * agent protocol, over the same mutual TLS, as a cluster would. On first start the local host
 * joins with a join token, an admin API token is written to the CLI config, and the tiny test
 * guest is imported as a template.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadMembership } from '../agent/enrol.ts';
import { startAgent } from '../agent/start.ts';
import { asTernError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { issueAdminToken } from '../manager/auth/bootstrap.ts';
import { importTinyTemplate } from '../manager/library/templates.ts';
import { startManager } from '../manager/start.ts';
import { type CliConfig, cliConfigPath, writeCliConfig } from './config.ts';

export interface AllInOneOptions {
  dataDir: string;
  managerPort: number;
  agentPort: number;
  clusterPort: number;
  log: Logger;
  cliConfig?: string;
  guestDir?: string;
  heartbeatMs?: number;
  /** Where images may be imported from by path (default: `<dataDir>/import`). */
  importDirs?: string[];
  /** Days audit records are kept (0: for ever); without it, as set before. */
  auditRetentionDays?: number;
}

const repoRoot = path.resolve(import.meta.dirname, '..', '..');

/** The tiny guest's build directory; guest/build.sh answers at once when it is cached. */
export function findGuestDir(log: Logger): string | undefined {
  if (process.env.TERN_GUEST_DIR) return process.env.TERN_GUEST_DIR;
  try {
    const out = execFileSync('bash', [path.join(repoRoot, 'guest', 'build.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return out.trim().split('\n').pop();
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not build the tiny guest');
    return undefined;
  }
}

export async function startAllInOne(opts: AllInOneOptions) {
  // Private: the database, keys, certificates and disks are the user's alone, also in a
  // data directory an earlier version made readable by others.
  process.umask(0o077);
  fs.mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(opts.dataDir, 0o700);
  const manager = await startManager({
    database: path.join(opts.dataDir, 'manager', 'tern.db'),
    keyStore: { kind: 'file', path: path.join(opts.dataDir, 'keys', 'kek.json') },
    host: '127.0.0.1',
    port: opts.managerPort,
    clusterPort: opts.clusterPort,
    auditRetentionDays: opts.auditRetentionDays,
    log: opts.log.child({ part: 'manager' }),
  });
  const s = manager.services;
  // The local host joins like any other, with a join token, and then keeps its certificate.
  const agentDir = path.join(opts.dataDir, 'agent');
  const join = loadMembership(agentDir)
    ? undefined
    : await s.joinTokens.create('local', s.joining.caFingerprint, s.joining.url).then((t) => ({
        manager: s.joining.url,
        token: t.token,
        caFingerprint: t.caFingerprint,
      }));
  const agent = await startAgent({
    stateDir: agentDir,
    host: '127.0.0.1',
    port: opts.agentPort,
    // `shared` holds the templates: other hosts that see it at the same path (more agents on
    // this machine, or a mount) run and migrate VMs made from them.
    pools: {
      local: path.join(opts.dataDir, 'pools', 'local'),
      shared: path.join(opts.dataDir, 'pools', 'shared'),
    },
    sharedPools: ['shared'],
    importDirs: opts.importDirs ?? [path.join(opts.dataDir, 'import')],
    log: opts.log.child({ part: 'agent' }),
    heartbeatMs: opts.heartbeatMs,
    join,
  });
  const host = await s.hosts.whenOnline();
  const configFile = opts.cliConfig ?? cliConfigPath();
  if ((await s.tokens.count()) === 0 || !fs.existsSync(configFile)) {
    const token = await issueAdminToken(s, 'admin (all-in-one)');
    writeCliConfig({ url: manager.url, token, ca: manager.apiCa ?? undefined }, configFile);
    opts.log.info('created an admin API token and wrote it to the CLI config');
  } else {
    recordCa(configFile, manager.url, manager.apiCa);
  }
  const guestDir = opts.guestDir ?? findGuestDir(opts.log);
  if (guestDir) {
    try {
      await importTinyTemplate(s.templates, host.id, s.hosts.client(host.id), guestDir, 'shared', opts.log);
    } catch (err) {
      // Only the demo template is missing (a full pool, say): the manager and its host stay up.
      opts.log.error(
        `the tiny template could not be imported: ${asTernError(err).message}. Tern keeps running without it; make room and start it again to import it`,
      );
    }
  }
  return {
    manager,
    agent,
    async close() {
      await manager.close();
      await agent.close();
    },
  };
}

/**
 * A config written before the API spoke HTTPS (or by another data directory) names this
 * manager without its CA, or with http://: it learns both, keeping its token.
 */
function recordCa(file: string, url: string, ca: string | null): void {
  let config: CliConfig;
  try {
    config = JSON.parse(fs.readFileSync(file, 'utf8')) as CliConfig;
  } catch {
    return;
  }
  const sameManager = config.url === url || config.url === url.replace(/^https:/, 'http:');
  if (!sameManager || !ca || (config.url === url && config.ca === ca)) return;
  writeCliConfig({ ...config, url, ca }, file);
}
