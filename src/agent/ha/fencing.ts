/**
 * Whether this host must fence itself: the rule of the agent's side of HA, as a pure function
 * of when the storage lease last renewed and when a manager last answered (monotonic ms of
 * one process, `performance.now()`).
 *
 * Either heartbeat alone keeps the VMs: a host that still renews its lease is only cut off
 * from the network (the manager sees the lease move and will not restart its VMs), and a host
 * the manager still hears is alive to the manager. Only when both have been silent for
 * timeoutS may the manager restart the VMs elsewhere (it waits longer than that, plus a
 * margin), so by then this host must have killed them.
 */

export type FenceState =
  /** Lease renews and the manager answers. */
  | 'ok'
  /** The manager is unreachable but the lease renews: keep the VMs. */
  | 'isolated'
  /** The lease fails but the manager answers: keep the VMs. */
  | 'storage-lost'
  /** Both lost, fencing not yet due: the deadline is `remainingMs` away. */
  | 'both-lost'
  /** Both silent for timeoutS: kill the protected VMs, refuse commands. */
  | 'fence';

export interface FenceInput {
  nowMs: number;
  leaseOkAtMs: number;
  managerOkAtMs: number;
  timeoutS: number;
  /**
   * A heartbeat older than this counts as lost when naming the state (a few renewal or
   * heartbeat intervals); it does not change when fencing is due. Default: timeoutS / 2.
   */
  silentAfterMs?: number;
}

export interface FenceDecision {
  state: FenceState;
  /**
   * Time left before fencing is due; the watchdog is fed with it, so an agent that hangs right
   * after a feed is fenced by the watchdog at the same moment it would have fenced itself.
   * Zero when fencing is due, and the watchdog is then no longer fed.
   */
  remainingMs: number;
  feedWatchdog: boolean;
}

export function decideFencing(i: FenceInput): FenceDecision {
  const timeoutMs = i.timeoutS * 1000;
  const silentAfterMs = Math.min(i.silentAfterMs ?? timeoutMs / 2, timeoutMs);
  const lastHeard = Math.max(i.leaseOkAtMs, i.managerOkAtMs);
  const remainingMs = lastHeard + timeoutMs - i.nowMs;
  if (remainingMs <= 0) return { state: 'fence', remainingMs: 0, feedWatchdog: false };
  const leaseLost = i.nowMs - i.leaseOkAtMs > silentAfterMs;
  const managerLost = i.nowMs - i.managerOkAtMs > silentAfterMs;
  const state: FenceState =
    leaseLost && managerLost ? 'both-lost' : leaseLost ? 'storage-lost' : managerLost ? 'isolated' : 'ok';
  return { state, remainingMs, feedWatchdog: true };
}
