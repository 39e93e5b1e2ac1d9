/**
 * The manager's side of the agent protocol: typed calls to one host's agent, and a
 * self-reconnecting subscription to its event stream.
 */

import { TernError } from '../../errors.ts';
import type { SlotState } from '../../ha/statefile.ts';
import { requestJson } from '../../http/json-client.ts';
import {
  type AgentEvent,
  type AgentInfo,
  type AgentVm,
  agentProtocolVersion,
  type ChangeCdromRequest,
  type CreateSeedRequest,
  type CreateVolumeRequest,
  type FinishIncomingResult,
  type ImportVolumeRequest,
  type IncomingMigration,
  type IncomingMigrationRequest,
  type MigrateRequest,
  type MigrationReport,
  type MoveDiskRequest,
  protocolHeader,
  type ResizeVolumeRequest,
  type VmAction,
  type VolumeInfo,
  type VolumeSnapshotRequest,
} from '../../wire/agent.ts';
import { agentRoutes } from '../../wire/agent-routes.ts';
import type {
  BackupFileListing,
  BackupFilesRequest,
  BackupVmReport,
  BackupVmRequest,
  BackupVmResult,
  DatastoreAccess,
  DatastoreStatus,
  GcRequest,
  GcResult,
  LiveRestoreRequest,
  RestoreDiskRequest,
  RestoreDiskResult,
  StoredBackup,
  SyncDatastoreRequest,
  SyncDatastoreResult,
  TransferProgress,
  VerifyRequest,
  VerifyResult,
} from '../../wire/backup.ts';
import type { GuestExecRequest, GuestExecResult, GuestFileReadRequest } from '../../wire/guest-command.ts';
import type { ImportedImage, ImportImageRequest, UploadResult, VolumeDigest } from '../../wire/image.ts';
import type { HostNetworkSpec, HostNetworkState, PortRules } from '../../wire/network.ts';
import type { VmDir } from '../../wire/orphan.ts';
import { type CallOf, pathOf, type ReplyOf, type Route } from '../../wire/route.ts';
import type { DiskSpec, NicSpec, VmSpec, VolumeRef } from '../../wire/vm.ts';
import { followRoute } from './agent-stream.ts';
import { type AgentTransport, agentUnreachable, checkedReply, errorOf } from './agent-transport.ts';
import { followTransfer } from './datastore-transfer.ts';
import {
  digestOnAgent,
  downloadFromAgent,
  type ImportProgress,
  importOnAgent,
  uploadToAgent,
} from './image-transfer.ts';
import { followOnAgent, type MigrationDone } from './migration-transfer.ts';

export class AgentClient {
  readonly url: string;
  readonly #fetch: AgentTransport['fetch'];

  constructor(url: string, fetchFn: AgentTransport['fetch']) {
    this.url = url.replace(/\/$/, '');
    this.#fetch = fetchFn;
  }

  get transport(): AgentTransport {
    return { url: this.url, fetch: this.#fetch, headers: this.#headers() };
  }

  /** One request on a plain route of the agent protocol; the answer is checked against its schema. */
  async #call<R extends Route>(r: R, req: CallOf<R>, timeoutMs = 60_000): Promise<ReplyOf<R>> {
    // CallOf is an intersection that holds only what the route declares.
    const { params, query, body } = req as {
      params?: Record<string, unknown>;
      query?: Record<string, unknown>;
      body?: unknown;
    };
    const answer = await requestJson<unknown>(`${this.url}${pathOf(r, params, query)}`, {
      method: r.method,
      headers: this.#headers(),
      body,
      fetch: this.#fetch,
      timeoutMs,
      unreachable: (why) => `host agent at ${this.url} unreachable: ${why}`,
      peer: 'host agent',
    });
    return checkedReply(this.url, r, answer);
  }

  /** A plain route's answer, or null when the agent says the thing asked for is not there. */
  async #find<R extends Route>(r: R, req: CallOf<R>, timeoutMs?: number): Promise<ReplyOf<R> | null> {
    try {
      return await this.#call(r, req, timeoutMs);
    } catch (err) {
      if (err instanceof TernError && err.code === 'not_found') return null;
      throw err;
    }
  }

  async info(): Promise<AgentInfo> {
    const info = await this.#call(agentRoutes.info, {}, 10_000);
    if (info.protocol !== agentProtocolVersion) {
      throw new TernError(
        'protocol_error',
        `host speaks agent protocol ${info.protocol}, this manager ${agentProtocolVersion}`,
      );
    }
    return info;
  }

  async listVms(): Promise<AgentVm[]> {
    return (await this.#call(agentRoutes.listVms, {}, 15_000)).vms;
  }

  async getVm(id: string): Promise<AgentVm | null> {
    return (await this.#find(agentRoutes.getVm, { params: { id } }, 10_000))?.vm ?? null;
  }

  /** The spec a VM runs with on this host; null when no process of it runs here. */
  async vmSpec(id: string): Promise<VmSpec | null> {
    return (await this.#find(agentRoutes.vmSpec, { params: { id } }, 10_000))?.spec ?? null;
  }

  /** The `vms/<id>/` directories of the host's pools. */
  async vmDirs(): Promise<VmDir[]> {
    return (await this.#call(agentRoutes.vmDirs, {}, 30_000)).dirs;
  }

  async runVm(spec: VmSpec): Promise<AgentVm> {
    return (await this.#call(agentRoutes.runVm, { params: { id: spec.id }, body: spec }, 90_000)).vm;
  }

  async act(id: string, action: VmAction): Promise<AgentVm> {
    return (await this.#call(agentRoutes.act, { params: { id, action } }, 30_000)).vm;
  }

  async forgetVm(id: string): Promise<void> {
    await this.#call(agentRoutes.forgetVm, { params: { id } });
  }

  async console(id: string, bytes: number): Promise<string> {
    return (await this.#call(agentRoutes.console, { params: { id }, query: { bytes } })).text;
  }

  async createVolume(req: CreateVolumeRequest): Promise<VolumeInfo> {
    return (await this.#call(agentRoutes.createVolume, { body: req })).volume;
  }

  async createSeed(req: CreateSeedRequest): Promise<VolumeInfo> {
    return (await this.#call(agentRoutes.createSeed, { body: req })).volume;
  }

  async importVolume(req: ImportVolumeRequest): Promise<VolumeInfo> {
    return (await this.#call(agentRoutes.importVolume, { body: req }, 600_000)).volume;
  }

  async volumeInfo(ref: VolumeRef): Promise<VolumeInfo | null> {
    return (await this.#find(agentRoutes.volumeInfo, { query: ref }))?.volume ?? null;
  }

  async resizeVolume(req: ResizeVolumeRequest): Promise<VolumeInfo> {
    return (await this.#call(agentRoutes.resizeVolume, { body: req })).volume;
  }

  async volumeSnapshot(req: VolumeSnapshotRequest): Promise<VolumeInfo> {
    return (await this.#call(agentRoutes.volumeSnapshot, { body: req }, 300_000)).volume;
  }

  async resizeDisk(id: string, index: number, sizeBytes: number): Promise<void> {
    await this.#call(agentRoutes.resizeDisk, { params: { id, index }, body: { sizeBytes } });
  }

  async attachDisk(id: string, disk: DiskSpec): Promise<void> {
    await this.#call(agentRoutes.attachDisk, { params: { id }, body: disk });
  }

  async plugNic(id: string, nic: NicSpec): Promise<void> {
    await this.#call(agentRoutes.plugNic, { params: { id }, body: nic });
  }

  /** Waits for the guest to release the NIC (up to a minute on the host). */
  async unplugNic(id: string, mac: string): Promise<void> {
    await this.#call(agentRoutes.unplugNic, { params: { id, mac } }, 90_000);
  }

  async linkNic(id: string, mac: string, link: 'up' | 'down'): Promise<void> {
    await this.#call(agentRoutes.linkNic, { params: { id, mac }, body: { link } });
  }

  async setNicRules(id: string, mac: string, rules: PortRules | null): Promise<void> {
    await this.#call(agentRoutes.setNicRules, { params: { id, mac }, body: { rules } });
  }

  async changeCdrom(id: string, req: ChangeCdromRequest): Promise<void> {
    await this.#call(agentRoutes.changeCdrom, { params: { id }, body: req });
  }

  async detachDisk(id: string, index: number): Promise<void> {
    await this.#call(agentRoutes.detachDisk, { params: { id, index } }, 90_000);
  }

  async snapshotVm(id: string, name: string): Promise<{ consistency: string }> {
    return this.#call(agentRoutes.snapshotVm, { params: { id }, body: { name } }, 300_000);
  }

  async deleteVmSnapshot(id: string, name: string): Promise<void> {
    await this.#call(agentRoutes.deleteVmSnapshot, { params: { id, name } }, 300_000);
  }

  /**
   * Runs a command in a running VM's guest through its guest agent and waits for it to end
   * (at most its timeout, plus the time to reach the guest agent).
   */
  async guestExec(id: string, req: GuestExecRequest): Promise<GuestExecResult> {
    const timeoutMs = (req.timeoutSeconds ?? 30) * 1000 + 30_000;
    return this.#call(agentRoutes.guestExec, { params: { id }, body: req }, timeoutMs);
  }

  /** Reads a file of a running VM's guest, whole (the agent refuses one beyond `maxBytes`). */
  async guestFileRead(id: string, req: GuestFileReadRequest): Promise<Buffer> {
    const url = `${this.url}${pathOf(agentRoutes.guestFileRead, { id })}`;
    let res: Response;
    try {
      res = await this.#fetch(url, {
        method: agentRoutes.guestFileRead.method,
        headers: { ...this.#headers(), 'content-type': 'application/json' },
        body: JSON.stringify(req),
        signal: AbortSignal.timeout(300_000),
      });
      if (!res.ok) throw await errorOf(res, 'host agent');
      return Buffer.from(await res.arrayBuffer());
    } catch (err) {
      throw agentUnreachable(this.url, err);
    }
  }

  /** A directory of a backup disk's filesystem, read by a host that reaches the datastore. */
  async listBackupFiles(req: BackupFilesRequest): Promise<BackupFileListing> {
    return this.#call(agentRoutes.listBackupFiles, { body: req }, 120_000);
  }

  /** One file of a backup disk's filesystem: its size and its bytes as they stream from the host. */
  async readBackupFile(
    req: BackupFilesRequest,
  ): Promise<{ bytes: number; body: ReadableStream<Uint8Array> }> {
    const url = `${this.url}${pathOf(agentRoutes.readBackupFile, {})}`;
    try {
      const res = await this.#fetch(url, {
        method: agentRoutes.readBackupFile.method,
        headers: { ...this.#headers(), 'content-type': 'application/json' },
        body: JSON.stringify(req),
        signal: AbortSignal.timeout(600_000),
      });
      if (!res.ok) throw await errorOf(res, 'host agent');
      const bytes = Number(res.headers.get('content-length'));
      if (!res.body || !Number.isSafeInteger(bytes) || bytes < 0)
        throw new TernError('protocol_error', 'the host answered a backup file without its length');
      return { bytes, body: res.body };
    } catch (err) {
      throw agentUnreachable(this.url, err);
    }
  }

  /** The HA statefile's first `slots` slots, as this host reads them from shared storage. */
  async readStatefile(ref: VolumeRef, slots: number, timeoutMs: number): Promise<SlotState[]> {
    return (await this.#call(agentRoutes.readStatefile, { query: { ...ref, slots } }, timeoutMs)).slots;
  }

  async deleteVolume(ref: VolumeRef): Promise<void> {
    await this.#call(agentRoutes.deleteVolume, { query: ref });
  }

  /** The networks the host realized or failed to (its kernel's capabilities are in its facts' doctor). */
  async listNetworks(): Promise<HostNetworkState[]> {
    return (await this.#call(agentRoutes.listNetworks, {}, 15_000)).networks;
  }

  async putNetwork(spec: HostNetworkSpec): Promise<HostNetworkState> {
    return (await this.#call(agentRoutes.putNetwork, { params: { id: spec.id }, body: spec }, 60_000))
      .network;
  }

  async deleteNetwork(id: string): Promise<void> {
    await this.#call(agentRoutes.deleteNetwork, { params: { id } }, 60_000);
  }

  /** Streams `length` bytes into a staging file (`uploads/…`) of a pool on the host. */
  upload(
    ref: VolumeRef,
    body: ReadableStream<Uint8Array>,
    length: number,
    signal?: AbortSignal,
  ): Promise<UploadResult> {
    return uploadToAgent(this.transport, ref, body, length, signal);
  }

  /** Streams a library image's stored file back from the host. */
  download(
    ref: VolumeRef,
    signal?: AbortSignal,
  ): Promise<{ body: ReadableStream<Uint8Array>; length: number }> {
    return downloadFromAgent(this.transport, ref, signal);
  }

  /** Re-hashes a library image's stored file on the host. */
  imageDigest(ref: VolumeRef, signal?: AbortSignal): Promise<VolumeDigest> {
    return digestOnAgent(this.transport, ref, signal);
  }

  /** Makes a directory the host reaches a datastore (encrypted when `access.key` is set). */
  async createDatastore(access: DatastoreAccess): Promise<DatastoreStatus> {
    return this.#call(agentRoutes.createDatastore, { body: { datastore: access } }, 60_000);
  }

  /** Opens a datastore with its key on the host: reachable, the right key, room left. */
  async datastoreStatus(access: DatastoreAccess): Promise<DatastoreStatus> {
    return this.#call(agentRoutes.datastoreStatus, { body: { datastore: access } }, 30_000);
  }

  /** The finished backups in a datastore, of one group (a VM) or all, read from their manifests. */
  async listBackups(access: DatastoreAccess, group?: string): Promise<StoredBackup[]> {
    const body = group === undefined ? { datastore: access } : { datastore: access, group };
    return (await this.#call(agentRoutes.listBackups, { body }, 120_000)).backups;
  }

  /** Removes a backup from a datastore, finished or not; one not there is done. */
  async forgetBackup(access: DatastoreAccess, group: string, id: string): Promise<void> {
    await this.#call(agentRoutes.forgetBackup, { body: { datastore: access, group, id } }, 120_000);
  }

  /** Re-reads the chunks of the given backups on the host, reporting progress; the result names each problem. */
  verifyBackups(
    req: VerifyRequest,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<VerifyResult> {
    return followTransfer(this.transport, agentRoutes.verifyBackups, req, 'verify', onProgress, signal);
  }

  /** Garbage collection of a datastore on the host, reporting progress. */
  collectGarbage(
    req: GcRequest,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<GcResult> {
    return followTransfer(
      this.transport,
      agentRoutes.collectGarbage,
      req,
      'garbage collection',
      onProgress,
      signal,
    );
  }

  /** Copies the backups of one datastore not yet in another there (an offsite copy), reporting progress. */
  syncDatastore(
    req: SyncDatastoreRequest,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<SyncDatastoreResult> {
    return followTransfer(this.transport, agentRoutes.syncDatastore, req, 'the sync', onProgress, signal);
  }

  /** Writes a backup's disk onto a volume of the host (made by the caller), reporting progress. */
  restoreDisk(
    req: RestoreDiskRequest,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<RestoreDiskResult> {
    return followTransfer(this.transport, agentRoutes.restoreDisk, req, 'the restore', onProgress, signal);
  }

  /** Migration target: start the VM waiting for its state (docs/agent-protocol.md, "Migration"). */
  async prepareIncoming(req: IncomingMigrationRequest): Promise<IncomingMigration> {
    // Creating empty volumes and starting QEMU: well within a few minutes even on slow storage.
    return this.#call(agentRoutes.prepareIncoming, { body: req }, 300_000);
  }

  /** Migration target: the state arrived (or arrives now); run the guest. */
  async finishIncoming(id: string): Promise<FinishIncomingResult> {
    return this.#call(agentRoutes.finishIncoming, { params: { id } }, 660_000);
  }

  /** Migration target: end the waiting VM and remove what was made for it; idempotent. */
  async abortIncoming(id: string): Promise<void> {
    await this.#call(agentRoutes.abortIncoming, { params: { id } }, 120_000);
  }

  /**
   * Migration source: sends the VM, reporting progress; resolves with the `done` report, or
   * throws the agent's error. Aborting `signal` cancels the migration (the VM stays here).
   */
  migrate(
    id: string,
    req: MigrateRequest,
    onReport: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<MigrationDone> {
    return followOnAgent(this.transport, agentRoutes.migrate, id, req, onReport, signal);
  }

  /** Migration source, once the target runs the VM: end the stopped copy and forget it. */
  async releaseMigrated(id: string): Promise<void> {
    await this.#call(agentRoutes.releaseMigrated, { params: { id } }, 60_000);
  }

  /** Moves a running VM's disk to a new volume on its host, reporting progress. */
  moveDisk(
    id: string,
    req: MoveDiskRequest,
    onReport: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<MigrationDone> {
    return followOnAgent(this.transport, agentRoutes.moveDisk, id, req, onReport, signal);
  }

  /**
   * Backs a VM up into a datastore on its host (running, or stopped with its volumes there),
   * handing each progress and log line to `onReport`; resolves with the result, or throws the
   * agent's error. Aborting `signal` cancels it: no backup is left.
   */
  backupVm(
    id: string,
    req: BackupVmRequest,
    onReport: (r: BackupVmReport) => void,
    signal: AbortSignal,
  ): Promise<BackupVmResult> {
    // The agent repeats its progress at least every few seconds, also while it waits.
    const stream = { maxLine: 64 * 1024, silenceMs: 30_000, signal, during: 'the backup' };
    return followRoute(this.transport, agentRoutes.backupVm, { params: { id }, body: req }, stream, (r) => {
      if (r.type === 'error')
        throw TernError.fromBody(
          { error: { code: r.code, message: r.message, details: r.details } },
          'the backup failed on the host',
        );
      if (r.type === 'done') return r.result;
      onReport(r);
      return undefined;
    });
  }

  /** Live restore: the host serves the backup and makes the VM's volumes overlays on it. */
  async prepareLiveRestore(id: string, req: LiveRestoreRequest): Promise<void> {
    await this.#call(agentRoutes.prepareLiveRestore, { params: { id }, body: req }, 120_000);
  }

  /** Live restore, the VM running: streams its restored disks in; resolves with the bytes streamed. */
  streamLiveRestore(
    id: string,
    disks: number[],
    bytesPerS: number,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<number> {
    const stream = { maxLine: 64 * 1024, silenceMs: 30_000, signal, during: 'the live restore' };
    const body = { disks, bytesPerS };
    return followRoute(
      this.transport,
      agentRoutes.streamLiveRestore,
      { params: { id }, body },
      stream,
      (r) => {
        if (r.type === 'error')
          throw TernError.fromBody(
            { error: { code: r.code, message: r.message, details: r.details } },
            'the live restore failed on the host',
          );
        if (r.type === 'done') return r.result.streamedBytes;
        onProgress(r);
        return undefined;
      },
    );
  }

  /** Imports a disk image or ISO into a pool; as long as it takes, with progress. */
  importImage(req: ImportImageRequest, progress: ImportProgress): Promise<ImportedImage> {
    return importOnAgent(this.transport, req, progress);
  }

  #headers(): Record<string, string> {
    return { [protocolHeader]: String(agentProtocolVersion) };
  }

  /**
   * Follows the agent's event stream until `signal` aborts, reconnecting with backoff. A
   * stream silent for longer than three agent heartbeats counts as dead.
   */
  async follow(
    onEvent: (e: AgentEvent) => void,
    onConnection: (up: boolean, why?: string) => void,
    signal: AbortSignal,
  ): Promise<void> {
    let backoff = 250;
    const stream = { maxLine: 4 * 1024 * 1024, silenceMs: 16_000, signal, during: 'the event stream' };
    while (!signal.aborted) {
      try {
        await followRoute(this.transport, agentRoutes.events, {}, stream, (event) => {
          if (event.type === 'hello') {
            backoff = 250;
            onConnection(true);
          }
          onEvent(event);
          return undefined;
        });
      } catch (err) {
        if (signal.aborted) break;
        onConnection(false, (err as Error).message);
      }
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}
