/**
 * Alerts in the database: raised once per condition (its id), cleared when the condition
 * ends, kept afterwards as history. The watcher keeps them in line with VM state. An alert
 * raised while the manager's disk is full is held in memory, shown, and written once there is
 * room (`catchUp`): the full disk itself is such an alert.
 */
import { asTernError } from '../../errors.ts';
import type { Alert } from '../../wire/alert.ts';
import type { Vm } from '../../wire/vm.ts';
import { type Db, now } from '../db/database.ts';
import type { EventBus } from '../events/bus.ts';
import { vmAlertKinds, vmAlerts, type WantedAlert } from './rules.ts';

export class AlertStore {
  readonly #db: Db;
  readonly #bus: EventBus;
  /** Raised but not written yet (the disk was full), by id. */
  readonly #held = new Map<string, Alert>();
  /** VMs whose alerts could not be brought in line, by id: their latest state. */
  readonly #unsynced = new Map<string, Vm>();

  constructor(db: Db, bus: EventBus) {
    this.#db = db;
    this.#bus = bus;
  }

  async list(activeOnly: boolean, limit: number): Promise<Alert[]> {
    let q = this.#db.selectFrom('alerts').selectAll().orderBy('raisedAt', 'desc').limit(limit);
    if (activeOnly) q = q.where('clearedAt', 'is', null);
    const rows = (await q.execute()).map((r) => ({ ...r, severity: r.severity as Alert['severity'] }));
    return [...this.#held.values(), ...rows].slice(0, limit);
  }

  async raise(a: WantedAlert): Promise<void> {
    if (this.#held.has(a.id)) return;
    const active = await this.#db
      .selectFrom('alerts')
      .select('seq')
      .where('id', '=', a.id)
      .where('clearedAt', 'is', null)
      .executeTakeFirst();
    if (active) return;
    const alert: Alert = { ...a, raisedAt: now(), clearedAt: null };
    try {
      await this.#db.insertInto('alerts').values(alert).execute();
    } catch (err) {
      if (asTernError(err).code !== 'manager_disk_full') throw err;
      this.#held.set(alert.id, alert);
    }
    this.#bus.publish({ type: 'alert', alert });
  }

  async clear(id: string): Promise<void> {
    const held = this.#held.get(id);
    if (held) {
      // Written as history, raised and cleared: it was real even if it could not be recorded.
      const alert = { ...held, clearedAt: now() };
      this.#held.delete(id);
      await this.#db.insertInto('alerts').values(alert).execute();
      this.#bus.publish({ type: 'alert', alert });
      return;
    }
    const row = await this.#db
      .selectFrom('alerts')
      .selectAll()
      .where('id', '=', id)
      .where('clearedAt', 'is', null)
      .executeTakeFirst();
    if (!row) return;
    const clearedAt = now();
    await this.#db.updateTable('alerts').set({ clearedAt }).where('seq', '=', row.seq).execute();
    const { seq: _seq, ...rest } = row;
    this.#bus.publish({
      type: 'alert',
      alert: { ...rest, severity: rest.severity as Alert['severity'], clearedAt },
    });
  }

  /** There is room again: writes what was held, and brings the VMs left out in line. */
  async catchUp(): Promise<void> {
    for (const alert of [...this.#held.values()]) {
      await this.#db.insertInto('alerts').values(alert).execute();
      this.#held.delete(alert.id);
    }
    for (const vm of [...this.#unsynced.values()]) await this.#sync(vm);
  }

  /** Follows VM changes and raises or clears their alerts. */
  watch(): () => void {
    let queue = Promise.resolve();
    return this.#bus.subscribe((e) => {
      if (e.type === 'vm') queue = queue.then(() => this.#sync(e.vm)).catch(() => {});
      if (e.type === 'vm.deleted') {
        this.#unsynced.delete(e.id);
        queue = queue.then(() => this.#clearVm(e.id)).catch(() => {});
      }
    });
  }

  async #sync(vm: Vm): Promise<void> {
    this.#unsynced.set(vm.id, vm);
    await this.#apply(vm);
    if (this.#unsynced.get(vm.id) === vm) this.#unsynced.delete(vm.id);
  }

  async #apply(vm: Vm): Promise<void> {
    const wanted = vmAlerts(vm);
    for (const a of wanted) await this.raise(a);
    for (const kind of vmAlertKinds) {
      const id = `vm:${vm.id}:${kind}`;
      if (!wanted.some((a) => a.id === id)) await this.clear(id);
    }
  }

  async #clearVm(vmId: string): Promise<void> {
    for (const kind of vmAlertKinds) await this.clear(`vm:${vmId}:${kind}`);
  }
}
