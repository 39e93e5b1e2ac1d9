/**
 * A standalone manager process:
 *   node src/manager/main.ts --database F --port N [--cluster-port N] [--host ADDR]
 *                            [--cluster-host ADDR] [--tls-cert F --tls-key F]
 *                            [--audit-retention-days N]   (0: keep audit records for ever)
 *                            [--admin-token-file F] [--guest-dir DIR [--guest-pool NAME]]
 *                            [--key-file F | --key-store CONFIG.json]
 *   node src/manager/main.ts keys restore --from BACKUP [--key-file F | --key-store CONFIG.json]
 * Hosts join through the cluster port with a token from `tern host add`. With --guest-dir, the
 * tiny test guest becomes template `tiny` on the first host that comes online. The API speaks
 * HTTPS with a certificate from the cluster CA (pki/ca.crt beside the database is the CA its
 * clients trust), or with the operator's --tls-cert (PEM, chain included) and --tls-key.
 * Whatever it writes is readable by its own user only.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../log.ts';
import { askSecret } from '../prompt.ts';
import { issueAdminToken } from './auth/bootstrap.ts';
import { importTinyTemplate } from './library/templates.ts';
import { readKeyStoreConfig } from './secrets/keystore.ts';
import { openKeyStore } from './secrets/keystores/open.ts';
import { SecretStore } from './secrets/store.ts';
import { defaultKeyStore, startManager } from './start.ts';

const { values, positionals } = parseArgs({
  options: {
    database: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7410' },
    'cluster-port': { type: 'string', default: '7412' },
    'cluster-host': { type: 'string' },
    'admin-token-file': { type: 'string' },
    'guest-dir': { type: 'string' },
    'guest-pool': { type: 'string', default: 'local' },
    'key-file': { type: 'string' },
    'key-store': { type: 'string' },
    'tls-cert': { type: 'string' },
    'audit-retention-days': { type: 'string' },
    'tls-key': { type: 'string' },
    from: { type: 'string' },
  },
  allowPositionals: true,
});

// The database, keys and certificates it makes are nobody else's business.
process.umask(0o077);
const log = createLogger('manager');
try {
  const keyStore = values['key-store']
    ? readKeyStoreConfig(values['key-store'])
    : values['key-file']
      ? ({ kind: 'file', path: values['key-file'] } as const)
      : undefined;
  if (positionals[0] === 'keys') {
    if (positionals[1] !== 'restore' || !values.from)
      throw new Error(
        'usage: tern-manager keys restore --from BACKUP [--key-file F | --key-store CONFIG.json]',
      );
    if (!keyStore && !values.database)
      throw new Error('name the key store (--key-file or --key-store), or --database');
    const passphrase = await askSecret('backup passphrase', { env: 'TERN_KEY_PASSPHRASE' });
    const store = openKeyStore(keyStore ?? defaultKeyStore(values.database as string));
    try {
      const r = await SecretStore.restoreKeys(store, fs.readFileSync(values.from, 'utf8'), passphrase);
      process.stdout.write(
        `restored into ${store.description}: ${r.added.length} keys added${r.added.length ? ` (${r.added.join(', ')})` : ''}, ${r.present.length} already there\n`,
      );
    } finally {
      await store.close();
    }
    process.exit(0);
  }
  if (!values.database) throw new Error('--database is required');
  if (!values['tls-cert'] !== !values['tls-key']) throw new Error('--tls-cert and --tls-key go together');
  const tls = values['tls-cert']
    ? {
        cert: fs.readFileSync(values['tls-cert'], 'utf8'),
        key: fs.readFileSync(values['tls-key'] as string, 'utf8'),
      }
    : undefined;
  const retention = values['audit-retention-days'];
  if (retention !== undefined && !/^\d+$/.test(retention))
    throw new Error('--audit-retention-days takes a whole number of days (0: for ever)');
  const manager = await startManager({
    database: values.database,
    host: values.host,
    port: Number(values.port),
    clusterPort: Number(values['cluster-port']),
    clusterHost: values['cluster-host'],
    keyStore,
    tls,
    auditRetentionDays: retention === undefined ? undefined : Number(retention),
    log,
  });
  const s = manager.services;
  if (values['admin-token-file'] && (await s.tokens.count()) === 0) {
    const token = await issueAdminToken(s, 'admin');
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
