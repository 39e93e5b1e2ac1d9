/**
 * vm.create: makes the VM's disks and cloud-init seed on its host, then optionally starts it.
 * Interrupted by a manager restart, it resumes once its host has reported what it runs: a VM
 * the host knows was made to the end (only a start may remain); one it does not know is made
 * again from the start, since a volume being written when the manager died may be partial.
 */
import type { TernError } from '../../errors.ts';
import type { CreateVolumeRequest } from '../../wire/agent.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { AgentClient } from '../hosts/agent-client.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from './deps.ts';
import type { SeedContent } from './plan.ts';
import { startVm } from './power.ts';

export interface CreateParams {
  vmId: string;
  volumes: CreateVolumeRequest[];
  /** Without its user-data: task parameters are stored as they are, so that is a secret. */
  seed: Omit<SeedContent, 'userData'>;
  /** The secret that holds the seed's cloud-init user-data (it may carry passwords and keys). */
  userDataSecret?: string;
  start: boolean;
}

/** The secret a VM's cloud-init user-data is kept in. */
export const userDataSecret = (vmId: string) => `vm-${vmId}-user-data`;

export function createTask(deps: VmDeps & { secrets: SecretStore }): TaskKind<CreateParams> {
  return {
    kind: 'vm.create',
    onInterrupt: 'resume',
    async run(ctx, p) {
      // Created to start, the VM held its room from its admission on; that hold ends with the
      // task (its start, if it comes, holds and ends its own).
      try {
        return await runCreate(deps, ctx, p);
      } finally {
        deps.placer.release(p.vmId);
      }
    },
    async cleanup(ctx, p) {
      const row = await deps.store.row(p.vmId).catch(() => null);
      // Only a VM whose creation did not finish is undone; a failed start leaves it stopped.
      if (row?.state !== 'creating') return;
      const spec = vmSpecOf(row);
      // The inventory forgets the VM only once its host holds nothing of it: otherwise what is
      // left would run or fill the pool unseen. A host that cannot be reached keeps the VM
      // `creating`, with this task's error saying why, until it is deleted.
      await removeVolumes(deps.hosts.client(row.hostId!), p, spec);
      await deps.store.remove(p.vmId);
      await ctx.log('removed the partly created VM');
    },
  };
}

/** Removes the VM's volumes and any record of it on its host; what is not there is fine. */
async function removeVolumes(agent: AgentClient, p: CreateParams, spec: VmSpec): Promise<void> {
  const gone = (err: TernError) => {
    if (err.code !== 'not_found') throw err;
  };
  await agent.forgetVm(p.vmId).catch(gone);
  for (const v of [...p.volumes.map((x) => x.volume), ...(spec.seed ? [spec.seed] : [])]) {
    await agent.deleteVolume(v).catch(gone);
  }
}

/** What clones of a template share because it was sealed without being generalized. */
async function templateRisk(deps: VmDeps, name: string): Promise<string | null> {
  const t = await deps.templates.get(name).catch(() => null);
  return t?.generalization === 'none' ? t.risk : null;
}

async function runCreate(
  deps: VmDeps & { secrets: SecretStore },
  ctx: TaskContext,
  p: CreateParams,
): Promise<{ vm: string }> {
  const row = await deps.store.row(p.vmId);
  const spec = vmSpecOf(row);
  const agent = deps.hosts.client(row.hostId!);
  if (ctx.resumed && row.state !== 'creating') {
    // Its host reports it (running, stopped or crashed): the disks and seed are there.
    if (!p.start || row.state === 'running' || row.state === 'paused') return { vm: p.vmId };
    await ctx.step('starting', 90);
    await startVm(deps, ctx, p.vmId);
    return { vm: p.vmId };
  }
  if (ctx.resumed) {
    await ctx.step('removing what the interrupted creation made', 0);
    await removeVolumes(agent, p, spec);
  }
  const risk = row.template ? await templateRisk(deps, row.template) : null;
  if (risk) await ctx.log(`warning: template ${row.template} was sealed without being generalized: ${risk}`);
  const steps = p.volumes.length + 1 + (p.start ? 1 : 0);
  let done = 0;
  for (const v of p.volumes) {
    ctx.throwIfCancelled();
    const how = v.backing ? ` on ${v.backing.path}` : v.copyOf ? ` as a copy of ${v.copyOf.path}` : '';
    await ctx.step(`creating ${v.volume.path}${how}`, (done++ / steps) * 100);
    await agent.createVolume(v);
  }
  if (spec.seed) {
    await ctx.step('writing the cloud-init seed (hostname, instance id)', (done++ / steps) * 100);
    const userData = p.userDataSecret ? await deps.secrets.reveal(p.userDataSecret) : undefined;
    await agent.createSeed({
      volume: spec.seed,
      ...p.seed,
      ...(userData !== undefined ? { userData } : {}),
    });
  }
  if (!p.start) {
    await deps.store.setState(p.vmId, { state: 'stopped', reason: null });
    return { vm: p.vmId };
  }
  await ctx.step('starting', (done / steps) * 100);
  // Still `creating` until it runs; its room has been held since the API admitted it.
  try {
    await startVm(deps, ctx, p.vmId, { creating: true });
  } catch (err) {
    // A failed start leaves a created VM stopped (cleanup removes only unfinished ones).
    if ((await deps.store.row(p.vmId)).state === 'creating')
      await deps.store.setState(p.vmId, { state: 'stopped', reason: null });
    throw err;
  }
  return { vm: p.vmId };
}
