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

  async sleep(simMs: number, signal?: AbortSignal): Promise<void> {
    try {
      await sleep(this.real(simMs), undefined, { signal });
    } catch (err) {
      if (signal?.aborted) throw new TernError('cancelled', 'the operation was cancelled');
      throw err;
    }
  }
}
