/**
 * Image pool tasks: make a pool, open a maintenance version, mark it tested, roll the pool
 * onto a version (promote, rollback) by rolling reboot, delete a version nothing needs.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { CreateImagePoolRequest } from '../../wire/image-pool.ts';
import type { Template } from '../../wire/template.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { now } from '../db/database.ts';
import type { ImagePoolTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import { loadVm, type VmDeps } from '../vms/deps.ts';
import { planVm, randomMac } from '../vms/plan.ts';
import { shutdownVm, startVm } from '../vms/power.ts';
import { newVmRow } from '../vms/store.ts';
import { forceOffFirst, refuseUnreachable } from '../vms/unreachable.ts';
import { bootVolume, type ImagePoolStore, versionVolume } from './store.ts';
import { markTest, planNewVersion, refuseDelete, rollingPlan } from './versions.ts';

export interface PoolDeps extends VmDeps {
  imagePools: ImagePoolStore;
}

/** The pool's current version seen as a template: what its VMs are linked clones of. */
async function asTemplate(deps: PoolDeps, pool: ImagePoolTable, version: number): Promise<Template> {
  const t = await deps.templates.get(pool.template);
  return {
    ...t,
    disk: versionVolume(pool, version),
    boot: t.boot
      ? {
          kernel: bootVolume(pool, 'kernel'),
          ...(t.boot.initrd ? { initrd: bootVolume(pool, 'initrd') } : {}),
          cmdline: t.boot.cmdline,
        }
      : null,
  };
}

/**
 * A pool VM's write cache is its first disk: an overlay on a pool version. Making it anew
 * discards what the VM wrote (non-persistent pools, at every start; every pool, on a version
 * change).
 */
export async function rebuildCache(deps: PoolDeps, vmId: string, version: number): Promise<void> {
  const { row, spec, agent } = await loadVm(deps, vmId);
  const pool = await deps.imagePools.row(row.imagePool!);
  const disk = spec.disks[0].volume;
  await agent.deleteVolume(disk);
  await agent.createVolume({ volume: disk, format: 'qcow2', backing: versionVolume(pool, version) });
  await deps.store.update(vmId, { poolVersion: version });
}

/**
 * Before a stopped pool VM starts (never one that runs: its cache is open): a non-persistent
 * cache is made anew, on the production version.
 */
export async function prepareStart(deps: PoolDeps, vmId: string): Promise<void> {
  const { row } = await loadVm(deps, vmId);
  if (
    !row.imagePool ||
    row.state === 'running' ||
    row.state === 'paused' ||
    row.state === 'unknown' ||
    row.state === 'unreachable'
  )
    return;
  const pool = await deps.imagePools.row(row.imagePool);
  if (pool.cache === 'non-persistent') await rebuildCache(deps, vmId, pool.production);
}

export interface PoolCreateParams extends Required<Omit<CreateImagePoolRequest, 'start'>> {
  start: boolean;
  hostId: string;
  diskPool: string;
}

export function poolCreateTask(deps: PoolDeps): TaskKind<PoolCreateParams> {
  return {
    kind: 'imagepool.create',
    onInterrupt: 'fail',
    async run(ctx, p) {
      const template = await deps.templates.get(p.template);
      const agent = deps.hosts.client(p.hostId);
      const pool: ImagePoolTable = {
        name: p.name,
        template: p.template,
        hostId: p.hostId,
        diskPool: p.diskPool,
        cache: p.cache,
        maxUnavailablePercent: p.maxUnavailablePercent,
        chainLimit: p.chainLimit,
        production: 1,
        previous: null,
        createdAt: now(),
      };
      // The golden image: a standalone copy, so the pool does not depend on the template.
      await ctx.step('copying the template into version 1 of the golden image', 5);
      await agent.createVolume({ volume: versionVolume(pool, 1), format: 'qcow2', copyOf: template.disk });
      if (template.boot) {
        await agent.createVolume({
          volume: bootVolume(pool, 'kernel'),
          format: 'raw',
          copyOf: template.boot.kernel,
        });
        if (template.boot.initrd) {
          await agent.createVolume({
            volume: bootVolume(pool, 'initrd'),
            format: 'raw',
            copyOf: template.boot.initrd,
          });
        }
      }
      await deps.imagePools.insert(pool, {
        pool: p.name,
        number: 1,
        parent: null,
        state: 'production',
        maintenanceVm: null,
        createdAt: now(),
      });
      const base = await asTemplate(deps, pool, 1);
      const ids: string[] = [];
      for (let i = 1; i <= p.size; i++) {
        ctx.throwIfCancelled();
        await ctx.step(`making ${p.name}-${i}`, 10 + (60 * i) / p.size);
        const id = randomUUID();
        const clientMachineId = randomUUID();
        const plan = planVm(
          { name: `${p.name}-${i}` },
          base,
          id,
          p.diskPool,
          () => randomMac(randomBytes),
          clientMachineId,
        );
        await deps.store.insert(
          newVmRow(plan, p.hostId, null, clientMachineId, { pool: p.name, version: 1 }),
        );
        for (const v of plan.volumes) await agent.createVolume(v);
        await agent.createSeed({ volume: plan.spec.seed!, ...plan.seed });
        await deps.store.setState(id, { state: 'stopped', reason: null });
        ids.push(id);
      }
      if (p.start) {
        await ctx.step('starting the pool', 75);
        await Promise.all(ids.map((id) => startVm(deps, ctx, id)));
      }
      return { pool: p.name, vms: p.size };
    },
    async cleanup(_ctx, p) {
      // Tern has no way yet to take a pool apart; saying so beats claiming it was undone.
      throw new TernError(
        'conflict',
        `pool ${p.name} was not completed; delete its VMs and volumes by hand if any remain`,
      );
    },
  };
}

export interface VersionParams {
  pool: string;
  number?: number;
}

/** A maintenance version: an overlay on production (or a flattened copy), with its own VM. */
export function versionCreateTask(deps: PoolDeps): TaskKind<VersionParams> {
  return {
    kind: 'imagepool.version.create',
    onInterrupt: 'fail',
    async run(ctx, p) {
      const pool = await deps.imagePools.row(p.pool);
      const next = planNewVersion(await deps.imagePools.state(p.pool));
      const agent = deps.hosts.client(pool.hostId);
      const volume = versionVolume(pool, next.number);
      if (next.flattenFirst) {
        await ctx.step(`the chain is at its limit: version ${next.number} starts as a flattened copy`, 10);
        await agent.createVolume({ volume, format: 'qcow2', copyOf: versionVolume(pool, pool.production) });
      } else {
        await ctx.step(`version ${next.number} on top of version ${pool.production}`, 10);
        await agent.createVolume({ volume, format: 'qcow2', backing: versionVolume(pool, pool.production) });
      }
      await deps.imagePools.addVersion({
        pool: p.pool,
        number: next.number,
        parent: next.flattenFirst ? null : next.parent,
        state: 'maintenance',
        maintenanceVm: null,
        createdAt: now(),
      });
      // The maintenance VM writes into the version itself: the one VM that may.
      await ctx.step('making the maintenance VM', 60);
      const template = await asTemplate(deps, pool, next.number);
      const id = randomUUID();
      const clientMachineId = randomUUID();
      const name = `${p.pool}-v${next.number}`;
      const plan = planVm(
        { name },
        template,
        id,
        pool.diskPool,
        () => randomMac(randomBytes),
        clientMachineId,
      );
      const spec: VmSpec = { ...plan.spec, disks: [{ volume, format: 'qcow2', readonly: false, slot: 0 }] };
      await deps.store.insert(newVmRow({ ...plan, spec }, pool.hostId, null, clientMachineId));
      // A UEFI template's VMs each have their own variable store, this one too.
      if (spec.efiVars)
        await agent.createVolume({ volume: spec.efiVars, format: 'raw', content: 'uefi-vars' });
      await agent.createSeed({ volume: spec.seed!, ...plan.seed });
      await deps.store.setState(id, { state: 'stopped', reason: null });
      await deps.imagePools.setVersion(p.pool, next.number, { maintenanceVm: id });
      return { version: next.number, maintenanceVm: name };
    },
    async cleanup(_ctx, p) {
      // Whatever of the new version was made goes: its volume would block the next attempt.
      const pool = await deps.imagePools.row(p.pool).catch(() => null);
      if (!pool) return;
      const versions = await deps.imagePools.versions(p.pool);
      // Only this task (it holds the pool) leaves a maintenance version without its VM.
      const half = versions.find((v) => v.state === 'maintenance' && v.maintenanceVm === null);
      if (versions.some((v) => v.state === 'maintenance' && v.maintenanceVm !== null)) return;
      const n = half?.number ?? Math.max(...versions.map((v) => v.number)) + 1;
      const agent = deps.hosts.client(pool.hostId);
      const vm = await deps.store.find(`${p.pool}-v${n}`);
      const vmSpec = vm ? vmSpecOf(vm) : null;
      const volumes = [
        versionVolume(pool, n),
        ...(vmSpec ? [vmSpec.seed!, ...(vmSpec.efiVars ? [vmSpec.efiVars] : [])] : []),
      ];
      const undo = new Undo();
      for (const v of volumes.filter(Boolean))
        await undo.step(`remove ${v.path}`, () => agent.deleteVolume(v));
      // The rows go only with their volumes: a row is how the next attempt finds what is left.
      undo.done();
      if (vm) await deps.store.remove(vm.id);
      if (half) await deps.imagePools.removeVersion(p.pool, n);
    },
  };
}

export function versionTestTask(deps: PoolDeps): TaskKind<Required<VersionParams>> {
  return {
    kind: 'imagepool.version.test',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const versions = await deps.imagePools.versions(p.pool);
      const v = versions.find((x) => x.number === p.number);
      const vmRow = v?.maintenanceVm ? await deps.store.row(v.maintenanceVm).catch(() => null) : null;
      markTest(await deps.imagePools.state(p.pool), p.number, vmRow !== null && vmRow.state !== 'stopped');
      if (vmRow) {
        // The version is sealed: its maintenance VM goes, the version's volume stays.
        await ctx.step(`removing maintenance VM ${vmRow.name}`, 50);
        const { spec, agent } = await loadVm(deps, vmRow.id);
        await agent.forgetVm(vmRow.id);
        if (spec.seed) await agent.deleteVolume(spec.seed);
        if (spec.efiVars) await agent.deleteVolume(spec.efiVars);
        await deps.store.remove(vmRow.id);
      }
      await deps.imagePools.setVersion(p.pool, p.number, { state: 'test', maintenanceVm: null });
      return { version: p.number, state: 'test' };
    },
  };
}

export interface RollParams {
  pool: string;
  target: number;
  previous: number;
}

/**
 * Moves every VM of the pool onto `target` by rolling reboot: at most the pool's share of VMs
 * unavailable at once; a VM that ran runs again. Resumable: VMs already moved are skipped.
 */
export function rollTask(deps: PoolDeps): TaskKind<RollParams> {
  return {
    kind: 'imagepool.roll',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const pool = await deps.imagePools.row(p.pool);
      if (pool.production !== p.target) await deps.imagePools.setProduction(p.pool, p.target, p.previous);
      const batches = rollingPlan(
        await deps.imagePools.members(p.pool),
        p.target,
        pool.maxUnavailablePercent,
      );
      const total = batches.flat().length;
      let done = 0;
      await ctx.log(`${total} VM(s) to move onto version ${p.target}, ${batches[0]?.length ?? 0} at a time`);
      for (const batch of batches) {
        await Promise.all(
          batch.map(async (member) => {
            const row = await deps.store.row(member.name);
            // Its guest may be alive on the cache that would be made anew.
            refuseUnreachable(row, forceOffFirst(row.name));
            const wasRunning = row.state === 'running' || row.state === 'paused';
            if (wasRunning) await shutdownVm(deps, ctx, row.id, 60, true);
            await rebuildCache(deps, row.id, p.target);
            if (wasRunning) await startVm(deps, ctx, row.id);
            await ctx.progress((++done / total) * 100);
            await ctx.log(`${member.name} is on version ${p.target}`);
          }),
        );
      }
      return { pool: p.pool, production: p.target, moved: total };
    },
  };
}

export function versionDeleteTask(deps: PoolDeps): TaskKind<Required<VersionParams>> {
  return {
    kind: 'imagepool.version.delete',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const pool = await deps.imagePools.row(p.pool);
      const v = (await deps.imagePools.versions(p.pool)).find((x) => x.number === p.number);
      if (!v) return { deleted: p.number };
      refuseDelete(await deps.imagePools.state(p.pool), p.number, await deps.imagePools.members(p.pool));
      if (v?.maintenanceVm)
        throw new TernError('conflict', `version ${p.number} still has its maintenance VM`);
      await ctx.step(`removing version ${p.number}`, 50);
      await deps.hosts.client(pool.hostId).deleteVolume(versionVolume(pool, p.number));
      await deps.imagePools.removeVersion(p.pool, p.number);
      return { deleted: p.number };
    },
  };
}
