/**
 * Orphans: what Tern made on a host (a QEMU process, the volumes in a pool's `vms/<id>/`
 * directory) for a VM the inventory does not know. docs/storage.md says how they arise and
 * what adopting and removing one does.
 */
import { type Static, Type } from 'typebox';
import { AgentVmState } from './agent.ts';
import { Name, Uuid } from './common.ts';

/** A pool's `vms/<id>/` directory as a host sees it: the files Tern put there for VM `id`. */
export const VmDir = Type.Object({
  pool: Name,
  id: Uuid,
  files: Type.Array(Type.Object({ path: Type.String(), bytes: Type.Integer({ minimum: 0 }) })),
});
export type VmDir = Static<typeof VmDir>;

export const Orphan = Type.Object({
  id: Uuid,
  host: Type.String({ description: 'the host that reports it' }),
  name: Type.Union([Type.String(), Type.Null()], { description: 'the name its QEMU runs under, if any' }),
  qemu: Type.Union(
    [
      Type.Object({
        state: AgentVmState,
        pid: Type.Union([Type.Integer(), Type.Null()]),
      }),
      Type.Null(),
    ],
    { description: 'the QEMU process (or the record of one) its host keeps for it' },
  ),
  volumes: Type.Array(Type.Object({ pool: Name, path: Type.String(), bytes: Type.Integer({ minimum: 0 }) })),
});
export type Orphan = Static<typeof Orphan>;

export const OrphanAdopted = Type.Object({
  id: Uuid,
  /** `vm`: it is a VM of the inventory again; `kept`: its disks are kept volumes. */
  as: Type.Union([Type.Literal('vm'), Type.Literal('kept')]),
  vm: Type.Union([Type.String(), Type.Null()], { description: 'the VM, when adopted as one' }),
  kept: Type.Array(Type.Object({ pool: Name, path: Type.String() })),
});
export type OrphanAdopted = Static<typeof OrphanAdopted>;
