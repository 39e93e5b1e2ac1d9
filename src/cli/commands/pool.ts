/** `tern pool …`: image pools, their versions, promotion and rollback. */
import { TernError } from '../../errors.ts';
import { imagePoolRoutes } from '../../wire/api/image-pools.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { byName } from '../names.ts';
import { printJson, printTable, printText } from '../output.ts';
import { followTask } from '../progress.ts';
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
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.call(imagePoolRoutes.list)).items);
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
    const p = await api.call(imagePoolRoutes.show, { params: { pool: args[0] } });
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
    const body = {
      name: args[0],
      template: flags.template,
      size: Number(flags.size),
      cache: flags.persistent ? ('persistent' as const) : ('non-persistent' as const),
      ...(flags['max-unavailable'] ? { maxUnavailablePercent: Number(flags['max-unavailable']) } : {}),
      start: flags.start,
    };
    return followTask(api, flags, (await api.call(imagePoolRoutes.create, { body })).task);
  }
  if (sub === 'rollback' && args.length === 1) {
    return followTask(
      api,
      flags,
      (await api.call(imagePoolRoutes.rollback, { params: { pool: args[0] } })).task,
    );
  }
  if (sub === 'version') {
    const [op, pool, n] = args;
    if (op === 'create' && pool)
      return followTask(
        api,
        flags,
        (await api.call(imagePoolRoutes.createVersion, { params: { pool } })).task,
      );
    const versionRoutes = {
      test: imagePoolRoutes.testVersion,
      promote: imagePoolRoutes.promoteVersion,
      delete: imagePoolRoutes.removeVersion,
    };
    if (pool && n && /^\d+$/.test(n) && (op === 'test' || op === 'promote' || op === 'delete')) {
      const params = { pool, number: Number(n) };
      return followTask(api, flags, (await api.call(versionRoutes[op], { params })).task);
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
