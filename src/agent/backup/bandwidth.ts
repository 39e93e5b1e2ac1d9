/**
 * Paces a transfer to a byte rate over its whole run (a backup's reads, a replication's
 * sends): each call after `bytes` more waits until the run is not ahead of the rate.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** 0 bytes per second: no limit. */
export class Bandwidth {
  readonly #bytesPerS: number;
  readonly #started = Date.now();
  #bytes = 0;

  constructor(bytesPerS: number) {
    this.#bytesPerS = bytesPerS;
  }

  async after(bytes: number, signal: AbortSignal): Promise<void> {
    if (this.#bytesPerS <= 0) return;
    this.#bytes += bytes;
    const due = this.#started + (this.#bytes / this.#bytesPerS) * 1000;
    const wait = due - Date.now();
    if (wait > 0) {
      await sleep(wait, undefined, { signal }).catch(() => {});
    }
  }
}
