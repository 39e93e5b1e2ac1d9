/**
 * Whether an unplanned failover may start a replica (pure): never while the primary might still
 * run the VM, the same rule HA keeps — two copies writing is worse than none running. The
 * primary is known not to run it when its side answers that the VM is stopped, or when its host
 * is confirmed fenced (its lease expired and its watchdog fenced it, or an operator confirmed it
 * powered off). A silent host is not a stopped VM: that is refused unless forced, and a forced
 * failover carries the risk in words, for the task log and the audit. A primary that answers
 * that it runs the VM is refused even when forced: that is a planned failover.
 */

export interface PrimaryFacts {
  vmName: string;
  /** What the primary side says of the VM; unknown when it cannot be asked. */
  vm: 'stopped' | 'running' | 'paused' | 'unknown';
  /** The primary's host: answering, silent (no heartbeat), or confirmed not to run anything. */
  host: 'online' | 'silent' | 'fenced';
}

export type FailoverDecision =
  | { allowed: true; risk: string | null }
  | { allowed: false; why: string; fix: string };

export function decideUnplannedFailover(f: PrimaryFacts, force: boolean): FailoverDecision {
  if (f.vm === 'stopped' || f.host === 'fenced') return { allowed: true, risk: null };
  if (f.vm === 'running' || f.vm === 'paused')
    return {
      allowed: false,
      why: `the primary answers that ${f.vmName} is ${f.vm}`,
      fix: 'use a planned failover, which stops it and sends the last changes first',
    };
  if (!force)
    return {
      allowed: false,
      why: `the primary's host is ${f.host === 'silent' ? 'silent' : 'answering but cannot say'} and not confirmed fenced: ${f.vmName} may still run there`,
      fix: 'wait for the host to be fenced or confirm it powered off, or force the failover accepting the risk',
    };
  return {
    allowed: true,
    risk: `forced while ${f.vmName}'s primary was not confirmed stopped: if it still runs there, two copies run and write, and the primary's writes since the last point are lost`,
  };
}
