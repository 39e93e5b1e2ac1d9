import { setTimeout as sleep } from 'node:timers/promises';
import { TernError } from '../../errors.ts';

/**
 * Simulated time: durations (boot, shutdown, migration rounds) are simulated milliseconds that
 * pass `scale` times faster than real ones, so a test can migrate 64 GiB without waiting for it.
 */
export class SimClock {
  readonly scale: number;
  readonly #origin = Date.now();

  constructor(scale = 1) {
    if (!(scale > 0)) throw new TernError('invalid_request', 'the clock scale must be positive');
    this.scale = scale;
  }

  /** Simulated epoch milliseconds; equal to Date.now() at scale 1. */
  now(): number {
    return this.#origin + (Date.now() - this.#origin) * this.scale;
  }

  /** Real milliseconds that `simMs` simulated milliseconds take. */
  real(simMs: number): number {
    return simMs / this.scale;
  }

  /**
   * Waits until `simMs` simulated milliseconds have passed by `now()`. A timer may fire a little
   * early against Date.now() (it counts from the event loop's cached time), and at a large scale
   * that little is whole simulated seconds: what is left is waited out.
   */
  async sleep(simMs: number, signal?: AbortSignal): Promise<void> {
    const until = this.now() + simMs;
    try {
      for (let left = simMs; left > 0; left = until - this.now())
        await sleep(this.real(left), undefined, { signal });
    } catch (err) {
      if (signal?.aborted) throw new TernError('cancelled', 'the operation was cancelled');
      throw err;
    }
  }
}
