/**
 * The loop of a scheduler: a tick, then a sleep as long as the tick's outcome says, then the
 * next tick. A tick that fails is reported and the loop goes on. Stopped, no tick starts and no
 * timer is left pending; `idle` waits for a tick under way (tests, shutdown).
 */
export interface WakeRound<T> {
  tick(): Promise<T>;
  failed(err: unknown): void;
  /** How long to sleep before the next tick (its outcome; undefined when it failed); asked only while running. */
  sleepMs(outcome: T | undefined): number | Promise<number>;
}

/** Added to every sleep: a wake at the due instant itself finds the work due. */
const graceMs = 50;

export class WakeLoop<T> {
  readonly #round: WakeRound<T>;
  #timer: NodeJS.Timeout | null = null;
  #stopped = true;
  #ticking: Promise<unknown> = Promise.resolve();

  constructor(round: WakeRound<T>) {
    this.#round = round;
  }

  start(): void {
    this.#stopped = false;
    this.#wake();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Waits for a tick in progress. */
  async idle(): Promise<void> {
    await this.#ticking;
  }

  #wake(): void {
    if (this.#stopped) return;
    let outcome: T | undefined;
    this.#ticking = this.#round
      .tick()
      .then((r) => {
        outcome = r;
      })
      .catch((err) => this.#round.failed(err))
      .then(async () => {
        if (this.#stopped) return;
        const ms = await this.#round.sleepMs(outcome);
        this.#timer = setTimeout(() => this.#wake(), ms + graceMs).unref();
      });
  }
}
