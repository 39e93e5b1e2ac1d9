/** In-process fan-out of manager events to the SSE stream and to tasks waiting on a change. */
import { EventEmitter } from 'node:events';
import type { ManagerEvent } from '../../wire/event.ts';

export class EventBus {
  readonly #emitter = new EventEmitter<{ event: [ManagerEvent] }>();

  constructor() {
    // Every SSE client and every waiting task is a listener; there is no fixed bound.
    this.#emitter.setMaxListeners(0);
  }

  publish(event: ManagerEvent): void {
    this.#emitter.emit('event', event);
  }

  subscribe(listener: (event: ManagerEvent) => void): () => void {
    this.#emitter.on('event', listener);
    return () => this.#emitter.off('event', listener);
  }

  /** Resolves with the first event that `match` maps to a value, or rejects on timeout/abort. */
  waitFor<T>(
    match: (event: ManagerEvent) => T | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
    onTimeout: () => Error = () => new Error('timed out'),
  ): Promise<T> {
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
    return new Promise((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const unsubscribe = this.subscribe((e) => {
        const v = match(e);
        if (v !== undefined) done(() => resolve(v));
      });
      const timer = setTimeout(() => done(() => reject(onTimeout())), timeoutMs);
      const onAbort = () => done(() => reject(signal?.reason ?? new Error('aborted')));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
