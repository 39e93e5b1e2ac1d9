/**
 * Host failure detection: from when the manager last heard each host's network heartbeat and
 * last saw its statefile lease move, what state each host is in. Only `failed` lets anyone
 * restart the host's VMs, and only once the host has certainly fenced itself.
 *
 * Every time here is the manager's own monotonic clock (performance.now() or a monotonic
 * counter of the shell): the host's clock is never compared with it.
 */

export type HostHealth = 'healthy' | 'isolated' | 'storage-lost' | 'suspect' | 'failed';

export interface HostSignals {
  hostId: string;
  /** When the manager last received the host's network heartbeat; null: not since it started. */
  networkOkAtMs: number | null;
  /**
   * When the manager last saw the host's lease counter change: the completion time of the
   * statefile read that showed the new value. Null: no lease of the host seen since the watch
   * began, so nothing says the host is enforcing HA at all (it may never have received its
   * duties): such a host is never declared failed, since it may never fence.
   */
  leaseOkAtMs: number | null;
  /**
   * The HA timeout the host wrote in its slot: the one it enforces. After the setting is
   * lowered, a host fences by its old, longer timeout until it hears the new one.
   */
  timeoutS?: number;
}

export interface DetectorInput {
  nowMs: number;
  /** T_fence, HaSettings.timeoutS. */
  timeoutS: number;
  /** When this manager started watching (or took over as leader): it knows nothing before. */
  watchingSinceMs: number;
  /**
   * When the last statefile read that succeeded was started; null: none yet. A lease counts as
   * silent only up to here: a manager that cannot read the statefile (its own storage path is
   * down, or the process was frozen) must not take every lease for silent.
   */
  statefileReadAtMs: number | null;
  hosts: readonly HostSignals[];
  /** A signal unseen this long is silent; default `silentAfterMs(timeoutS)`. */
  silentAfterMs?: number;
}

export interface HostDetection {
  hostId: string;
  state: HostHealth;
  networkSilentMs: number;
  leaseSilentMs: number;
  /**
   * For `suspect`: when it becomes `failed` if both signals stay silent (when to look again;
   * null for a host whose lease was never seen, which never becomes failed).
   * For `failed`: when it became failed as the observations show it. Otherwise null.
   */
  failAtMs: number | null;
}

const minMarginMs = 2_000;

/**
 * T_fail: how long both signals must have been silent before the host is declared failed.
 *
 * A host fences T_fence after the last moment it both renewed its lease and reached a manager,
 * as its agent credits them: a heartbeat from when it was sent (the manager received it later),
 * a lease renewal from when its write was issued (any read started after the write landed sees
 * it). So the manager's last observation of either signal is never earlier than the host's
 * credit for it. A renewal still in flight when the manager declares the host failed cannot
 * save the host either: had it completed before the host's deadline, a read started after it
 * (one every half second, and T_fail - T_fence is longer) would have seen it, and a renewal
 * that completes after the deadline does not lift a fence. The margin therefore covers only:
 * - the agent's lag: it checks its deadline every quarter second, and the watchdog (fed the
 *   same deadline) on a timer;
 * - the fence itself: SIGKILL of every protected QEMU and their exit (a process in disk I/O
 *   on a hung storage path takes a moment to die);
 * - drift between the two monotonic clocks (ppm, negligible).
 * Hence 2 s, or 10% of long timeouts. With T_fence = 10 s, T_fail is 12 s, which leaves room to
 * start a failed host's VMs elsewhere within 15 s of the failure.
 */
export function failAfterMs(timeoutS: number): number {
  const fenceMs = timeoutS * 1000;
  return fenceMs + Math.max(minMarginMs, Math.ceil(fenceMs / 10));
}

/**
 * When a signal counts as silent: half of T_fence. With heartbeats and renewals at least every
 * T_fence / 4 (which the fence rule needs anyway, so a single slow beat does not fence), that
 * is two missed in a row, so one late beat does not flap a host into `isolated`.
 */
export function silentAfterMs(timeoutS: number): number {
  return Math.ceil((timeoutS * 1000) / 2);
}

export function detect(input: DetectorInput): HostDetection[] {
  const out: HostDetection[] = [];
  for (const h of input.hosts) out.push(detectHost(h, input));
  return out;
}

export function detectHost(h: HostSignals, input: DetectorInput): HostDetection {
  const { nowMs, watchingSinceMs } = input;
  const failMs = failAfterMs(Math.max(input.timeoutS, h.timeoutS ?? 0));
  const silentMs = Math.min(input.silentAfterMs ?? silentAfterMs(input.timeoutS), failMs);
  // A manager that just started has not watched: silence counts from when it began to.
  const netFrom = Math.max(h.networkOkAtMs ?? watchingSinceMs, watchingSinceMs);
  const leaseFrom = Math.max(h.leaseOkAtMs ?? watchingSinceMs, watchingSinceMs);
  const networkSilentMs = Math.max(0, nowMs - netFrom);
  // The lease is known unchanged only up to the start of the last read that succeeded.
  const leaseHorizon =
    input.statefileReadAtMs === null ? leaseFrom : Math.min(nowMs, input.statefileReadAtMs);
  const leaseSilentMs = Math.max(0, leaseHorizon - leaseFrom);

  const netSilent = networkSilentMs >= silentMs;
  const leaseSilent = leaseSilentMs >= silentMs;
  let state: HostHealth;
  let failAtMs: number | null = null;
  if (netSilent && leaseSilent && h.leaseOkAtMs === null) {
    // Never seen renewing: not known to fence, so never failed (see HostSignals.leaseOkAtMs).
    state = 'suspect';
  } else if (netSilent && leaseSilent) {
    // Both must reach T_fail: the lease by a read started that late, the network by the clock.
    failAtMs = Math.max(netFrom, leaseFrom) + failMs;
    state = networkSilentMs >= failMs && leaseSilentMs >= failMs ? 'failed' : 'suspect';
  } else if (netSilent) {
    // Still renewing: it will not fence, so its VMs stay where they run.
    state = 'isolated';
  } else if (leaseSilent) {
    // Still talking to us: it will not fence either (the fence needs both lost).
    state = 'storage-lost';
  } else {
    state = 'healthy';
  }
  return { hostId: h.hostId, state, networkSilentMs, leaseSilentMs, failAtMs };
}
