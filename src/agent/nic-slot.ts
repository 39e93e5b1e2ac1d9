/**
 * Where a NIC hot-plugged into a running VM goes, as every driver decides it: only a NIC on a
 * managed network (the host plugs its port), at its own slot or the lowest free one.
 */
import { TernError } from '../errors.ts';
import { freeNicSlot, type NicSpec, nicSlot } from '../wire/vm.ts';

type ManagedNetwork = Extract<NicSpec['network'], { mode: 'network' }>;

/** The slot, and the managed network whose port the host plugs first. */
export function hotplugSlot(
  spec: { name: string; nics: readonly NicSpec[] },
  nic: NicSpec,
): { slot: number; network: ManagedNetwork } {
  const network = nic.network;
  if (network.mode !== 'network')
    throw new TernError(
      'invalid_request',
      'only a NIC on a managed network can be plugged into a running VM',
    );
  const slot = nic.slot ?? freeNicSlot(spec);
  if (slot === null || spec.nics.some((x, i) => nicSlot(x, i) === slot))
    throw new TernError('conflict', `VM ${spec.name} has no free NIC slot${slot === null ? '' : ` ${slot}`}`);
  return { slot, network };
}
