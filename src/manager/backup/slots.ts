/**
 * How many backups run at once, per host and per datastore, across every job of this manager:
 * a job takes a slot for each VM it backs up and gives it back when that backup ends, so two
 * jobs on one datastore together stay within the datastore's bound (each job its own). In
 * memory: after a restart no backup runs (an interrupted one is failed by recovery).
 */
export interface SlotLimits {
  perHost: number;
  perDatastore: number;
}

export interface SlotCounts {
  host: number;
  datastore: number;
}

/** Whether one more backup may start where `counts` already run. Pure. */
export function mayStart(counts: SlotCounts, limits: SlotLimits): boolean {
  return counts.host < limits.perHost && counts.datastore < limits.perDatastore;
}

export class BackupSlots {
  readonly #byHost = new Map<string, number>();
  readonly #byDatastore = new Map<string, number>();
  #waiters: (() => void)[] = [];

  counts(hostId: string, datastoreId: string): SlotCounts {
    return { host: this.#byHost.get(hostId) ?? 0, datastore: this.#byDatastore.get(datastoreId) ?? 0 };
  }

  /** Takes a slot when the limits allow; the returned release gives it back (once). */
  tryTake(hostId: string, datastoreId: string, limits: SlotLimits): (() => void) | null {
    if (!mayStart(this.counts(hostId, datastoreId), limits)) return null;
    this.#byHost.set(hostId, (this.#byHost.get(hostId) ?? 0) + 1);
    this.#byDatastore.set(datastoreId, (this.#byDatastore.get(datastoreId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#byHost.set(hostId, (this.#byHost.get(hostId) ?? 1) - 1);
      this.#byDatastore.set(datastoreId, (this.#byDatastore.get(datastoreId) ?? 1) - 1);
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
    };
  }

  /** Resolves at the next release anywhere: a job waiting for a slot another job holds tries again. */
  released(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}
