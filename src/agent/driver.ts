/**
 * The hypervisor driver: the one interface through which an agent runs VMs. Two
 * implementations: `qemu` (real) and `sim` (simulated hosts for scale and fault tests).
 * The agent server and everything above it cannot tell them apart.
 */
import type { EventEmitter } from 'node:events';
import type {
  AgentVm,
  FinishIncomingResult,
  IncomingMigration,
  IncomingMigrationRequest,
  MigrateRequest,
  MigrationReport,
  MoveDiskRequest,
  VmAction,
} from '../wire/agent.ts';
import type {
  BackupVmReport,
  BackupVmRequest,
  BackupVmResult,
  LiveRestoreRequest,
  TransferProgress,
} from '../wire/backup.ts';
import type { GuestExecRequest, GuestExecResult } from '../wire/guest-command.ts';
import type { HostFacts } from '../wire/host.ts';
import type { PortRules } from '../wire/network.ts';
import type { ReplicateVmReport, ReplicateVmRequest, ReplicateVmResult } from '../wire/replication.ts';
import type { DiskSpec, NicSpec, VmSpec, VolumeRef } from '../wire/vm.ts';
import type { HostNetworks } from './network/host-networks.ts';
import type { ReplicaLink } from './replication/replica-link.ts';

export interface DriverEvents {
  vm: [AgentVm];
  gone: [string];
}

export interface HypervisorDriver {
  readonly events: EventEmitter<DriverEvents>;
  /** The host's virtual networks (network/): realized in the kernel, or recorded by the sim. */
  readonly networks: HostNetworks;
  /** Reattaches to VMs that outlived a previous agent process. */
  init(): Promise<void>;
  facts(): Promise<HostFacts>;
  list(): AgentVm[];
  get(id: string): AgentVm | undefined;
  /** The spec a VM's process runs with; undefined for a VM only remembered as stopped. */
  spec(id: string): VmSpec | undefined;
  /** Starts the VM; idempotent for a VM that already runs. */
  run(spec: VmSpec): Promise<AgentVm>;
  act(id: string, action: VmAction): Promise<AgentVm>;
  /** Drops the record of a VM that is not running (after a crash was seen by the manager). */
  forget(id: string): Promise<void>;
  consoleTail(id: string, maxBytes: number): Promise<string>;
  /** Grows disk `index` of a running VM. */
  resizeDisk(id: string, index: number, sizeBytes: number): Promise<void>;
  /** Hot-plugs a disk (at its slot) into a running VM. */
  attachDisk(id: string, disk: DiskSpec): Promise<void>;
  /** Unplugs disk `index` from a running VM. */
  detachDisk(id: string, index: number): Promise<void>;
  /** Hot-plugs a NIC (at its slot, its port plugged first) into a running VM; one it has is done. */
  plugNic(id: string, nic: NicSpec): Promise<void>;
  /** Unplugs the NIC of MAC `mac` from a running VM, then its port; one it has not is done. */
  unplugNic(id: string, mac: string): Promise<void>;
  /** Sets a running VM's NIC link up or down. */
  linkNic(id: string, mac: string, link: 'up' | 'down'): Promise<void>;
  /** Rewrites the security rules of a running VM's NIC on a managed network (its port's chains). */
  setNicRules(id: string, mac: string, rules: PortRules | null): Promise<void>;
  /**
   * Changes the medium in a running VM's CD-ROM drive (null: ejects it); `force` opens a tray
   * the guest has locked. The VM's spec tells what is in the drive afterwards, also on failure.
   */
  changeCdrom(id: string, medium: VolumeRef | null, force: boolean): Promise<void>;
  /** Snapshots every writable disk of a running VM at once. */
  snapshot(id: string, name: string): Promise<{ consistency: 'filesystem-frozen' | 'crash-consistent' }>;
  deleteSnapshot(id: string, name: string): Promise<void>;
  /**
   * Target side of a migration: starts the VM waiting for its state (paused, never running
   * before `finishIncoming`), with NBD exports of fresh disks when storage is mirrored.
   */
  prepareIncoming(req: IncomingMigrationRequest): Promise<IncomingMigration>;
  /** Target side: the state has arrived; run the guest. */
  finishIncoming(id: string): Promise<FinishIncomingResult>;
  /** Target side: the migration failed; kill the waiting VM and remove what was made for it. */
  abortIncoming(id: string): Promise<void>;
  /**
   * Source side: sends the VM. Resolves with the `done` report once the state is on the target
   * and the source's copy is stopped for good; on failure or abort the VM keeps running here.
   */
  migrate(
    id: string,
    req: MigrateRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<MigrationReport & { type: 'done' }>;
  /** Source side after the target runs the VM: ends the stopped copy and forgets the VM. */
  releaseMigrated(id: string): Promise<void>;
  /** Moves a running VM's disk to another volume on this host (block mirror, then switch). */
  moveDisk(
    id: string,
    req: MoveDiskRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<void>;
  /**
   * Backs a VM (running here, or stopped with its volumes on this host) up into a datastore:
   * a point-in-time view of its disks, read whole or only where its dirty bitmap says they
   * changed since `req.previous` (src/agent/backup/). Reports progress and log lines as it
   * goes; aborting `signal` stops it, leaving no backup and the bitmaps as they were.
   */
  backupVm(
    id: string,
    req: BackupVmRequest,
    report: (r: BackupVmReport) => void,
    signal: AbortSignal,
  ): Promise<BackupVmResult>;
  /**
   * Replicates a VM (running here, or stopped with its volumes on this host) as recovery point
   * `req.point`: the same view backup takes, with the replication's bitmaps, streamed through
   * `link` (this host's own certificate: the driver does not hold it) to the replica's host
   * (src/agent/replication/sender.ts). Reports progress and log lines; aborting `signal` stops
   * it, the replica's host committing nothing and the bitmaps kept for the next cycle.
   */
  replicateVm(
    id: string,
    req: ReplicateVmRequest,
    link: ReplicaLink,
    report: (r: ReplicateVmReport) => void,
    signal: AbortSignal,
  ): Promise<ReplicateVmResult>;
  /**
   * Live restore (backup/live-restore.ts): serves a backup's disks for VM `id` and makes its
   * target volumes overlays on them, so the VM can start before its data is here. Idempotent.
   */
  prepareLiveRestore(id: string, req: LiveRestoreRequest): Promise<void>;
  /**
   * Live restore, the VM running: streams disks `indexes` in from the backup underneath the
   * guest, then stops serving the backup. Resolves with the bytes streamed.
   */
  streamLiveRestore(
    id: string,
    indexes: readonly number[],
    /** Each disk's stream at most this fast (0: no limit), so the guest's own reads keep a share. */
    bytesPerS: number,
    progress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<number>;
  /** Runs a command inside a running VM's guest, through its guest agent (qemu/guest-exec.ts). */
  guestExec(id: string, req: GuestExecRequest): Promise<GuestExecResult>;
  /** Reads a file of a running VM's guest, refusing one larger than `maxBytes`. */
  guestFileRead(id: string, path: string, maxBytes?: number): Promise<Buffer>;
  close(): Promise<void>;
}
