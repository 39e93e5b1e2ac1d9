/**
 * A host's full report: what its agent says it runs, applied to the inventory whenever its
 * link comes up, and the waits of those (recovery, tasks) that need the inventory to tell
 * truly what runs on a host before they act.
 */
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { AgentVm } from '../../wire/agent.ts';
import type { Db } from '../db/database.ts';
import type { AgentClient } from './agent-client.ts';

/**
 * Where what agents say about VMs goes (the VM store, given at start): hosts/ hands reports on
 * and decides nothing about VMs.
 */
export interface VmReportSink {
  /** One VM changed (`null`: the host no longer has it). */
  applyReport(hostId: string, vmId: string, reported: AgentVm | null): Promise<void>;
  /** Every VM the host has, after it (re)connects. */
  applyFullReport(hostId: string, reported: AgentVm[]): Promise<void>;
  markHostUnreachable(hostId: string, why: string): Promise<void>;
  setHostName(hostId: string, name: string): void;
}

export class HostReports {
  readonly #db: Db;
  readonly #vms: VmReportSink;
  readonly #log: Logger;
  /** Hosts whose link is up and whose full report the inventory holds: what recovery waits for. */
  readonly #reported = new Set<string>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #listeners: ((hostId: string) => void)[] = [];

  constructor(db: Db, vms: VmReportSink, log: Logger) {
    this.#db = db;
    this.#vms = vms;
    this.#log = log;
  }

  /** Called (not awaited) each time a host's full report has been applied. */
  onReported(listener: (hostId: string) => void): void {
    this.#listeners.push(listener);
  }

  /** The host's link went down: what the inventory holds of it is no longer its report. */
  forget(hostId: string): void {
    this.#reported.delete(hostId);
  }

  /** Asks the host's agent what it runs and applies that to the inventory. */
  async apply(hostId: string, client: AgentClient): Promise<void> {
    const reported = await client.listVms();
    await this.#vms.applyFullReport(hostId, reported);
    await this.#forgetStrays(hostId, client, reported);
    this.#reported.add(hostId);
    for (const ready of [...(this.#waiters.get(hostId) ?? [])]) ready();
    for (const listener of this.#listeners) listener(hostId);
  }

  /**
   * Resolves once the host's full report is applied; throws `unavailable` when that takes
   * longer than `timeoutMs`. `lookup` names the host, and is asked only when there is a wait.
   */
  async wait(
    hostId: string,
    timeoutMs: number,
    lookup: () => Promise<string>,
    signal?: AbortSignal,
    waiting?: (host: string) => Promise<void>,
  ): Promise<void> {
    if (this.#reported.has(hostId)) return;
    const name = await lookup();
    await waiting?.(name);
    const waiters = this.#waiters.get(hostId) ?? new Set();
    this.#waiters.set(hostId, waiters);
    await new Promise<void>((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        waiters.delete(ready);
        signal?.removeEventListener('abort', aborted);
        fn();
      };
      const ready = () => done(resolve);
      const aborted = () => done(() => reject(signal?.reason));
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new TernError(
                'unavailable',
                `host ${name} did not connect within ${Math.round(timeoutMs / 1000)} s`,
              ),
            ),
          ),
        timeoutMs,
      );
      waiters.add(ready);
      // The report may have arrived while the name was looked up.
      if (this.#reported.has(hostId)) ready();
      else if (signal?.aborted) aborted();
      else signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  /**
   * A host that comes back may still hold records of VMs that live elsewhere now (restarted
   * by HA, migrated, deleted while it was away). Stopped or crashed ones are forgotten there, so
   * they neither show nor block the VM coming back to this host; a running one is reported, not
   * killed: the inventory may be about to name this host (a migration in flight).
   */
  async #forgetStrays(hostId: string, client: AgentClient, reported: AgentVm[]): Promise<void> {
    if (reported.length === 0) return;
    const owners = new Map(
      (
        await this.#db
          .selectFrom('vms')
          .select(['id', 'hostId'])
          .where(
            'id',
            'in',
            reported.map((v) => v.id),
          )
          .execute()
      ).map((r) => [r.id, r.hostId]),
    );
    for (const vm of reported) {
      if (owners.get(vm.id) === hostId) continue;
      if (vm.state === 'crashed' || vm.state === 'stopped') {
        await client
          .forgetVm(vm.id)
          .catch((err: Error) =>
            this.#log.warn({ vm: vm.id, err: err.message }, 'could not forget a stray VM'),
          );
        this.#log.info({ vm: vm.id, host: hostId }, 'forgot a stopped copy of a VM that lives elsewhere');
      } else {
        this.#log.warn(
          { vm: vm.id, host: hostId, state: vm.state },
          'a host reports a VM the inventory places elsewhere',
        );
      }
    }
  }
}
