/**
 * Power tasks: start, graceful shutdown (ACPI, then the guest agent, then an error unless
 * forced), reboot, force off, pause and resume. Each asks the VM's host and then waits, with
 * a bound, for the inventory to show the outcome the host reports: a reboot is done when its
 * host has seen the guest boot again (reboot.ts), never when it was merely asked.
 */
import { TernError } from '../../errors.ts';
import type { VmAction } from '../../wire/agent.ts';
import type { Vm } from '../../wire/vm.ts';
import type { VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import { loadVm, type VmDeps } from './deps.ts';
import { hostForStart } from './start-host.ts';
import { forceOffFirst, refuseUnreachable } from './unreachable.ts';
import { isState, waitForVm } from './wait.ts';

export interface VmParams {
  vmId: string;
}

/** Start and stop: `force` ends an unreachable VM's QEMU, whose guest may be alive. */
export interface ForceParams extends VmParams {
  force?: boolean;
}

export interface ShutdownParams extends VmParams {
  timeoutSeconds: number;
  force: boolean;
}

export interface StartOptions {
  /** Only the VM's own create task starts a VM that is still `creating`. */
  creating?: boolean;
  /** An HA restart after its host failed: admission does not hold it back. */
  haRestart?: boolean;
  /** An unreachable VM's QEMU is forced off first. */
  force?: boolean;
  /** A failover starts a replica, which nothing else may. */
  failover?: boolean;
}

/**
 * Starts a VM and waits until its host reports it running. Idempotent. A stopped VM's start is
 * admitted first (its room held on the host), and the hold ends when it runs or fails to.
 */
export async function startVm(
  deps: VmDeps,
  ctx: TaskContext,
  vmId: string,
  opts: StartOptions = {},
): Promise<Vm> {
  try {
    return await admitAndStart(deps, ctx, vmId, opts);
  } finally {
    deps.placer.release(vmId);
  }
}

async function admitAndStart(deps: VmDeps, ctx: TaskContext, vmId: string, opts: StartOptions): Promise<Vm> {
  let { row } = await loadVm(deps, vmId);
  if (!opts.failover) refuseReplica(row);
  if (row.state === 'creating' && !opts.creating)
    throw new TernError('conflict', `VM ${row.name} is still being created`);
  if (row.state === 'unreachable') {
    if (!opts.force) refuseUnreachable(row, 'use --force to force it off and start it afresh');
    await ctx.step('forcing off its QEMU, whose monitor does not answer');
    await act(deps, vmId, 'kill');
    row = await deps.store.row(vmId);
  }
  const stopped =
    row.state === 'stopped' || row.state === 'crashed' || row.state === 'missing' || row.state === 'creating';
  if (deps.beforeStart && stopped) await deps.beforeStart(vmId);
  // A VM that runs already stays where it is; a stopped one goes where placement allows.
  const { hostId, spec } = stopped
    ? await hostForStart(deps, await deps.store.row(vmId))
    : { hostId: row.hostId!, spec: vmSpecOf(row) };
  if (hostId !== row.hostId)
    await ctx.log(`its host cannot take it now; starting on ${(await deps.hosts.get(hostId)).name}`);
  const warning =
    stopped && !opts.haRestart ? await deps.admitStart(await deps.store.row(vmId), hostId) : null;
  if (warning) await ctx.log(`warning: ${warning}`);
  await ctx.log(`asking host to start ${spec.vcpus} vCPU, ${spec.memoryMiB} MiB, CPU ${spec.cpuModel}`);
  const reported = await deps.hosts.client(hostId).runVm(spec);
  await deps.store.applyReport(hostId, vmId, reported);
  return waitForVm(deps.bus, deps.store, vmId, isState('running', 'paused'), 30_000, ctx.signal, 'start');
}

/**
 * A replica is a copy of a VM that runs elsewhere: started by accident it would answer with the
 * primary's addresses and fork its data. Only a failover starts it.
 */
export function refuseReplica(row: Pick<VmTable, 'name' | 'replicaOf'>): void {
  if (row.replicaOf)
    throw new TernError(
      'conflict',
      `VM ${row.name} is a replica (replication ${row.replicaOf}): only a failover starts it; see tern vm failover`,
      { replication: row.replicaOf },
    );
}

export async function act(deps: VmDeps, vmId: string, action: VmAction): Promise<void> {
  const { row, agent } = await loadVm(deps, vmId);
  const reported = await agent.act(vmId, action);
  await deps.store.applyReport(row.hostId!, vmId, reported.state === 'stopped' ? null : reported);
  if (reported.state === 'stopped') await deps.store.setState(vmId, { state: 'stopped', reason: null });
}

export const running = (vm: Pick<Vm, 'state'>) => vm.state === 'running' || vm.state === 'paused';

export async function requireRunning(deps: VmDeps, vmId: string): Promise<Vm> {
  const vm = await deps.store.get(vmId);
  refuseUnreachable(vm, forceOffFirst(vm.name));
  if (!running(vm)) throw new TernError('conflict', `VM ${vm.name} is ${vm.state}`);
  return vm;
}

export function startTask(deps: VmDeps): TaskKind<ForceParams> {
  return {
    kind: 'vm.start',
    onInterrupt: 'resume',
    async run(ctx, p) {
      await ctx.step('starting', 10);
      const vm = await startVm(deps, ctx, p.vmId, { force: p.force });
      return { state: vm.state, vncPort: vm.vncPort };
    },
  };
}

/**
 * Shuts a VM down: the ACPI power button, then the guest agent, then (with `force`) power off;
 * without `force`, a guest that does not stop in time is an error. Returns how it stopped.
 */
export async function shutdownVm(
  deps: VmDeps,
  ctx: TaskContext,
  vmId: string,
  timeoutSeconds: number,
  force: boolean,
): Promise<'none' | 'acpi' | 'guest-agent' | 'force'> {
  const vm = await deps.store.get(vmId);
  if (vm.state === 'stopped') return 'none';
  if (vm.state === 'unreachable') {
    // Neither ACPI nor the guest agent can be asked through a monitor that does not answer.
    if (!force) refuseUnreachable(vm, 'use --force to force it off');
    await ctx.step(`${vm.name}: forcing power off (its monitor does not answer)`);
    await act(deps, vmId, 'kill');
    return 'force';
  }
  if (!running(vm)) throw new TernError('conflict', `VM ${vm.name} is ${vm.state}`);
  const deadline = Date.now() + timeoutSeconds * 1000;
  const stopped = (ms: number) =>
    waitForVm(deps.bus, deps.store, vmId, isState('stopped'), Math.max(ms, 1), ctx.signal, 'power off').then(
      () => true,
      (err: TernError) => {
        if (err.code !== 'timeout') throw err;
        return false;
      },
    );
  // Why it did not stop, for the error: the guest agent's own answer says the most.
  let why = 'no reaction to the ACPI power button, and its guest agent does not answer';
  if (vm.state === 'running') {
    // ACPI first: it works without the guest agent; give it half the time.
    await ctx.step(`${vm.name}: ACPI power button`);
    await act(deps, vmId, 'powerdown');
    if (await stopped((deadline - Date.now()) / 2)) return 'acpi';
    const now = await deps.store.get(vmId);
    if (now.guest.agent === 'responding') {
      await ctx.step(`${vm.name}: no reaction to ACPI; asking the guest agent`);
      why = 'no reaction to the ACPI power button, nor to the request its guest agent took';
      await act(deps, vmId, 'guest-shutdown').catch(async (err: TernError) => {
        // Only a guest_error is the guest's own answer; anything else failed on the way to it.
        const agent =
          err.code === 'guest_error' ? 'its guest agent could not' : 'its guest agent could not be asked';
        why = `no reaction to the ACPI power button, and ${agent} (${err.message})`;
        await ctx.log(err.message);
      });
      // ACPI may still be on its way in a slow guest: the rest of the time is waited out.
      if (await stopped(deadline - Date.now())) return 'guest-agent';
    } else if (await stopped(deadline - Date.now())) {
      return 'acpi';
    }
  } else {
    why = `it is ${vm.state}, so neither ACPI nor its guest agent could be asked`;
  }
  if (!force) {
    throw new TernError(
      'timeout',
      `VM ${vm.name} did not shut down within ${timeoutSeconds} s: ${why}; use --force to power it off`,
    );
  }
  await ctx.step(`${vm.name}: forcing power off`);
  await act(deps, vmId, 'kill');
  return 'force';
}

export function shutdownTask(deps: VmDeps): TaskKind<ShutdownParams> {
  return {
    kind: 'vm.shutdown',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const method = await shutdownVm(deps, ctx, p.vmId, p.timeoutSeconds, p.force);
      return method === 'none' ? { method, state: 'stopped' } : { method };
    },
  };
}

export function stopTask(deps: VmDeps): TaskKind<ForceParams> {
  return {
    kind: 'vm.stop',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const vm = await deps.store.get(p.vmId);
      if (vm.state === 'stopped') return { state: 'stopped' };
      if (!p.force) refuseUnreachable(vm, 'use --force to force it off');
      await ctx.step('forcing power off', 30);
      await act(deps, p.vmId, 'kill');
      await waitForVm(deps.bus, deps.store, p.vmId, isState('stopped'), 15_000, ctx.signal, 'power off');
      return { state: 'stopped' };
    },
  };
}

export function pauseTask(deps: VmDeps, action: 'pause' | 'resume'): TaskKind<VmParams> {
  return {
    kind: `vm.${action}`,
    onInterrupt: 'resume',
    async run(ctx, p) {
      await requireRunning(deps, p.vmId);
      await ctx.step(action === 'pause' ? 'pausing' : 'resuming', 30);
      await act(deps, p.vmId, action);
      const want = action === 'pause' ? 'paused' : 'running';
      const vm = await waitForVm(deps.bus, deps.store, p.vmId, isState(want), 10_000, ctx.signal, action);
      return { state: vm.state, reason: vm.stateReason };
    },
  };
}
