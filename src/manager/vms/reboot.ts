/**
 * Reboot: through the guest agent, or (forced) a hard reset; done only when the VM's host has
 * seen the guest boot again (its boot count grew: QEMU's RESET event; or its guest agent tells
 * a new boot id) and, where the guest had an agent answering, that agent answers again. A guest
 * agent that cannot reboot its guest fails the task with its own message; nothing is reported
 * done that was not seen.
 */
import { TernError } from '../../errors.ts';
import { defaultRebootTimeoutSeconds } from '../../wire/api/vm-actions.ts';
import type { Vm } from '../../wire/vm.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from './deps.ts';
import { act, requireRunning, running, type VmParams } from './power.ts';
import { waitForVm } from './wait.ts';

export interface RebootParams extends VmParams {
  force: boolean;
  /** Absent in tasks submitted before the bound existed. */
  timeoutSeconds?: number;
}

export interface Rebooted {
  method: 'guest-agent' | 'reset';
  /** The guest's boot count on its host once back (`guest.boots`). */
  boots: number;
  /** Its guest agent answered again (false only for a guest that had none answering before). */
  guestAgent: boolean;
  /** Seconds from the request to the guest back. */
  seconds: number;
}

export async function rebootVm(
  deps: VmDeps,
  ctx: TaskContext,
  vmId: string,
  timeoutSeconds: number,
  force: boolean,
): Promise<Rebooted> {
  const vm = await requireRunning(deps, vmId);
  // A paused guest would not come back until resumed: the wait would be for nothing.
  if (vm.state === 'paused')
    throw new TernError('conflict', `VM ${vm.name} is paused: resume it to reboot it`);
  const before = vm.guest.boots;
  const hadAgent = vm.guest.agent === 'responding';
  const started = Date.now();
  const deadline = started + timeoutSeconds * 1000;
  let method: Rebooted['method'];
  if (force) {
    await ctx.step('hard reset', 20);
    await act(deps, vmId, 'reset');
    method = 'reset';
  } else {
    if (!hadAgent) {
      throw new TernError(
        'conflict',
        `the guest agent of ${vm.name} does not answer, so it cannot be asked to reboot; use --force to reset the VM`,
      );
    }
    await ctx.step('asking the guest agent to reboot', 20);
    try {
      await act(deps, vmId, 'guest-reboot');
    } catch (err) {
      // The guest agent's refusal, or its silence: a reset is the way left. (A host that cannot
      // be reached is another matter, which --force would not mend.)
      if (!(err instanceof TernError) || (err.code !== 'guest_error' && err.code !== 'timeout')) throw err;
      throw new TernError(
        'guest_error',
        `${vm.name} did not reboot: ${err.message}; use --force to reset the VM`,
      );
    }
    method = 'guest-agent';
  }
  const how = method === 'reset' ? 'a hard reset' : 'the guest agent took the reboot';
  const mark: BootMark = { boots: before, bootId: vm.guest.bootId, agent: hadAgent };
  const wait = async (timedOut: string, done: (stage: RebootStage) => boolean) => {
    const v = await until(deps, ctx, vmId, deadline, (x) => done(rebootStage(mark, x))).catch(
      (err: TernError) => {
        throw err.code === 'timeout' ? new TernError('timeout', timedOut) : err;
      },
    );
    if (rebootStage(mark, v) === 'ended')
      throw new TernError('conflict', `${vm.name} is ${v.state} instead of rebooting: ${v.stateReason}`);
    return v;
  };
  await ctx.step('waiting for the guest to boot again', 40);
  let back = await wait(
    `${vm.name} did not reboot within ${timeoutSeconds} s: ${how}, but its host saw no new boot`,
    (stage) => stage !== 'not-seen',
  );
  await ctx.log(`a new boot seen after ${how}`);
  if (hadAgent) {
    await ctx.step('waiting for the guest agent to answer again', 70);
    back = await wait(
      `${vm.name} booted again but its guest agent did not answer within ${timeoutSeconds} s`,
      (stage) => stage === 'back' || stage === 'ended',
    );
  }
  return {
    method,
    boots: back.guest.boots,
    guestAgent: hadAgent,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

/** What the VM looked like as its reboot was asked. */
export interface BootMark {
  boots: number;
  bootId: string | null;
  /** Its guest agent answered: the reboot waits for it to answer again. */
  agent: boolean;
}

/**
 * Where a reboot stands, from what the VM's host reports: `not-seen` (no new boot yet, or the
 * VM is out of sight: its host or monitor unreachable), `booted` (a new boot, its guest agent
 * not answering yet), `back`, or `ended` (the VM stopped, crashed or went missing meanwhile).
 * A new boot is a boot count that grew (QEMU's resets) or a new boot id from the guest agent
 * (which tells a reboot the host missed while its agent was not running).
 */
export function rebootStage(before: BootMark, v: Pick<Vm, 'state' | 'guest'>): RebootStage {
  if (v.state === 'unknown' || v.state === 'unreachable') return 'not-seen';
  if (!running(v)) return 'ended';
  const newBoot =
    v.guest.boots > before.boots ||
    (before.bootId !== null && v.guest.bootId !== null && v.guest.bootId !== before.bootId);
  if (!newBoot) return 'not-seen';
  return before.agent && v.guest.agent !== 'responding' ? 'booted' : 'back';
}

export type RebootStage = 'not-seen' | 'booted' | 'back' | 'ended';

const until = (deps: VmDeps, ctx: TaskContext, vmId: string, deadline: number, ok: (v: Vm) => boolean) =>
  waitForVm(deps.bus, deps.store, vmId, ok, Math.max(deadline - Date.now(), 1), ctx.signal, 'reboot');

export function rebootTask(deps: VmDeps): TaskKind<RebootParams> {
  return {
    kind: 'vm.reboot',
    // Resumed, it would not know the boot it waited to pass; it fails rather than guess.
    onInterrupt: 'fail',
    async run(ctx, p) {
      return rebootVm(deps, ctx, p.vmId, p.timeoutSeconds ?? defaultRebootTimeoutSeconds, p.force);
    },
  };
}
