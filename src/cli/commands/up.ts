/** `tern up`: the manager and a local host in one process, until SIGINT or SIGTERM. */
import path from 'node:path';
import { dataDir } from '../../allinone/config.ts';
import { createLogger } from '../../log.ts';
import type { Flags } from '../flags.ts';
import type { Command } from '../registry.ts';

async function up(flags: Flags): Promise<void> {
  // Loaded only here: the rest of the CLI starts faster without the server modules.
  const { startAllInOne } = await import('../../allinone/up.ts');
  const log = createLogger('tern');
  const aio = await startAllInOne({
    dataDir: path.resolve(flags['data-dir'] ?? dataDir()),
    managerPort: Number(flags.port ?? 7410),
    agentPort: Number(flags['agent-port'] ?? 7411),
    clusterPort: Number(flags['cluster-port'] ?? 7412),
    ...(flags['import-dir'].length > 0
      ? { importDirs: flags['import-dir'].map((d) => path.resolve(d)) }
      : {}),
    auditRetentionDays:
      flags['audit-retention-days'] === undefined ? undefined : Number(flags['audit-retention-days']),
    log,
  });
  process.stderr.write(
    `Tern is running: API ${aio.manager.url}/api/v1 (OpenAPI at /api/v1/openapi.json). Try: bin/tern vm create demo --template tiny --start\n`,
  );
  const stop = () => {
    process.stderr.write('stopping Tern (VMs keep running)\n');
    void aio.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

export const upCommands: Command[] = [
  {
    path: 'up',
    summary: 'run all-in-one (manager + local host)',
    details: 'image import --path reads only from the import dirs (default DATA-DIR/import)',
    flags: ['data-dir', 'port', 'agent-port', 'cluster-port', 'import-dir', 'audit-retention-days'],
    run: async ({ flags }) => {
      await up(flags);
      return -1;
    },
  },
];
