/**
 * Cluster-wide settings kept in the database, so they survive restarts: the placement policy
 * (overcommit ratios, spread or pack) and the migration defaults.
 */
import { type Static, Type } from 'typebox';
import type { Db } from '../db/database.ts';
import { defaultPolicy, type PlacementPolicy } from '../placement/model.ts';

export const ClusterSettings = Type.Object(
  {
    cpuOvercommit: Type.Number({ minimum: 0.1, maximum: 64, description: 'vCPUs allowed per host core' }),
    memoryOvercommit: Type.Number({ minimum: 0.1, maximum: 4, description: '1.0: no memory overcommit' }),
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
  strategy: defaultPolicy.strategy,
  migrationDowntimeMs: 300,
  migrationBandwidthMiBps: 0,
  migrationTimeoutS: 600,
};

const key = 'cluster';

export class SettingsStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async get(): Promise<ClusterSettings> {
    const row = await this.#db
      .selectFrom('settings')
      .select('value')
      .where('key', '=', key)
      .executeTakeFirst();
    return { ...defaultSettings, ...(row ? (JSON.parse(row.value) as Partial<ClusterSettings>) : {}) };
  }

  async update(changes: Partial<ClusterSettings>): Promise<ClusterSettings> {
    const next = { ...(await this.get()), ...changes };
    await this.#db
      .insertInto('settings')
      .values({ key, value: JSON.stringify(next) })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value: JSON.stringify(next) }))
      .execute();
    return next;
  }

  async policy(): Promise<PlacementPolicy> {
    const s = await this.get();
    return {
      ...defaultPolicy,
      cpuOvercommit: s.cpuOvercommit,
      memoryOvercommit: s.memoryOvercommit,
      strategy: s.strategy,
    };
  }
}
