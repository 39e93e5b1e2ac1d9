/**
 * vm.cdrom: puts a library ISO into a VM's CD-ROM drive or ejects it. A running VM's medium is
 * changed on its host through QMP; a stopped VM's spec is changed (a drive is added when it
 * had none: it appears at its next start). Either way the spec ends up saying what is in the
 * drive: on a failure on the host, what the host reports is recorded. Interrupted, it runs
 * again (the change is idempotent).
 */
import { TernError } from '../../errors.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { loadVm, type VmDeps } from './deps.ts';

export interface CdromParams {
  vmId: string;
  /** The ISO volume to put in; null ejects. */
  medium: VolumeRef | null;
  /** For the log: the library image of `medium`. */
  image: string | null;
  force: boolean;
}

const stoppedStates = ['stopped', 'crashed'];
const runningStates = ['running', 'paused'];

/** Whether the VM can take the change now: a conflict naming why not otherwise. */
export function refuseCdromChange(row: { name: string; state: string; spec: string }, insert: boolean): void {
  const spec = vmSpecOf(row);
  if (runningStates.includes(row.state)) {
    if (!spec.cdrom)
      throw new TernError(
        'conflict',
        `VM ${row.name} runs without a CD-ROM drive; stop it to ${insert ? 'insert a medium (it gets a drive)' : 'change it'}`,
      );
    return;
  }
  if (!stoppedStates.includes(row.state))
    throw new TernError(
      'conflict',
      `VM ${row.name} is ${row.state}; its CD-ROM can be changed when it runs or is stopped`,
    );
  if (!insert && !spec.cdrom) throw new TernError('conflict', `VM ${row.name} has no CD-ROM drive`);
}

async function record(deps: VmDeps, vmId: string, medium: VolumeRef | null): Promise<void> {
  const spec = vmSpecOf(await deps.store.row(vmId));
  await deps.store.update(vmId, {
    spec: JSON.stringify({ ...spec, cdrom: { medium }, bootOrder: spec.bootOrder ?? 'disk' }),
  });
}

export function cdromTask(deps: VmDeps): TaskKind<CdromParams> {
  return {
    kind: 'vm.cdrom',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const { row, agent } = await loadVm(deps, p.vmId);
      refuseCdromChange(row, p.medium !== null);
      const what = p.medium ? `inserting ${p.image ?? p.medium.path}` : 'ejecting the medium';
      if (runningStates.includes(row.state)) {
        await ctx.step(`${what} (the running VM's drive)`, 20);
        try {
          await agent.changeCdrom(p.vmId, { medium: p.medium, force: p.force });
        } catch (err) {
          // The host's spec says what is in the drive now (perhaps nothing: the old medium out).
          const running = await agent.vmSpec(p.vmId).catch(() => null);
          if (running?.cdrom) await record(deps, p.vmId, running.cdrom.medium);
          throw err;
        }
      } else {
        await ctx.step(`${what} (the drive of the stopped VM: seen at its next start)`, 20);
      }
      await record(deps, p.vmId, p.medium);
      return { vm: p.vmId, medium: p.medium, image: p.image };
    },
  };
}
