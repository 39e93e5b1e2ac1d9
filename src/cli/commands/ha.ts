/** `tern ha …` and `tern vm ha`: HA settings, restart policies, the plan and the checks. */
import { TernError } from '../../errors.ts';
import { haRoutes } from '../../wire/api/ha.ts';
import { vmRoutes } from '../../wire/api/vms.ts';
import type { HaSettings, VmHaPolicy } from '../../wire/ha.ts';
import { RestartPolicy, RestartPriority } from '../../wire/ha-policy.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf, wordsOf } from '../flags.ts';
import { byName } from '../names.ts';
import { printFields, printJson, printTable, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

export async function haCommand(
  api: ApiClient,
  sub: string | undefined,
  _args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'settings' || sub === undefined) {
    if (flags.enable && flags.disable)
      throw new TernError('invalid_request', '--enable or --disable, not both');
    const changes: Partial<HaSettings> = {};
    if (flags.enable) changes.enabled = true;
    if (flags.disable) changes.enabled = false;
    if (flags.timeout) changes.timeoutS = Number(flags.timeout);
    if (flags.tolerate) changes.failuresToTolerate = Number(flags.tolerate);
    // --strict only turns it on, as there is no --no-strict.
    if (flags.strict) changes.strictAdmission = true;
    if (flags['statefile-pool']) changes.statefilePool = flags['statefile-pool'];
    if (flags['storage-failover']) changes.storageFailoverS = Number(flags['storage-failover']);
    const changing = Object.keys(changes).length > 0;
    const s = changing
      ? await api.call(haRoutes.updateSettings, { body: changes })
      : await api.call(haRoutes.settings);
    if (flags.output === 'json') return printJson(s);
    return printFields([
      ['enabled', String(s.enabled)],
      ['timeout (T_fence)', `${s.timeoutS} s`],
      ['failures to tolerate', s.failuresToTolerate],
      ['strict admission', String(s.strictAdmission)],
      ['statefile pool', s.statefilePool],
      ['storage failover', `${s.storageFailoverS} s`],
    ]);
  }
  if (sub === 'status') {
    const items = byName((await api.call(haRoutes.status)).items, (h) => h.host);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['HOST', 'HA STATE', 'HEARTBEAT SILENT', 'LEASE SILENT', 'PROTECTS', 'UNCONFIRMED'],
      items.map((h) => [
        h.host,
        h.state,
        `${(h.networkSilentMs / 1000).toFixed(1)} s`,
        h.leaseSeen ? `${(h.leaseSilentMs / 1000).toFixed(1)} s` : 'never seen',
        String(h.protecting),
        String(h.unconfirmed),
      ]),
    );
  }
  if (sub === 'plan') {
    const p = await api.call(haRoutes.plan);
    if (flags.output === 'json') return printJson(p);
    printText(`${p.summary}\n`);
    if (p.plan.length > 0) {
      printText(`if ${p.failureSet.join(', ')} failed:\n`);
      printTable(
        ['VM', 'FROM', 'RESTARTS ON'],
        p.plan.map((x) => [x.vm, x.from, x.to ?? `- (${x.reason ?? 'no room'})`]),
      );
    }
    return;
  }
  if (sub === 'check') {
    const { items } = await api.call(haRoutes.check);
    if (flags.output === 'json') return printJson(items);
    printTable(
      ['CHECK', 'LEVEL', 'FINDING', 'FIX'],
      items.map((c) => [c.check, c.level, c.message, c.fix ?? '']),
    );
    return;
  }
  throw new TernError(
    'invalid_request',
    'usage: tern ha status | plan | check | settings [--enable|--disable] [--timeout S] [--tolerate K] [--strict] [--statefile-pool P] [--storage-failover S]',
  );
}

const restartPolicies = wordsOf(RestartPolicy);
const restartPriorities = wordsOf(RestartPriority);

export async function vmHaCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  if (args.length !== 1) {
    throw new TernError(
      'invalid_request',
      'usage: tern vm ha VM [--restart restart|best-effort|none] [--priority high|medium|low] [--order N] [--delay S]',
    );
  }
  // Wrong words are said before anything is read.
  const restart = flags.restart ? oneOf(flags.restart, restartPolicies, '--restart') : undefined;
  const priority = flags.priority ? oneOf(flags.priority, restartPriorities, '--priority') : undefined;
  const params = { vm: args[0] };
  const current = await api.call(vmRoutes.show, { params });
  const policy: VmHaPolicy = { ...current.ha };
  if (restart) policy.restart = restart;
  if (priority) policy.priority = priority;
  if (flags.order) policy.order = Number(flags.order);
  if (flags.delay) policy.delayS = Number(flags.delay);
  const vm = await api.call(haRoutes.setVmPolicy, { params, body: policy });
  if (flags.output === 'json') return printJson(vm.ha);
  printFields([
    ['restart', vm.ha.restart],
    ['priority', vm.ha.priority],
    ['order', vm.ha.order],
    ['delay', `${vm.ha.delayS} s`],
  ]);
}

const ha = viaGroup(haCommand);

export const haCommands: Command[] = [
  {
    path: 'ha settings',
    summary: 'the HA settings; changed by the flags given',
    flags: [
      ['enable', 'turn HA on'],
      ['disable', 'turn HA off'],
      ['timeout', 'seconds a host may be silent before it is deemed failed'],
      'tolerate',
      ['strict', 'refuse VMs that could not be restarted'],
      'statefile-pool',
      'storage-failover',
    ],
    groupDefault: true,
    run: ha,
  },
  { path: 'ha status', summary: 'hosts as HA sees them', run: ha },
  { path: 'ha plan', summary: 'where VMs would restart if hosts failed', run: ha },
  { path: 'ha check', summary: 'HA readiness, with fixes', run: ha },
];
