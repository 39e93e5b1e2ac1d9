/**
 * A VM's network cards after it is made: add, remove, link up or down, each a task that can
 * be killed at any instant and resumed. The inventory's NIC row and the VM's spec are the two
 * records: an add records the row first (its address held), then the spec; a remove drops the
 * spec's NIC first, then the row; a resumed run does what is left and nothing twice.
 *
 * The NICs of a stopped VM change in the inventory only; its host plugs them at its next
 * start. A running (or paused) VM's change on its host first (the agent's NIC routes, each done
 * when already done, so a resumed run asks again safely), then in the inventory: a NIC on a
 * managed network is plugged in at a slot of its own and out once the guest released it; any
 * NIC's link goes up or down.
 */
import { asTernError, TernError } from '../../errors.ts';
import { freeNicSlot, type NicRequest, type NicSpec, withoutNic } from '../../wire/vm.ts';
import type { NicTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { NetworkSync } from '../networks/host-sync.ts';
import { type NicDeps, planNics } from '../networks/nics.ts';
import { portRules } from '../networks/port-rules.ts';
import { groupToWire } from '../networks/security-groups.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from './deps.ts';

export type NicTaskDeps = VmDeps & NicDeps & { networkSync: NetworkSync };

/** NICs a VM may have (the spec's bound). */
export const maxNics = 8;

export interface NicAddParams {
  vmId: string;
  /** Decided when asked, so a resumed run finds the NIC it recorded. */
  mac: string;
  request: NicRequest;
}

export interface NicRemoveParams {
  vmId: string;
  mac: string;
}

export interface NicLinkParams {
  vmId: string;
  mac: string;
  link: 'up' | 'down';
}

/**
 * The VM whose NICs change, and the agent of its host when it runs there (null: stopped, its
 * host plugs its NICs at start). Anything else (being made, crashed, unreachable...) waits.
 */
async function nicVm(deps: VmDeps, vmId: string, what: string) {
  const row = await deps.store.row(vmId);
  const spec = vmSpecOf(row);
  if (row.state === 'stopped') return { row, spec, agent: null };
  if ((row.state === 'running' || row.state === 'paused') && row.hostId)
    return { row, spec, agent: deps.hosts.client(row.hostId) };
  throw new TernError('conflict', `VM ${row.name} is ${row.state}: ${what} on a running or stopped VM`);
}

/** The NIC row of `mac`, which must be this VM's if there is one. */
async function nicRow(deps: VmDeps, vmId: string, mac: string): Promise<NicTable | undefined> {
  const row = await deps.db.selectFrom('nics').selectAll().where('mac', '=', mac).executeTakeFirst();
  if (row && row.vmId !== vmId) throw new TernError('conflict', `MAC ${mac} is another VM's NIC`);
  return row;
}

export function nicAddTask(deps: NicTaskDeps): TaskKind<NicAddParams> {
  return {
    kind: 'vm.nic.add',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const { row, spec, agent } = await nicVm(deps, p.vmId, 'NICs are added');
      let nic = spec.nics.find((n) => n.mac === p.mac);
      if (!nic) {
        if (spec.nics.length >= maxNics)
          throw new TernError('conflict', `VM ${row.name} has ${maxNics} NICs, the most it may have`);
        // The slot follows from the NICs the VM has, so a resumed run finds the same one.
        const slot = freeNicSlot(spec);
        if (slot === null) throw new TernError('conflict', `VM ${row.name} has no free NIC slot`);
        nic = { ...(await recordNic(deps, p)), slot };
        await ctx.step(`recorded NIC ${p.mac}${nicAddress(nic)}`, 40);
        if (agent) {
          if (nic.network.mode !== 'network')
            throw new TernError(
              'conflict',
              `VM ${row.name} is ${row.state}: only a NIC on a managed network is plugged into a running VM`,
            );
          // Its host's DHCP knows the lease before the guest sees the NIC.
          deps.networkSync.changed();
          await agent.plugNic(p.vmId, nic);
          await ctx.step(`NIC ${p.mac} plugged into the running VM`, 70);
        }
        // The VM may have changed meanwhile; the spec is read again for the write.
        const now = vmSpecOf(await deps.store.row(p.vmId));
        await deps.store.update(p.vmId, { spec: JSON.stringify({ ...now, nics: [...now.nics, nic] }) });
      }
      deps.networkSync.changed();
      return { mac: nic.mac, ...(nic.network.mode === 'network' ? { ip: nic.network.ip } : {}) };
    },
    async cleanup(ctx, p) {
      // Failed before the spec had it: its row (and address) goes; once in the spec, it stays.
      const vm = await deps.store.row(p.vmId).catch(() => null);
      if (vm && vmSpecOf(vm).nics.some((n) => n.mac === p.mac)) return;
      if (vm?.hostId && (vm.state === 'running' || vm.state === 'paused')) {
        // Its host may have plugged it in before the task failed: out again first. If it cannot
        // come out, the inventory keeps its row (and address) rather than give them to another.
        try {
          await deps.hosts.client(vm.hostId).unplugNic(p.vmId, p.mac);
        } catch (err) {
          await ctx.log(
            `NIC ${p.mac} may still be plugged into ${vm.name}; its address stays held: ${asTernError(err).message}`,
          );
          return;
        }
      }
      await deps.db.deleteFrom('nics').where('mac', '=', p.mac).where('vmId', '=', p.vmId).execute();
      deps.networkSync.changed();
      await ctx.log(`NIC ${p.mac} not added; its address is free again`);
    },
  };
}

/** The NIC's row, recorded once (a resumed run finds it); its spec as the host gets it. */
async function recordNic(deps: NicTaskDeps, p: NicAddParams): Promise<NicSpec> {
  const existing = await nicRow(deps, p.vmId, p.mac);
  if (existing) return specOfRow(deps, existing, p.request);
  const request = p.request.mode === 'network' ? { ...p.request, mac: p.mac } : p.request;
  const [planned] = await planNics(deps, [request]);
  try {
    await deps.db
      .insertInto('nics')
      .values({ ...planned!.row, mac: p.mac, vmId: p.vmId, createdAt: new Date().toISOString() })
      .execute();
    return { ...planned!.spec, mac: p.mac };
  } finally {
    deps.networks.release([planned!.row]);
  }
}

/** A recorded NIC's spec: its network's bridge, its address, its group's rules now. */
async function specOfRow(deps: NicTaskDeps, row: NicTable, request: NicRequest): Promise<NicSpec> {
  if (request.mode !== 'network') return { mac: row.mac, network: request };
  if (!row.networkId) throw new TernError('conflict', `NIC ${row.mac} was recorded on no network`);
  const network = await deps.networks.row(row.networkId);
  const group = row.securityGroup ? await deps.securityGroups.row(row.securityGroup) : null;
  const rules = group ? portRules(groupToWire(group), await deps.securityGroups.members()) : null;
  return {
    mac: row.mac,
    network: { mode: 'network', network: network.id, bridge: network.bridge, ip: row.ip, rules },
  };
}

const nicAddress = (nic: NicSpec) => (nic.network.mode === 'network' ? ` at ${nic.network.ip}` : '');

export function nicRemoveTask(deps: NicTaskDeps): TaskKind<NicRemoveParams> {
  return {
    kind: 'vm.nic.remove',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const { row, spec, agent } = await nicVm(deps, p.vmId, 'NICs are removed');
      if (spec.nics.some((n) => n.mac === p.mac)) {
        if (agent) {
          await ctx.step(`asking the guest of ${row.name} to release NIC ${p.mac}`, 30);
          await agent.unplugNic(p.vmId, p.mac);
        }
        // The others keep their slots: on a running VM, QEMU names their devices after them.
        await deps.store.update(p.vmId, { spec: JSON.stringify({ ...spec, nics: withoutNic(spec, p.mac) }) });
        await ctx.step(`NIC ${p.mac} taken out of ${row.name}`, 50);
      } else if (!(await nicRow(deps, p.vmId, p.mac))) {
        throw new TernError('not_found', `VM ${row.name} has no NIC ${p.mac}`);
      } else if (agent) {
        // Resumed after the spec let go of it: its port may be left on the host.
        await agent.unplugNic(p.vmId, p.mac);
      }
      await deps.db.deleteFrom('nics').where('mac', '=', p.mac).where('vmId', '=', p.vmId).execute();
      deps.networkSync.changed();
      return { mac: p.mac };
    },
  };
}

export function nicLinkTask(deps: NicTaskDeps): TaskKind<NicLinkParams> {
  return {
    kind: 'vm.nic.link',
    onInterrupt: 'resume',
    async run(_ctx, p) {
      const { row, spec, agent } = await nicVm(deps, p.vmId, 'a link is set');
      if (!spec.nics.some((n) => n.mac === p.mac))
        throw new TernError('not_found', `VM ${row.name} has no NIC ${p.mac}`);
      if (agent) await agent.linkNic(p.vmId, p.mac, p.link);
      const nics = spec.nics.map((n) => {
        if (n.mac !== p.mac) return n;
        const { link: _, ...rest } = n;
        return p.link === 'down' ? { ...rest, link: 'down' as const } : rest;
      });
      await deps.store.update(p.vmId, { spec: JSON.stringify({ ...spec, nics }) });
      return { mac: p.mac, link: p.link };
    },
  };
}
