import type { ClusterSettings } from '../../wire/cluster.ts';
import { defaultHaSettings, type HaSettings } from '../../wire/ha.ts';
import type { Db } from '../db/database.ts';
import { defaultPolicy, type PlacementPolicy } from '../placement/model.ts';

export const defaultSettings: ClusterSettings = {
  cpuOvercommit: defaultPolicy.cpuOvercommit,
  memoryOvercommit: defaultPolicy.memoryOvercommit,
  storageOvercommit: defaultPolicy.storageOvercommit,
  strategy: defaultPolicy.strategy,
  migrationDowntimeMs: 300,
  migrationBandwidthMiBps: 0,
  migrationTimeoutS: 600,
};

export class SettingsStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async get(): Promise<ClusterSettings> {
    return { ...defaultSettings, ...(await this.#read<ClusterSettings>('cluster')) };
  }

  async update(changes: Partial<ClusterSettings>): Promise<ClusterSettings> {
    const next = { ...(await this.get()), ...changes };
    await this.#write('cluster', next);
    return next;
  }

  async ha(): Promise<HaSettings> {
    return { ...defaultHaSettings, ...(await this.#read<HaSettings>('ha')) };
  }

  async updateHa(changes: Partial<HaSettings>): Promise<HaSettings> {
    const next = { ...(await this.ha()), ...changes };
    await this.#write('ha', next);
    return next;
  }

  async #read<T>(key: string): Promise<Partial<T>> {
    const row = await this.#db
      .selectFrom('settings')
      .select('value')
      .where('key', '=', key)
      .executeTakeFirst();
    return row ? (JSON.parse(row.value) as Partial<T>) : {};
  }

  async #write(key: string, value: unknown): Promise<void> {
    await this.#db
      .insertInto('settings')
      .values({ key, value: JSON.stringify(value) })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value: JSON.stringify(value) }))
      .execute();
  }

  async policy(): Promise<PlacementPolicy> {
    const s = await this.get();
    return {
      ...defaultPolicy,
      cpuOvercommit: s.cpuOvercommit,
      memoryOvercommit: s.memoryOvercommit,
      storageOvercommit: s.storageOvercommit,
      strategy: s.strategy,
    };
  }
}
