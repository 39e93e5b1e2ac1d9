/**
 * Reboot: through the guest agent, or (forced) a hard reset; done only when the VM's host has
 * seen the guest boot again (its boot count grew: QEMU's RESET event) and, where the guest had
 * an agent answering, that agent answers again. A guest agent that cannot reboot its guest
 * fails the task with its own message; nothing is reported done that was not seen.
 */
import { TernError } from '../../errors.ts';
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

export const defaultRebootTimeoutSeconds = 120;

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
      if (!(err instanceof TernError) || err.code !== 'guest_error') throw err;
      throw new TernError(
        'guest_error',
        `${vm.name} did not reboot: ${err.message}; use --force to reset the VM`,
      );
    }
    method = 'guest-agent';
  }
  const how = method === 'reset' ? 'a hard reset' : 'the guest agent took the reboot';
  await ctx.step('waiting for the guest to boot again', 40);
  const booted = await until(deps, ctx, vmId, deadline, (v) => !running(v) || v.guest.boots > before).catch(
    (err: TernError) => {
      throw err.code === 'timeout'
        ? new TernError(
            'timeout',
            `${vm.name} did not reboot within ${timeoutSeconds} s: ${how}, but its host saw no new boot`,
          )
        : err;
    },
  );
  if (!running(booted))
    throw new TernError(
      'conflict',
      `${vm.name} is ${booted.state} instead of rebooting: ${booted.stateReason}`,
    );
  await ctx.log(`a new boot seen after ${how}`);
  let back = booted;
  if (hadAgent) {
    await ctx.step('waiting for the guest agent to answer again', 70);
    // A BIOS guest's reboot passes through two resets (its own, then its firmware's): the
    // agent that answers is the one of the boot that came up, whichever that was.
    back = await until(deps, ctx, vmId, deadline, (v) => !running(v) || v.guest.agent === 'responding').catch(
      (err: TernError) => {
        throw err.code === 'timeout'
          ? new TernError(
              'timeout',
              `${vm.name} booted again but its guest agent did not answer within ${timeoutSeconds} s`,
            )
          : err;
      },
    );
    if (!running(back))
      throw new TernError('conflict', `${vm.name} is ${back.state} after rebooting: ${back.stateReason}`);
  }
  return {
    method,
    boots: back.guest.boots,
    guestAgent: hadAgent,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

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
