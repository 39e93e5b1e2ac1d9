/** `tern pool …`: image pools, their versions, promotion and rollback. */
import { TernError } from '../../errors.ts';
import type { ImagePool } from '../../wire/image-pool.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { byName } from '../names.ts';
import { printJson, printTable, printText } from '../output.ts';
import { submitTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';

const usage = `usage: tern pool list | show POOL
       tern pool create POOL --template T --size N [--persistent] [--max-unavailable PCT] [--start]
       tern pool version create POOL | test|promote|delete POOL N
       tern pool rollback POOL`;

export async function poolCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const enc = encodeURIComponent;
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.request<{ items: ImagePool[] }>('GET', '/api/v1/image-pools')).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'TEMPLATE', 'CACHE', 'VMS', 'PRODUCTION', 'PREVIOUS', 'VERSIONS'],
      items.map((p) => [
        p.name,
        p.template,
        p.cache,
        p.vms.length,
        p.production,
        p.previous,
        p.versions.length,
      ]),
    );
  }
  if (sub === 'show' && args.length === 1) {
    const p = await api.request<ImagePool>('GET', `/api/v1/image-pools/${enc(args[0])}`);
    if (flags.output === 'json') return printJson(p);
    printTable(
      ['VERSION', 'PARENT', 'STATE', 'MAINTENANCE VM'],
      p.versions.map((v) => [v.number, v.parent, v.state, v.maintenanceVm]),
    );
    printText('\n');
    return printTable(
      ['VM', 'VERSION', 'STATE'],
      byName(p.vms).map((v) => [v.name, v.version, v.state]),
    );
  }
  if (sub === 'create' && args.length === 1 && flags.template && flags.size) {
    if (!/^\d+$/.test(flags.size))
      throw new TernError('invalid_request', '--size takes a whole number of VMs');
    return submitTask(api, flags, 'POST', '/api/v1/image-pools', {
      name: args[0],
      template: flags.template,
      size: Number(flags.size),
      cache: flags.persistent ? 'persistent' : 'non-persistent',
      ...(flags['max-unavailable'] ? { maxUnavailablePercent: Number(flags['max-unavailable']) } : {}),
      start: flags.start,
    });
  }
  if (sub === 'rollback' && args.length === 1) {
    return submitTask(api, flags, 'POST', `/api/v1/image-pools/${enc(args[0])}/rollback`);
  }
  if (sub === 'version') {
    const [op, pool, n] = args;
    const base = `/api/v1/image-pools/${enc(pool ?? '')}/versions`;
    if (op === 'create' && pool) return submitTask(api, flags, 'POST', base);
    if (pool && n && /^\d+$/.test(n)) {
      if (op === 'test') return submitTask(api, flags, 'POST', `${base}/${n}/test`);
      if (op === 'promote') return submitTask(api, flags, 'POST', `${base}/${n}/promote`);
      if (op === 'delete') return submitTask(api, flags, 'DELETE', `${base}/${n}`);
    }
  }
  throw new TernError('invalid_request', usage);
}

const pool = viaGroup(poolCommand);

export const poolCommands: Command[] = [
  { path: 'pool list', summary: 'image pools', groupDefault: true, run: pool },
  { path: 'pool show', args: 'POOL', summary: 'one pool: its versions and VMs', run: pool },
  {
    path: 'pool create',
    args: 'POOL',
    summary: 'a pool of VMs from a template',
    flags: [
      ['template', 'the template its VMs are made from'],
      ['size', 'how many VMs'],
      'persistent',
      'max-unavailable',
      ['start', 'start its VMs'],
      'no-wait',
    ],
    run: pool,
  },
  {
    path: 'pool rollback',
    args: 'POOL',
    summary: 'back to the previous version',
    flags: ['no-wait'],
    run: pool,
  },
  {
    path: 'pool version create',
    args: 'POOL',
    summary: 'a new version, with a maintenance VM',
    flags: ['no-wait'],
    run: pool,
  },
  { path: 'pool version test', args: 'POOL N', summary: 'try a version', flags: ['no-wait'], run: pool },
  {
    path: 'pool version promote',
    args: 'POOL N',
    summary: 'make a version production',
    flags: ['no-wait'],
    run: pool,
  },
  { path: 'pool version delete', args: 'POOL N', summary: 'delete a version', flags: ['no-wait'], run: pool },
];
