/**
 * Placement applied to the live inventory: reads the cluster snapshot and the policy, runs the
 * pure `place`, and turns "no host fits" into an error that carries the explanation.
 */
import { TernError } from '../../errors.ts';
import type { Db } from '../db/database.ts';
import type { Placement, VmDemand } from '../placement/model.ts';
import { place } from '../placement/place.ts';
import { type ClusterSnapshot, clusterSnapshot, type Reservation } from './inventory.ts';
import type { SettingsStore } from './settings.ts';

export class Placer {
  readonly #db: Db;
  readonly settings: SettingsStore;
  /** Starts admitted and not yet running, by VM id. */
  readonly #reserved = new Map<string, Reservation>();
  /** The last admission in line: each decides alone, after the room of those before is taken. */
  #turn: Promise<unknown> = Promise.resolve();

  constructor(db: Db, settings: SettingsStore) {
    this.#db = db;
    this.settings = settings;
  }

  snapshot(without?: string): Promise<ClusterSnapshot> {
    return clusterSnapshot(this.#db, without, this.#reserved);
  }

  /**
   * Admits a start: `decide` (which reads the snapshot) runs while no other admission does, and
   * the room it returns is held for the VM until `release`. So concurrent starts never both count
   * on the same free room. The hold lives in this process: after a restart, an interrupted start
   * is admitted again when its task resumes.
   */
  reserve<T extends Reservation>(vmId: string, decide: () => Promise<T>): Promise<T & { hold: Reservation }> {
    return this.#admit(vmId, decide, false) as Promise<T & { hold: Reservation }>;
  }

  /** As `reserve`, unless a start of the VM holds room already (it is in flight): then null. */
  reserveUnlessHeld<T extends Reservation>(
    vmId: string,
    decide: () => Promise<T>,
  ): Promise<(T & { hold: Reservation }) | null> {
    return this.#admit(vmId, decide, true);
  }

  #admit<T extends Reservation>(vmId: string, decide: () => Promise<T>, unlessHeld: boolean) {
    const admitted = this.#turn.then(async () => {
      if (unlessHeld && this.#reserved.has(vmId)) return null;
      const r = await decide();
      const hold = { hostId: r.hostId, vcpus: r.vcpus, memoryMiB: r.memoryMiB };
      this.#reserved.set(vmId, hold);
      return { ...r, hold };
    });
    this.#turn = admitted.catch(() => undefined);
    return admitted;
  }

  /**
   * The host a VM created stopped goes to: one it could start on now, else one with room for its
   * disks (a stopped VM holds no CPU or memory; its start is admitted when it comes).
   */
  async chooseStopped(demand: VmDemand, snapshot: ClusterSnapshot, what: string): Promise<string> {
    const p = await this.explain(demand, snapshot);
    if (p.hostId) return p.hostId;
    return this.choose({ ...demand, vcpus: 0, memoryMiB: 0 }, snapshot, what);
  }

  /**
   * The VM runs (its state holds the room now) or will not: its admission's hold ends. With
   * `hold`, only that hold (a later admission of the same VM keeps its own).
   */
  release(vmId: string, hold?: Reservation): void {
    if (hold === undefined || this.#reserved.get(vmId) === hold) this.#reserved.delete(vmId);
  }

  async explain(demand: VmDemand, snapshot: ClusterSnapshot): Promise<Placement> {
    return place(snapshot.hosts, demand, await this.settings.policy(), { explain: true });
  }

  /** The host the VM goes to; an error naming why each host was rejected when none fits. */
  async choose(demand: VmDemand, snapshot: ClusterSnapshot, what: string): Promise<string> {
    const p = await this.explain(demand, snapshot);
    if (p.hostId) return p.hostId;
    throw new TernError('no_capacity', `no host can take ${what}: ${p.summary}`, {
      verdicts: p.verdicts.map((v) => ({ host: v.host, filter: v.filter, reason: v.reason })),
    });
  }
}
