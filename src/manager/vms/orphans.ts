/**
 * Orphans: QEMU processes and VM volumes a host holds for VMs the inventory does not know (a
 * crash between a host's work and the inventory's record of it, a cleanup that could not reach
 * its host). Reality wins: each report of a host is compared with the inventory, an alert names
 * what no VM accounts for, and an operator adopts or removes each. Nothing is left running or
 * filling a pool unseen, and nothing is destroyed on a guess. See docs/storage.md.
 */
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Orphan, OrphanAdopted } from '../../wire/orphan.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import type { AlertStore } from '../alerts/store.ts';
import type { Db } from '../db/database.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import { keepVolumes, keptVolumes } from './kept.ts';
import { adoptsAsVm, findOrphans } from './reconcile.ts';
import { newVmRow, type VmStore } from './store.ts';

export interface OrphanDeps {
  db: Db;
  hosts: HostRegistry;
  store: VmStore;
  alerts: AlertStore;
  log: Logger;
}

const alertId = (hostId: string) => `host:${hostId}:orphans`;
const notFound = (err: TernError) => {
  if (err.code !== 'not_found') throw err;
};

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The alert's text: every orphan by id (the first ten), what runs and what it takes. */
export function orphanMessage(host: string, orphans: readonly Orphan[]): string {
  const shown = orphans.slice(0, 10).map((o) => {
    const qemu = o.qemu ? `QEMU "${o.name}" ${o.qemu.state}${o.qemu.pid ? `, pid ${o.qemu.pid}` : ''}; ` : '';
    const bytes = o.volumes.reduce((n, v) => n + v.bytes, 0);
    return `${o.id} (${qemu}${o.volumes.length} file(s), ${mib(bytes)})`;
  });
  const more = orphans.length > 10 ? ` and ${orphans.length - 10} more` : '';
  return `host ${host} holds what Tern made for ${orphans.length} VM(s) the inventory does not know: ${shown.join(', ')}${more}. Adopt or remove each (tern host orphans ${host}).`;
}

export class Orphans {
  readonly #d: OrphanDeps;
  /** One scan per host at a time; a scan asked for meanwhile runs after it. */
  readonly #scans = new Map<string, Promise<void>>();

  constructor(deps: OrphanDeps) {
    this.#d = deps;
  }

  /** What the host holds for VMs the inventory does not know, as the host reports it now. */
  async list(hostRef: string): Promise<Orphan[]> {
    const host = await this.#d.hosts.get(hostRef);
    const agent = this.#d.hosts.client(host.id);
    const [reported, dirs] = await Promise.all([agent.listVms(), agent.vmDirs()]);
    // Read after the host answered: a VM created meanwhile is known; one whose deletion is
    // in flight still holds its task's lock, and counts as known until the task ends. Only the
    // ids the host names are looked up: a host that comes back must not cost the whole inventory.
    const named = [...new Set([...reported.map((v) => v.id), ...dirs.map((d) => d.id)])];
    const known = new Set<string>();
    for (let i = 0; i < named.length; i += 500) {
      const ids = named.slice(i, i + 500);
      const rows = await this.#d.db.selectFrom('vms').select('id').where('id', 'in', ids).execute();
      const locked = await this.#d.db
        .selectFrom('taskLocks')
        .select('object')
        .where(
          'object',
          'in',
          ids.map((id) => `vm:${id}`),
        )
        .execute();
      for (const r of rows) known.add(r.id);
      for (const l of locked) known.add(l.object.slice(3));
    }
    return findOrphans(host.name, reported, dirs, known, await keptVolumes(this.#d.db));
  }

  /** Compares the host with the inventory and raises, or clears, its orphan alert. */
  scan(hostId: string): Promise<void> {
    const next = (this.#scans.get(hostId) ?? Promise.resolve())
      .then(async () => {
        const host = await this.#d.hosts.get(hostId);
        const orphans = await this.list(hostId);
        if (orphans.length === 0) return this.#d.alerts.clear(alertId(hostId));
        this.#d.log.warn({ host: host.name, orphans: orphans.map((o) => o.id) }, 'host holds orphans');
        const message = orphanMessage(host.name, orphans);
        // An alert names what is orphaned now: a changed set replaces it.
        const active = await this.#d.db
          .selectFrom('alerts')
          .select('message')
          .where('id', '=', alertId(hostId))
          .where('clearedAt', 'is', null)
          .executeTakeFirst();
        if (active && active.message !== message) await this.#d.alerts.clear(alertId(hostId));
        await this.#d.alerts.raise({
          id: alertId(hostId),
          severity: 'warning',
          object: `host:${hostId}`,
          message,
        });
      })
      .catch((err: Error) => this.#d.log.warn({ host: hostId, err: err.message }, 'orphan scan failed'));
    this.#scans.set(hostId, next);
    return next;
  }

  async #find(hostRef: string, id: string): Promise<{ hostId: string; orphan: Orphan }> {
    const host = await this.#d.hosts.get(hostRef);
    const orphan = (await this.list(host.id)).find((o) => o.id === id);
    if (!orphan) throw new TernError('not_found', `host ${host.name} holds no orphan ${id}`);
    return { hostId: host.id, orphan };
  }

  /**
   * A running (or paused) orphan becomes a VM of the inventory again, with the spec its QEMU
   * runs with. Any other keeps its disks as kept volumes (to attach to a VM); its seed, which
   * may carry the lost VM's cloud-init secrets, and unfinished files are removed.
   */
  async adopt(hostRef: string, id: string): Promise<OrphanAdopted> {
    const { hostId, orphan } = await this.#find(hostRef, id);
    const agent = this.#d.hosts.client(hostId);
    if (adoptsAsVm(orphan)) {
      const spec = await agent.vmSpec(id);
      if (!spec)
        throw new TernError('conflict', `orphan ${id} stopped running; adopt it again to keep its disks`);
      const diskSizes = await Promise.all(
        spec.disks.map(async (d) => (await agent.volumeInfo(d.volume))?.virtualBytes ?? 0),
      );
      const cpuMode = spec.cpuModel === 'host' ? 'host' : 'compat';
      const plan = { spec, diskSizes, clone: null, volumes: [], seed: { metaData: '' } };
      await this.#d.store.insert(newVmRow(plan, hostId, null, spec.id, null, cpuMode));
      await this.#d.store.applyReport(hostId, id, await agent.getVm(id));
      await this.scan(hostId);
      return { id, as: 'vm', vm: spec.name, kept: [] };
    }
    if (orphan.qemu) await agent.forgetVm(id).catch(notFound);
    const useless = (v: VolumeRef) => v.path.endsWith('/seed.iso') || v.path.endsWith('.partial');
    for (const v of orphan.volumes.filter(useless)) await agent.deleteVolume({ pool: v.pool, path: v.path });
    const kept = orphan.volumes.filter((v) => !useless(v)).map((v) => ({ pool: v.pool, path: v.path }));
    await keepVolumes(this.#d.db, kept);
    await this.scan(hostId);
    return { id, as: 'kept', vm: null, kept };
  }

  /** Ends the orphan's QEMU (a running one only with `force`) and removes its files. */
  async remove(hostRef: string, id: string, force: boolean): Promise<void> {
    const { hostId, orphan } = await this.#find(hostRef, id);
    const agent = this.#d.hosts.client(hostId);
    if (adoptsAsVm(orphan)) {
      if (!force) {
        throw new TernError(
          'conflict',
          `orphan ${id} runs (QEMU "${orphan.name}", pid ${orphan.qemu?.pid}); removing it kills its guest: use --force, or adopt it`,
        );
      }
      await agent.act(id, 'kill').catch(notFound);
    }
    if (orphan.qemu) await agent.forgetVm(id).catch(notFound);
    for (const v of orphan.volumes) await agent.deleteVolume({ pool: v.pool, path: v.path });
    this.#d.log.info({ host: hostId, orphan: id, files: orphan.volumes.length }, 'removed an orphan');
    await this.scan(hostId);
  }
}
