/**
 * A standalone manager process:
 *   node src/manager/main.ts --database F --port N --agent NAME=URL --agent-token-file F
 *                            [--admin-token-file F] [--guest-dir DIR]
 * Hosts given with --agent are registered on first start; later starts find them in the
 * database and reconnect whether or not they are up yet.
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
    agent: { type: 'string', multiple: true, default: [] },
    'agent-token-file': { type: 'string' },
    'admin-token-file': { type: 'string' },
    'guest-dir': { type: 'string' },
  },
});

const log = createLogger('manager');
try {
  if (!values.database) throw new Error('--database is required');
  const manager = await startManager({
    database: values.database,
    host: values.host,
    port: Number(values.port),
    log,
  });
  const s = manager.services;
  const known = new Set((await s.hosts.list()).map((h) => h.name));
  for (const a of values.agent) {
    const [name, url] = a.split('=');
    if (!name || !url || !values['agent-token-file'])
      throw new Error('--agent NAME=URL needs --agent-token-file');
    if (known.has(name)) continue;
    const token = fs.readFileSync(values['agent-token-file'], 'utf8').trim();
    const host = await s.hosts.register(name, url, token);
    if (values['guest-dir']) {
      await importTinyTemplate(s.templates, s.hosts.client(host.id), values['guest-dir'], 'local', log);
    }
  }
  if (values['admin-token-file'] && (await s.tokens.count()) === 0) {
    const { token } = await s.tokens.create('admin', 'admin');
    // Written whole and renamed into place: whoever waits for the file never reads half of it.
    fs.writeFileSync(`${values['admin-token-file']}.partial`, `${token}\n`, { mode: 0o600 });
    fs.renameSync(`${values['admin-token-file']}.partial`, values['admin-token-file']);
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => void manager.close().then(() => process.exit(0)));
} catch (err) {
  process.stderr.write(`tern-manager: ${(err as Error).message}\n`);
  process.exit(1);
}
