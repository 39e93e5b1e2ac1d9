/** Waiting, with a bound, for a VM to reach a state: on inventory events, not by polling. */
import { TernError } from '../../errors.ts';
import type { PowerState, Vm } from '../../wire/vm.ts';
import type { EventBus } from '../events/bus.ts';
import type { VmStore } from './store.ts';

export async function waitForVm(
  bus: EventBus,
  store: VmStore,
  id: string,
  until: (vm: Vm) => boolean,
  timeoutMs: number,
  signal: AbortSignal,
  what: string,
): Promise<Vm> {
  // Subscribe before reading, so a change between the read and the subscription is not lost.
  const local = new AbortController();
  const waiting = bus.waitFor(
    (e) => (e.type === 'vm' && e.vm.id === id && until(e.vm) ? e.vm : undefined),
    timeoutMs,
    AbortSignal.any([signal, local.signal]),
    () => new TernError('timeout', `VM did not ${what} within ${Math.round(timeoutMs / 1000)} s`),
  );
  waiting.catch(() => {});
  try {
    const current = await store.get(id);
    if (until(current)) return current;
    return await waiting;
  } finally {
    local.abort();
  }
}

export const isState =
  (...states: PowerState[]) =>
  (vm: Vm) =>
    states.includes(vm.state);
