/**
 * A standalone manager process:
 *   node src/manager/main.ts --database F --port N [--cluster-port N] [--host ADDR]
 *                            [--cluster-host ADDR]
 *                            [--admin-token-file F] [--guest-dir DIR [--guest-pool NAME]]
 * Hosts join through the cluster port with a token from `tern host add`. With --guest-dir, the
 * tiny test guest becomes template `tiny` on the first host that comes online.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../log.ts';
import { importTinyTemplate } from './library/templates.ts';
import { startManager } from './start.ts';

const { values } = parseArgs({
  options: {
    database: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7410' },
    'cluster-port': { type: 'string', default: '7412' },
    'cluster-host': { type: 'string' },
    'admin-token-file': { type: 'string' },
    'guest-dir': { type: 'string' },
    'guest-pool': { type: 'string', default: 'local' },
  },
});

const log = createLogger('manager');
try {
  if (!values.database) throw new Error('--database is required');
  const manager = await startManager({
    database: values.database,
    host: values.host,
    port: Number(values.port),
    clusterPort: Number(values['cluster-port']),
    clusterHost: values['cluster-host'],
    log,
  });
  const s = manager.services;
  if (values['admin-token-file'] && (await s.tokens.count()) === 0) {
    const { token } = await s.tokens.create('admin', 'admin');
    // Written whole and renamed into place: whoever waits for the file never reads half of it.
    fs.writeFileSync(`${values['admin-token-file']}.partial`, `${token}\n`, { mode: 0o600 });
    fs.renameSync(`${values['admin-token-file']}.partial`, values['admin-token-file']);
  }
  const guestDir = values['guest-dir'];
  if (guestDir) {
    void s.hosts.whenOnline().then(async (host) => {
      try {
        await importTinyTemplate(
          s.templates,
          host.id,
          s.hosts.client(host.id),
          guestDir,
          values['guest-pool'],
          log,
        );
        log.info({ host: host.name }, 'tiny template ready');
      } catch (err) {
        log.error({ err }, 'importing the tiny template failed');
      }
    });
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => void manager.close().then(() => process.exit(0)));
} catch (err) {
  process.stderr.write(`tern-manager: ${(err as Error).message}\n`);
  process.exit(1);
}
