/**
 * Keeps the rules of running VMs' ports as their security groups say: after any change that
 * can move them (a group's rules, a NIC in or out of a group, so the addresses a rule naming
 * that group reaches), every running port whose resolved rules differ from what its VM's spec
 * records is sent the new ones, and only once its host took them does the spec record them. So
 * the spec says what the host has: a change a host missed (down, or the manager killed between
 * the two) differs still, and is sent again at the next change or when the host reports after
 * (re)connecting. A stopped VM gets its rules at its next start (vms/start-networks.ts).
 *
 * One run at a time; a change during a run makes one more after it, never a pile.
 */
import { asTernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { PortRules, SecurityGroup } from '../../wire/network.ts';
import type { Db } from '../db/database.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { EventBus } from '../events/bus.ts';
import { portRules } from './port-rules.ts';
import { groupToWire, type SecurityGroupStore } from './security-groups.ts';

/** What a host's agent does for a port's rules (the agent route setNicRules). */
export interface PortRulesAgent {
  setNicRules(id: string, mac: string, rules: PortRules | null): Promise<void>;
}

export interface PortRulesSyncDeps {
  db: Db;
  log: Logger;
  securityGroups: SecurityGroupStore;
  agentOf: (hostId: string) => PortRulesAgent | null;
}

/** One port to rewrite: its VM, host, NIC and the rules its group resolves to now. */
interface Push {
  vmId: string;
  hostId: string;
  mac: string;
  rules: PortRules | null;
}

export class PortRulesSync {
  readonly #d: PortRulesSyncDeps;
  #running: Promise<void> | null = null;
  #again = false;
  #closed = false;
  /** VMs left out of a run because they were not running (migrating, starting): looked at once they run. */
  readonly #waiting = new Set<string>();

  constructor(d: PortRulesSyncDeps) {
    this.#d = d;
  }

  /** Security groups or their members may have changed: running ports get their rules again. */
  changed(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.run()
      .catch((err: Error) => this.#d.log.warn({ err }, 'giving running ports their security rules failed'))
      .finally(() => {
        this.#running = null;
        if (this.#again) {
          this.#again = false;
          this.changed();
        }
      });
  }

  /** A host (re)connected: what it missed is sent now. */
  hostReported(_hostId: string): void {
    this.changed();
  }

  /** A VM that was skipped while it was not running is looked at again once it runs. */
  watch(bus: EventBus): () => void {
    return bus.subscribe((e) => {
      if (e.type === 'vm' && e.vm.state === 'running' && this.#waiting.delete(e.vm.id)) this.changed();
    });
  }

  /** Resolves once no run is going or due. */
  async settled(): Promise<void> {
    while (this.#running) await this.#running;
  }

  close(): void {
    this.#closed = true;
  }

  /** One pass: every NIC in a group, its rules resolved now against what its VM's spec records. */
  async run(): Promise<void> {
    const pushes = await this.#due();
    const byHost = new Map<string, Push[]>();
    for (const p of pushes) byHost.set(p.hostId, [...(byHost.get(p.hostId) ?? []), p]);
    await Promise.all([...byHost].map(([hostId, list]) => this.#push(hostId, list)));
  }

  async #due(): Promise<Push[]> {
    const groups = new Map<string, SecurityGroup>(
      (await this.#d.securityGroups.rows()).map((g) => [g.id, groupToWire(g)]),
    );
    if (groups.size === 0) return [];
    const members = await this.#d.securityGroups.members();
    const rows = await this.#d.db
      .selectFrom('nics')
      .innerJoin('vms', 'vms.id', 'nics.vmId')
      .select([
        'nics.mac',
        'nics.securityGroup',
        'vms.id as vmId',
        'vms.name',
        'vms.state',
        'vms.hostId',
        'vms.spec',
      ])
      .where('nics.securityGroup', 'is not', null)
      .where('vms.hostId', 'is not', null)
      .execute();
    const out: Push[] = [];
    for (const r of rows) {
      const group = groups.get(r.securityGroup!);
      if (!group) continue;
      const nic = vmSpecOf({ spec: r.spec, id: r.vmId, name: r.name }).nics.find((n) => n.mac === r.mac);
      if (nic?.network.mode !== 'network') continue;
      const rules = portRules(group, members);
      if (JSON.stringify(rules) === JSON.stringify(nic.network.rules)) continue;
      if (r.state === 'running' || r.state === 'paused')
        out.push({ vmId: r.vmId, hostId: r.hostId!, mac: r.mac, rules });
      // A stopped VM takes its rules at start; one on its way (migrating, starting) once it runs.
      else if (r.state !== 'stopped') this.#waiting.add(r.vmId);
    }
    return out;
  }

  /** Sends one host its ports' rules, each recorded in its VM's spec once the host took it. */
  async #push(hostId: string, pushes: Push[]): Promise<void> {
    const agent = this.#d.agentOf(hostId);
    if (!agent) return;
    for (const p of pushes) {
      try {
        await agent.setNicRules(p.vmId, p.mac, p.rules);
      } catch (err) {
        this.#d.log.warn(
          { err: asTernError(err), hostId, vm: p.vmId, mac: p.mac },
          "a port's security rules could not be rewritten; sent again when its host reports",
        );
        continue;
      }
      await this.#record(p);
    }
  }

  /** The VM's spec records the rules its host has; read and written at once, so no other write is lost. */
  async #record(p: Push): Promise<void> {
    await this.#d.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('vms')
        .select(['id', 'name', 'spec'])
        .where('id', '=', p.vmId)
        .executeTakeFirst();
      if (!row) return;
      const spec = vmSpecOf(row);
      const nics = spec.nics.map((n) =>
        n.mac === p.mac && n.network.mode === 'network'
          ? { ...n, network: { ...n.network, rules: p.rules } }
          : n,
      );
      await trx
        .updateTable('vms')
        .set({ spec: JSON.stringify({ ...spec, nics }) })
        .where('id', '=', p.vmId)
        .execute();
    });
  }
}
