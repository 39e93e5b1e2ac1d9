/** `tern ha …` and `tern vm ha`: HA settings, restart policies, the plan and the checks. */
import { TernError } from '../../errors.ts';
import type { HaSettings, VmHaPolicy } from '../../wire/ha.ts';
import type { Vm } from '../../wire/vm.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printFields, printJson } from '../output.ts';

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
    if (flags.strict !== undefined) changes.strictAdmission = flags.strict;
    if (flags['statefile-pool']) changes.statefilePool = flags['statefile-pool'];
    if (flags['storage-failover']) changes.storageFailoverS = Number(flags['storage-failover']);
    const changing = Object.keys(changes).length > 0;
    const s = await api.request<HaSettings>(
      changing ? 'PATCH' : 'GET',
      '/api/v1/ha/settings',
      changing ? changes : undefined,
    );
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
  throw new TernError(
    'invalid_request',
    'usage: tern ha settings [--enable|--disable] [--timeout S] [--tolerate K] [--strict] [--statefile-pool P] [--storage-failover S]',
  );
}

export async function vmHaCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  if (args.length !== 1) {
    throw new TernError(
      'invalid_request',
      'usage: tern vm ha VM [--restart restart|best-effort|none] [--priority high|medium|low] [--order N] [--delay S]',
    );
  }
  const current = await api.request<Vm>('GET', `/api/v1/vms/${encodeURIComponent(args[0])}`);
  const policy: VmHaPolicy = { ...current.ha };
  if (flags.restart) policy.restart = flags.restart as VmHaPolicy['restart'];
  if (flags.priority) policy.priority = flags.priority as VmHaPolicy['priority'];
  if (flags.order) policy.order = Number(flags.order);
  if (flags.delay) policy.delayS = Number(flags.delay);
  const vm = await api.request<Vm>('PUT', `/api/v1/vms/${encodeURIComponent(args[0])}/ha`, policy);
  if (flags.output === 'json') return printJson(vm.ha);
  printFields([
    ['restart', vm.ha.restart],
    ['priority', vm.ha.priority],
    ['order', vm.ha.order],
    ['delay', `${vm.ha.delayS} s`],
  ]);
}
