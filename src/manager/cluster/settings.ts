/**
 * Cluster-wide settings kept in the database, so they survive restarts: the placement policy
 * (overcommit ratios, spread or pack), the migration defaults, and the HA settings (which keep
 * every value when HA is switched off and on: only `enabled` changes).
 */
import { type Static, Type } from 'typebox';
import { defaultHaSettings, type HaSettings } from '../../wire/ha.ts';
import type { Db } from '../db/database.ts';
import { defaultPolicy, type PlacementPolicy } from '../placement/model.ts';

export const ClusterSettings = Type.Object(
  {
    cpuOvercommit: Type.Number({ minimum: 0.1, maximum: 64, description: 'vCPUs allowed per host core' }),
    memoryOvercommit: Type.Number({ minimum: 0.1, maximum: 4, description: '1.0: no memory overcommit' }),
    storageOvercommit: Type.Number({
      minimum: 0.1,
      maximum: 1000,
      description:
        'virtual disk bytes a new or grown disk may take per byte free in its pool; 1.0: it fits in full',
    }),
    strategy: Type.Union([Type.Literal('spread'), Type.Literal('pack')]),
    migrationDowntimeMs: Type.Integer({ minimum: 1, maximum: 60_000 }),
    migrationBandwidthMiBps: Type.Integer({ minimum: 0, maximum: 1_000_000, description: '0: unlimited' }),
    migrationTimeoutS: Type.Integer({ minimum: 10, maximum: 86_400 }),
  },
  { additionalProperties: false },
);
export type ClusterSettings = Static<typeof ClusterSettings>;

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
