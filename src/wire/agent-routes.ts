/**
 * Every route of the agent protocol, declared once (docs/agent-protocol.md describes them).
 * The agent registers one handler per declaration (src/agent/server.ts) and the manager's
 * AgentClient builds its requests from the same declarations (src/manager/hosts/agent-client.ts).
 */
import { Type } from 'typebox';
import {
  AgentEvent,
  AgentInfo,
  AgentVm,
  AgentVmList,
  ChangeCdromRequest,
  CreateSeedRequest,
  CreateVolumeRequest,
  FinishIncomingResult,
  ImportVolumeRequest,
  IncomingMigration,
  IncomingMigrationRequest,
  MigrateRequest,
  MigrationReport,
  MoveDiskRequest,
  ResizeVolumeRequest,
  SnapshotName,
  VmAction,
  VolumeInfo,
  VolumeSnapshotRequest,
} from './agent.ts';
import { agentBackupFilesRoutes } from './agent-backup-files-routes.ts';
import { agentBackupRoutes } from './agent-backup-routes.ts';
import { agentDatastoreRoutes } from './agent-datastore-routes.ts';
import { agentLiveRestoreRoutes } from './agent-live-restore-routes.ts';
import { agentNetworkRoutes } from './agent-network-routes.ts';
import { agentReplicaRoutes } from './agent-replica-routes.ts';
import { agentReplicateRoutes } from './agent-replicate-routes.ts';
import { IdParams, Ok, tags } from './agent-route-parts.ts';
import { Uuid } from './common.ts';
import { GuestExecRequest, GuestExecResult, GuestFileReadRequest } from './guest-command.ts';
import { maxStatefileSlots, SlotState } from './ha.ts';
import { ImportEvent, ImportImageRequest, UploadQuery, UploadResult, VolumeDigest } from './image.ts';
import { VmDir } from './orphan.ts';
import { route } from './route.ts';
import { DiskSpec, VmSpec, VolumeRef } from './vm.ts';

const DiskParams = Type.Object({ id: Uuid, index: Type.Integer({ minimum: 0, maximum: 15 }) });
const OneVm = Type.Object({ vm: AgentVm });
const OneVolume = Type.Object({ volume: VolumeInfo });
const ndjson = {
  contentType: 'application/x-ndjson',
  description: 'newline-delimited JSON, one line each as `lines` declares',
};
const octets = { contentType: 'application/octet-stream', description: 'the bytes, as they are' };

export const agentRoutes = {
  // The host and its VMs.
  info: route({
    summary: "The protocol, the agent's version and the host's facts",
    tags,
    method: 'GET',
    path: '/agent/v1/info',
    reply: { 200: AgentInfo },
  }),
  listVms: route({
    summary: 'Every VM the host knows',
    tags,
    method: 'GET',
    path: '/agent/v1/vms',
    reply: { 200: AgentVmList },
  }),
  getVm: route({
    summary: 'One VM as the host sees it',
    tags,
    method: 'GET',
    path: '/agent/v1/vms/:id',
    params: IdParams,
    reply: { 200: OneVm },
  }),
  vmSpec: route({
    summary: 'The spec a VM runs with (how an orphan joins the inventory again)',
    tags,
    method: 'GET',
    path: '/agent/v1/vms/:id/spec',
    params: IdParams,
    reply: { 200: Type.Object({ spec: VmSpec }) },
  }),
  runVm: route({
    summary: 'Run the VM the spec describes; idempotent',
    tags,
    method: 'PUT',
    path: '/agent/v1/vms/:id',
    params: IdParams,
    body: VmSpec,
    reply: { 200: OneVm },
  }),
  act: route({
    summary: 'A power action on a VM',
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/actions/:action',
    params: Type.Object({ id: Uuid, action: VmAction }),
    reply: { 200: OneVm },
  }),
  forgetVm: route({
    summary: "Forget a crashed or stopped VM's record",
    tags,
    method: 'DELETE',
    path: '/agent/v1/vms/:id',
    params: IdParams,
    reply: { 204: Type.Null() },
  }),
  console: route({
    summary: 'The tail of the serial console log',
    tags,
    method: 'GET',
    path: '/agent/v1/vms/:id/console',
    params: IdParams,
    query: Type.Object({ bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 * 1024 })) }),
    reply: { 200: Type.Object({ text: Type.String() }) },
  }),
  events: route({
    summary: 'The event stream: a hello, every VM change, heartbeats',
    tags,
    method: 'GET',
    path: '/agent/v1/events',
    reply: {},
    rawReply: ndjson,
    lines: AgentEvent,
  }),
  // The manager reads the HA statefile through any host that sees it.
  readStatefile: route({
    summary: "The HA statefile's first slots, as this host reads them",
    tags,
    method: 'GET',
    path: '/agent/v1/ha/statefile',
    query: Type.Object(
      {
        pool: Type.String({ maxLength: 63 }),
        path: VolumeRef.properties.path,
        slots: Type.Integer({ minimum: 1, maximum: maxStatefileSlots }),
      },
      { additionalProperties: false },
    ),
    reply: { 200: Type.Object({ slots: Type.Array(SlotState) }) },
  }),

  // A running VM's devices, snapshots and guest.
  attachDisk: route({
    summary: 'Hot-plug a disk into a running VM',
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/disks',
    params: IdParams,
    body: DiskSpec,
    reply: { 200: Ok },
  }),
  detachDisk: route({
    summary: 'Hot-unplug a disk the guest released',
    tags,
    method: 'DELETE',
    path: '/agent/v1/vms/:id/disks/:index',
    params: DiskParams,
    reply: { 204: Type.Null() },
  }),
  resizeDisk: route({
    summary: "Grow a running VM's disk",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/disks/:index/resize',
    params: DiskParams,
    body: Type.Object({ sizeBytes: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
    reply: { 200: Ok },
  }),
  changeCdrom: route({
    summary: "Change the medium in a running VM's CD-ROM",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/cdrom',
    params: IdParams,
    body: ChangeCdromRequest,
    reply: { 200: Ok },
  }),
  snapshotVm: route({
    summary: 'Snapshot every writable disk of a running VM at once',
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/snapshots',
    params: IdParams,
    body: Type.Object({ name: SnapshotName }, { additionalProperties: false }),
    reply: {
      200: Type.Object({
        consistency: Type.Union([Type.Literal('filesystem-frozen'), Type.Literal('crash-consistent')]),
      }),
    },
  }),
  deleteVmSnapshot: route({
    summary: "Delete a snapshot from a running VM's disks",
    tags,
    method: 'DELETE',
    path: '/agent/v1/vms/:id/snapshots/:name',
    params: Type.Object({ id: Uuid, name: SnapshotName }),
    reply: { 204: Type.Null() },
  }),
  // A command's standard input may be 1 MiB, in base64.
  guestExec: route({
    summary: "Run a command in a running VM's guest",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/guest/exec',
    params: IdParams,
    body: GuestExecRequest,
    bodyLimit: 2 * 1024 * 1024,
    reply: { 200: GuestExecResult },
  }),
  guestFileRead: route({
    summary: "Read a file of a running VM's guest",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/guest/file-read',
    params: IdParams,
    body: GuestFileReadRequest,
    reply: {},
    rawReply: octets,
  }),

  // Volumes in the host's pools.
  createVolume: route({
    summary: 'Create a volume',
    tags,
    method: 'POST',
    path: '/agent/v1/volumes',
    body: CreateVolumeRequest,
    reply: { 200: OneVolume },
  }),
  deleteVolume: route({
    summary: 'Remove a volume; removing what is not there is done',
    tags,
    method: 'DELETE',
    path: '/agent/v1/volumes',
    query: VolumeRef,
    reply: { 204: Type.Null() },
  }),
  createSeed: route({
    summary: 'Write a cloud-init NoCloud seed ISO',
    tags,
    method: 'POST',
    path: '/agent/v1/volumes/seed',
    body: CreateSeedRequest,
    reply: { 200: OneVolume },
  }),
  importVolume: route({
    summary: 'Copy a host file into a pool',
    tags,
    method: 'POST',
    path: '/agent/v1/volumes/import',
    body: ImportVolumeRequest,
    reply: { 200: OneVolume },
  }),
  volumeInfo: route({
    summary: "A volume's format, sizes and backing file",
    tags,
    method: 'GET',
    path: '/agent/v1/volumes/info',
    query: VolumeRef,
    reply: { 200: OneVolume },
  }),
  resizeVolume: route({
    summary: 'Grow a volume no VM runs on',
    tags,
    method: 'POST',
    path: '/agent/v1/volumes/resize',
    body: ResizeVolumeRequest,
    reply: { 200: OneVolume },
  }),
  volumeSnapshot: route({
    summary: 'Create, apply or delete a snapshot of a volume no VM runs on',
    tags,
    method: 'POST',
    path: '/agent/v1/volumes/snapshots',
    body: VolumeSnapshotRequest,
    reply: { 200: OneVolume },
  }),
  vmDirs: route({
    summary: "Every pool's vms/<id>/ directories, with their files",
    tags,
    method: 'GET',
    path: '/agent/v1/volumes/vm-dirs',
    reply: { 200: Type.Object({ dirs: Type.Array(VmDir) }) },
  }),

  // Library images: uploads, imports and the stored files.
  upload: route({
    summary: 'Stream a file into a staging file of a pool',
    tags,
    method: 'PUT',
    path: '/agent/v1/uploads',
    query: UploadQuery,
    rawBody: octets,
    reply: { 200: UploadResult },
  }),
  importImage: route({
    summary: 'Import a disk image or ISO into the library, answering its progress',
    tags,
    method: 'POST',
    path: '/agent/v1/images/import',
    body: ImportImageRequest,
    reply: {},
    rawReply: ndjson,
    lines: ImportEvent,
  }),
  imageDigest: route({
    summary: "Re-hash a library image's stored file",
    tags,
    method: 'GET',
    path: '/agent/v1/images/digest',
    query: UploadQuery,
    reply: { 200: VolumeDigest },
  }),
  imageContent: route({
    summary: "A library image's stored file, streamed",
    tags,
    method: 'GET',
    path: '/agent/v1/images/content',
    query: UploadQuery,
    reply: {},
    rawReply: octets,
  }),

  // Virtual networks and a running VM's NICs on them (agent-network-routes.ts).
  ...agentNetworkRoutes,
  // Backup datastores the host reaches (agent-datastore-routes.ts).
  ...agentDatastoreRoutes,

  // Backing a VM up into a datastore (agent-backup-routes.ts).
  ...agentBackupRoutes,
  ...agentReplicateRoutes,
  ...agentLiveRestoreRoutes,
  ...agentBackupFilesRoutes,
  // Replicas held on this host and the streams that feed them (agent-replica-routes.ts).
  ...agentReplicaRoutes,

  // Migration (docs/agent-protocol.md, "Migration") and storage migration.
  prepareIncoming: route({
    summary: 'Migration target: start the VM waiting for its state',
    tags,
    method: 'POST',
    path: '/agent/v1/migrations/incoming',
    body: IncomingMigrationRequest,
    reply: { 200: IncomingMigration },
  }),
  finishIncoming: route({
    summary: 'Migration target: wait for the state, then run the guest',
    tags,
    method: 'POST',
    path: '/agent/v1/migrations/incoming/:id/finish',
    params: IdParams,
    reply: { 200: FinishIncomingResult },
  }),
  abortIncoming: route({
    summary: 'Migration target: end the waiting VM and remove what was made for it',
    tags,
    method: 'DELETE',
    path: '/agent/v1/migrations/incoming/:id',
    params: IdParams,
    reply: { 204: Type.Null() },
  }),
  migrate: route({
    summary: 'Migration source: send the VM, answering its progress',
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/migrate',
    params: IdParams,
    body: MigrateRequest,
    reply: {},
    rawReply: ndjson,
    lines: MigrationReport,
  }),
  releaseMigrated: route({
    summary: 'Migration source: end the copy that migrated away',
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/release',
    params: IdParams,
    reply: { 204: Type.Null() },
  }),
  moveDisk: route({
    summary: "Move a running VM's disk to a new volume on the host, answering progress",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/disks/move',
    params: IdParams,
    body: MoveDiskRequest,
    reply: {},
    rawReply: ndjson,
    lines: MigrationReport,
  }),
};

export type AgentRoutes = typeof agentRoutes;
