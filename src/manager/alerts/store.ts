/**
 * Alerts in the database: raised once per condition (its id), cleared when the condition
 * ends, kept afterwards as history. The watcher keeps them in line with VM state.
 */
import type { Alert } from '../../wire/alert.ts';
import type { Vm } from '../../wire/vm.ts';
import { type Db, now } from '../db/database.ts';
import type { EventBus } from '../events/bus.ts';
import { vmAlertKinds, vmAlerts, type WantedAlert } from './rules.ts';

export class AlertStore {
  readonly #db: Db;
  readonly #bus: EventBus;

  constructor(db: Db, bus: EventBus) {
    this.#db = db;
    this.#bus = bus;
  }

  async list(activeOnly: boolean, limit: number): Promise<Alert[]> {
    let q = this.#db.selectFrom('alerts').selectAll().orderBy('raisedAt', 'desc').limit(limit);
    if (activeOnly) q = q.where('clearedAt', 'is', null);
    return (await q.execute()).map((r) => ({ ...r, severity: r.severity as Alert['severity'] }));
  }

  async raise(a: WantedAlert): Promise<void> {
    const active = await this.#db
      .selectFrom('alerts')
      .select('seq')
      .where('id', '=', a.id)
      .where('clearedAt', 'is', null)
      .executeTakeFirst();
    if (active) return;
    const alert: Alert = { ...a, raisedAt: now(), clearedAt: null };
    await this.#db.insertInto('alerts').values(alert).execute();
    this.#bus.publish({ type: 'alert', alert });
  }

  async clear(id: string): Promise<void> {
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

  /** Follows VM changes and raises or clears their alerts. */
  watch(): () => void {
    let queue = Promise.resolve();
    return this.#bus.subscribe((e) => {
      if (e.type === 'vm') queue = queue.then(() => this.#sync(e.vm)).catch(() => {});
      if (e.type === 'vm.deleted') queue = queue.then(() => this.#clearVm(e.id)).catch(() => {});
    });
  }

  async #sync(vm: Vm): Promise<void> {
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
