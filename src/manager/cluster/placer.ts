/**
 * Placement applied to the live inventory: reads the cluster snapshot and the policy, runs the
 * pure `place`, and turns "no host fits" into an error that carries the explanation.
 */
import { TernError } from '../../errors.ts';
import type { Db } from '../db/database.ts';
import type { Placement, VmDemand } from '../placement/model.ts';
import { place } from '../placement/place.ts';
import { type ClusterSnapshot, clusterSnapshot } from './inventory.ts';
import type { SettingsStore } from './settings.ts';

export class Placer {
  readonly #db: Db;
  readonly settings: SettingsStore;

  constructor(db: Db, settings: SettingsStore) {
    this.#db = db;
    this.settings = settings;
  }

  snapshot(without?: string): Promise<ClusterSnapshot> {
    return clusterSnapshot(this.#db, without);
  }

  async explain(demand: VmDemand, snapshot: ClusterSnapshot): Promise<Placement> {
    return place(snapshot.hosts, demand, await this.settings.policy(), { explain: true });
  }

  /** The host the VM goes to; an error naming why each host was rejected when none fits. */
  async choose(demand: VmDemand, snapshot: ClusterSnapshot, what: string): Promise<string> {
    const p = await this.explain(demand, snapshot);
    if (p.hostId) return p.hostId;
    throw new TernError('unavailable', `no host can take ${what}: ${p.summary}`, {
      verdicts: p.verdicts.map((v) => ({ host: v.host, filter: v.filter, reason: v.reason })),
    });
  }
}
