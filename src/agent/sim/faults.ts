/**
 * Fault controls of a simulated host: failing or hanging the next calls of a driver operation,
 * and the host's reachability (network, shared storage) and power. The driver consults them at
 * the start of every operation; the sim cluster follows the events to cut the host's network
 * both ways, to cut its path to the shared pool, and to stop and restart its agent with the power.
 */
import { EventEmitter } from 'node:events';
import { TernError } from '../../errors.ts';

/** The driver operations a fault can be aimed at. */
export type SimOperation =
  | 'facts'
  | 'run'
  | 'act'
  | 'forget'
  | 'consoleTail'
  | 'resizeDisk'
  | 'attachDisk'
  | 'plugNic'
  | 'unplugNic'
  | 'linkNic'
  | 'setNicRules'
  | 'detachDisk'
  | 'changeCdrom'
  | 'snapshot'
  | 'deleteSnapshot'
  | 'prepareIncoming'
  | 'finishIncoming'
  | 'abortIncoming'
  | 'migrate'
  | 'releaseMigrated'
  | 'moveDisk'
  | 'backupVm'
  | 'replicateVm'
  | 'prepareLiveRestore'
  | 'streamLiveRestore'
  | 'guestExec'
  | 'guestFileRead';

interface Armed {
  count: number;
  error?: Error;
}

interface Hung {
  op: SimOperation;
  release: () => void;
  fail: (err: Error) => void;
}

export class SimFaults {
  /** `reachable` fires with the new value whenever the host drops off or comes back. */
  readonly reachability = new EventEmitter<{ reachable: [boolean] }>();
  /** `reachable` fires whenever the host loses or regains its path to the shared storage. */
  readonly storage = new EventEmitter<{ reachable: [boolean] }>();
  /** `power` fires when the host loses power (false) or is switched back on (true). */
  readonly power = new EventEmitter<{ power: [boolean] }>();
  readonly #failures = new Map<SimOperation, Armed>();
  readonly #hangs = new Map<SimOperation, number>();
  readonly #hung = new Set<Hung>();
  #reachable = true;
  #storageReachable = true;

  get reachable(): boolean {
    return this.#reachable;
  }

  setReachable(reachable: boolean): void {
    if (reachable === this.#reachable) return;
    this.#reachable = reachable;
    this.reachability.emit('reachable', reachable);
  }

  get storageReachable(): boolean {
    return this.#storageReachable;
  }

  setStorageReachable(reachable: boolean): void {
    if (reachable === this.#storageReachable) return;
    this.#storageReachable = reachable;
    this.storage.emit('reachable', reachable);
  }

  /** The next `count` calls of `op` fail with `error` (a hypervisor error by default); 0 disarms. */
  failNext(op: SimOperation, count = 1, error?: Error): void {
    if (count <= 0) this.#failures.delete(op);
    else this.#failures.set(op, { count, error });
  }

  /** The next `count` calls of `op` never answer until `releaseHangs()` (or the driver closes). */
  hangNext(op: SimOperation, count = 1): void {
    this.#hangs.set(op, count);
  }

  /** Lets hung calls (of `op`, or all) carry on as if nothing happened. */
  releaseHangs(op?: SimOperation): void {
    for (const h of this.#hung) {
      if (op && h.op !== op) continue;
      this.#hung.delete(h);
      h.release();
    }
  }

  /** Calls currently hanging. */
  get hanging(): number {
    return this.#hung.size;
  }

  /** Forgets every armed fault and fails hung calls with `why` (the driver is closing). */
  clear(why: Error): void {
    this.#failures.clear();
    this.#hangs.clear();
    for (const h of this.#hung) h.fail(why);
    this.#hung.clear();
  }

  /** Called by the driver as `op` begins: throws an armed failure, or hangs. */
  async enter(op: SimOperation): Promise<void> {
    const failure = this.#failures.get(op);
    if (failure) {
      if (--failure.count <= 0) this.#failures.delete(op);
      throw failure.error ?? new TernError('hypervisor_error', `simulated failure of ${op}`);
    }
    const hangs = this.#hangs.get(op);
    if (hangs) {
      if (hangs <= 1) this.#hangs.delete(op);
      else this.#hangs.set(op, hangs - 1);
      await new Promise<void>((release, fail) => this.#hung.add({ op, release, fail }));
    }
  }
}
