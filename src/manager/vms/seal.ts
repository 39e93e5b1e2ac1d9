/**
 * template.create: seals a VM into a template. A running Linux VM is generalized first through
 * its guest agent (machine id emptied, SSH host keys removed, cloud-init cleaned; read back
 * before anything else happens), then shut down; a VM that cannot be generalized is refused
 * unless forced, and the template records which it was. The disk is copied with the backing
 * chain flattened (the template must not depend on the VM or its template), and so are the
 * kernel and initrd of a direct-boot VM.
 *
 * The sealed VM stays generalized: its next boot makes a new machine id and new host keys, as
 * after every generalizing tool. A new instance id alone would not: cloud-init makes new SSH
 * host keys for it, but systemd fills only an empty /etc/machine-id.
 *
 * Killed at any instant, it resumes: the template already recorded is done; a copy in progress
 * is removed and made again; a guest generalized and checked (its task log says so) is not
 * asked again, one not yet is generalized again (every step can run twice).
 */
import { TernError } from '../../errors.ts';
import type { VmSpec, VolumeRef } from '../../wire/vm.ts';
import { now } from '../db/database.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { AgentClient } from '../hosts/agent-client.ts';
import {
  generalizeScript,
  inspectScript,
  leftIdentity,
  planSeal,
  type SealPlan,
  sealedOs,
} from '../library/generalize.ts';
import { osOfTemplate } from '../library/templates.ts';
import type { TaskContext, TaskEngine, TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import type { VmDeps } from './deps.ts';
import { shutdownVm } from './power.ts';

export interface SealParams {
  vmId: string;
  name: string;
  description: string;
  /** Seal a VM that cannot be generalized as it is. */
  force?: boolean;
}

export type SealDeps = VmDeps & { tasks: TaskEngine };

/** A guest that takes longer than this to stop after being generalized is left running. */
const shutdownSeconds = 120;

/** Written once the guest is generalized and checked; a resumed seal reads it in its log. */
const generalizedLine = 'generalized through the guest agent: machine-id empty, no SSH host key left';

const dirOf = (name: string) => `templates/${name}`;

function copiesOf(spec: VmSpec, name: string): { from: VolumeRef; to: VolumeRef }[] {
  const pool = spec.disks[0].volume.pool;
  const list = [{ from: spec.disks[0].volume, to: { pool, path: `${dirOf(name)}/disk.qcow2` } }];
  if (spec.boot) {
    list.push({ from: spec.boot.kernel, to: { pool, path: `${dirOf(name)}/kernel` } });
    if (spec.boot.initrd) list.push({ from: spec.boot.initrd, to: { pool, path: `${dirOf(name)}/initrd` } });
  }
  return list;
}

/** Enough for the generalization: cloud-init clean removes a few directories, then sync. */
const guestCommandSeconds = 120;

/** Runs a shell script in the guest through its guest agent; a failure is an error naming it. */
async function runChecked(agent: AgentClient, vmName: string, vmId: string, script: string, what: string) {
  const r = await agent.guestExec(vmId, {
    command: ['/bin/sh', '-c', script],
    timeoutSeconds: guestCommandSeconds,
    maxOutputBytes: 64 * 1024,
  });
  const text = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');
  if (r.exitCode !== 0) {
    const why = text(r.stderr).trim().split('\n').slice(-3).join(' ').slice(0, 500) || 'no message';
    const end = r.exitCode === null ? `signal ${r.signal}` : `exit ${r.exitCode}`;
    throw new TernError('guest_error', `${what} in VM ${vmName} failed (${end}): ${why}`);
  }
  return { stdout: text(r.stdout) };
}

/** Generalizes a running Linux guest, then reads back that nothing of its identity is left. */
async function generalize(deps: SealDeps, ctx: TaskContext, vmId: string): Promise<void> {
  const vm = await deps.store.get(vmId);
  const agent = deps.hosts.client((await deps.store.row(vmId)).hostId!);
  await ctx.step(`${vm.name}: emptying /etc/machine-id, removing SSH host keys, cloud-init clean`, 10);
  await runChecked(agent, vm.name, vmId, generalizeScript, 'generalizing');
  await ctx.step(`${vm.name}: checking what the guest left`, 20);
  const left = leftIdentity((await runChecked(agent, vm.name, vmId, inspectScript, 'checking')).stdout);
  if (left.length > 0)
    throw new TernError('guest_error', `VM ${vm.name} is not generalized: ${left.join('; ')}`, { left });
  await ctx.log(generalizedLine);
}

async function generalizedBefore(deps: SealDeps, ctx: TaskContext): Promise<boolean> {
  if (!ctx.resumed) return false;
  const task = await deps.tasks.get(ctx.id, true);
  return (task.log ?? []).some((l) => l.line === generalizedLine);
}

async function removeCopies(agent: AgentClient, spec: VmSpec, name: string): Promise<void> {
  // A copy left behind would block the next attempt with the same name.
  const undo = new Undo();
  for (const c of copiesOf(spec, name))
    await undo.step(`remove ${c.to.path}`, () => agent.deleteVolume(c.to));
  undo.done();
}

async function stop(deps: SealDeps, ctx: TaskContext, vmId: string, plan: SealPlan): Promise<void> {
  const vm = await deps.store.get(vmId);
  if (vm.state === 'stopped') return;
  await ctx.step(`${vm.name}: shutting down`, 30);
  try {
    await shutdownVm(deps, ctx, vmId, shutdownSeconds, false);
  } catch (err) {
    if (plan.method !== 'guest-agent') throw err;
    throw new TernError(
      (err as TernError).code ?? 'internal',
      `${(err as Error).message}. It is generalized already and makes a new identity at its next boot; to seal it, stop it (tern vm stop ${vm.name}) and seal it with --force (the template then records it as not generalized), or seal it again while it runs`,
    );
  }
}

export function sealTask(deps: SealDeps): TaskKind<SealParams> {
  return {
    kind: 'template.create',
    onInterrupt: 'resume',
    async run(ctx, p) {
      if (await deps.templates.has(p.name)) {
        // Under this task's lock, only its own interrupted run can have recorded it.
        if (ctx.resumed) return { template: p.name };
        throw new TernError('conflict', `template ${p.name} exists`);
      }
      const row = await deps.store.row(p.vmId);
      const spec = vmSpecOf(row);
      if (spec.disks.length === 0) throw new TernError('conflict', `VM ${row.name} has no disk`);
      const agent = deps.hosts.client(row.hostId!);
      if (ctx.resumed) {
        await ctx.step('removing what the interrupted seal copied', 0);
        await removeCopies(agent, spec, p.name);
      }
      ctx.throwIfCancelled();
      const templateOs = await osOfTemplate(deps.templates, row.template);
      let plan: SealPlan;
      if (await generalizedBefore(deps, ctx)) {
        plan = { method: 'guest-agent' };
      } else {
        plan = planSeal(await deps.store.get(p.vmId), p.force ?? false, templateOs);
        if (plan.method === 'guest-agent') await generalize(deps, ctx, p.vmId);
        else await ctx.log(`warning: sealed as it is, not generalized: ${plan.risk}`);
      }
      await stop(deps, ctx, p.vmId, plan);
      const stopped = await deps.store.row(p.vmId);
      if (stopped.state !== 'stopped')
        throw new TernError(
          'conflict',
          `VM ${row.name} is ${stopped.state}; it must stay stopped while its disk is copied`,
        );
      const copies = copiesOf(spec, p.name);
      let disk = null;
      for (const [i, c] of copies.entries()) {
        ctx.throwIfCancelled();
        await ctx.step(`copying ${c.from.path}`, 40 + (i / copies.length) * 55);
        const format = i === 0 ? 'qcow2' : 'raw';
        const info = await agent.createVolume({ volume: c.to, format, copyOf: c.from });
        if (i === 0) disk = info;
      }
      const [diskCopy, kernel, initrd] = copies.map((c) => c.to);
      await deps.templates.insert(
        {
          name: p.name,
          description: p.description,
          machine: spec.machine,
          vcpus: spec.vcpus,
          memoryMiB: spec.memoryMiB,
          disk: diskCopy,
          diskSizeBytes: disk!.virtualBytes,
          boot: spec.boot ? { kernel, ...(initrd ? { initrd } : {}), cmdline: spec.boot.cmdline } : null,
          generalization: plan.method,
          risk: plan.method === 'guest-agent' ? null : plan.risk,
          os: sealedOs(plan, (await deps.store.get(p.vmId)).guest.os, templateOs),
          // Its clones boot as it did (their own variable stores start empty).
          firmware: spec.firmware ?? 'bios',
          createdAt: now(),
        },
        row.hostId!,
      );
      return { template: p.name, generalization: plan.method };
    },
    async cleanup(_ctx, p) {
      if (await deps.templates.has(p.name)) return;
      const row = await deps.store.row(p.vmId).catch(() => null);
      if (!row?.hostId) return;
      await removeCopies(deps.hosts.client(row.hostId), vmSpecOf(row), p.name);
    },
  };
}
