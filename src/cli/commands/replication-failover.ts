/**
 * `tern vm failover VM [--planned] [--point ID|latest] [--force]` and `tern replication
 * test-failover VM [--point ID] [--network NET]` / `test-stop VM` (docs/replication.md, Failover).
 */
import { TernError } from '../../errors.ts';
import { replicationFailoverRoutes as routes } from '../../wire/api/replication-failover.ts';
import type { FlagSpec } from '../flags.ts';
import { printText } from '../output.ts';
import { followTask } from '../progress.ts';
import type { Command } from '../registry.ts';

const pointFlag: [string, FlagSpec] = [
  'point',
  { type: 'string', value: 'ID|latest', help: 'the recovery point (default: the newest)' },
];

function one(args: string[], usage: string): string {
  if (args.length !== 1) throw new TernError('invalid_request', `usage: ${usage}`);
  return args[0]!;
}

export const replicationFailoverCommands: Command[] = [
  {
    path: 'vm failover',
    args: 'VM',
    summary: 'fail a replicated VM over to its replica',
    details:
      "--planned shuts the VM down (powered off after --timeout only with --force), sends its last changes and starts the replica on them: no write is lost; then the new primary replicates back to the old primary's host (its first copy whole), unless --no-reverse. Without it (unplanned), the replica starts on the newest point or --point; refused while the primary might still run (its host not fenced, the VM not confirmed stopped) unless --force, which is logged with its risk. Refused even forced when the primary's host says the VM runs. The old primary is kept from starting afterwards.",
    flags: [
      ['planned', { type: 'boolean', help: 'shut the primary down and send its last changes first' }],
      ['no-reverse', { type: 'boolean', help: "planned: do not replicate back to the old primary's host" }],
      pointFlag,
      'force',
      [
        'timeout',
        {
          type: 'integer',
          value: 'SECONDS',
          help: 'planned: how long the guest has to shut down (default 120)',
        },
      ],
      'no-wait',
    ],
    run: async ({ api, args, flags }) => {
      const vm = one(args, 'tern vm failover VM [--planned] [--point ID|latest] [--force]');
      const body = {
        ...(flags.planned ? { planned: true } : {}),
        ...(flags.point ? { point: flags.point } : {}),
        ...(flags.force ? { force: true } : {}),
        ...(flags['no-reverse'] ? { noReverse: true } : {}),
        ...(flags.timeout ? { shutdownTimeoutSeconds: Number(flags.timeout) } : {}),
      };
      const answer = await api().call(routes.failover, { params: { replication: vm }, body });
      if (answer.warning && flags.output !== 'json') printText(`warning: ${answer.warning}\n`);
      await followTask(api(), flags, answer.task);
    },
  },
  {
    path: 'replication test-failover',
    args: 'VM',
    summary: 'start a copy of a recovery point on an isolated network (<vm>-test); replication goes on',
    flags: [
      pointFlag,
      [
        'network',
        {
          type: 'string',
          value: 'NET',
          help: 'an isolated network (default: a new <vm>-test, removed after)',
        },
      ],
      'no-wait',
    ],
    run: async ({ api, args, flags }) => {
      const vm = one(args, 'tern replication test-failover VM [--point ID] [--network NET]');
      const body = {
        ...(flags.point ? { point: flags.point } : {}),
        ...(flags.network ? { network: flags.network } : {}),
      };
      const { task } = await api().call(routes.testFailover, { params: { replication: vm }, body });
      await followTask(api(), flags, task);
    },
  },
  {
    path: 'replication test-stop',
    args: 'VM',
    summary: "stop a test failover: its copy goes, the replica's points stay as they were",
    flags: ['no-wait'],
    run: async ({ api, args, flags }) => {
      const vm = one(args, 'tern replication test-stop VM');
      const { task } = await api().call(routes.testStop, { params: { replication: vm } });
      await followTask(api(), flags, task);
    },
  },
];
