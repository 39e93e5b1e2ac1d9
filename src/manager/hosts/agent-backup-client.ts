/**
 * The manager's backup calls to one host's agent (src/wire/agent-datastore-routes.ts and the
 * backup, live-restore and backup-file routes): datastores, backing VMs up, restores, verify,
 * garbage collection and offsite copies. `AgentClient.backup` gives one for its host.
 */
import { TernError } from '../../errors.ts';
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
import { type AgentTransport, callAgent, postForBytes } from './agent-transport.ts';
import { followTransfer } from './datastore-transfer.ts';

export class AgentBackupClient {
  readonly transport: AgentTransport;

  constructor(transport: AgentTransport) {
    this.transport = transport;
  }

  /** A directory of a backup disk's filesystem, read by a host that reaches the datastore. */
  async listBackupFiles(req: BackupFilesRequest): Promise<BackupFileListing> {
    return callAgent(this.transport, agentRoutes.listBackupFiles, { body: req }, 120_000);
  }

  /** One file of a backup disk's filesystem: its size and its bytes as they stream from the host. */
  async readBackupFile(
    req: BackupFilesRequest,
  ): Promise<{ bytes: number; body: ReadableStream<Uint8Array> }> {
    const res = await postForBytes(this.transport, agentRoutes.readBackupFile, {}, req, 600_000);
    const bytes = Number(res.headers.get('content-length'));
    if (!res.body || !Number.isSafeInteger(bytes) || bytes < 0)
      throw new TernError('protocol_error', 'the host answered a backup file without its length');
    return { bytes, body: res.body };
  }

  /** Makes a directory the host reaches a datastore (encrypted when `access.key` is set). */
  async createDatastore(access: DatastoreAccess): Promise<DatastoreStatus> {
    return callAgent(this.transport, agentRoutes.createDatastore, { body: { datastore: access } }, 60_000);
  }

  /** Opens a datastore with its key on the host: reachable, the right key, room left. */
  async datastoreStatus(access: DatastoreAccess): Promise<DatastoreStatus> {
    return callAgent(this.transport, agentRoutes.datastoreStatus, { body: { datastore: access } }, 30_000);
  }

  /** The finished backups in a datastore, of one group (a VM) or all, read from their manifests. */
  async listBackups(access: DatastoreAccess, group?: string): Promise<StoredBackup[]> {
    const body = group === undefined ? { datastore: access } : { datastore: access, group };
    return (await callAgent(this.transport, agentRoutes.listBackups, { body }, 120_000)).backups;
  }

  /** Removes a backup from a datastore, finished or not; one not there is done. */
  async forgetBackup(access: DatastoreAccess, group: string, id: string): Promise<void> {
    await callAgent(
      this.transport,
      agentRoutes.forgetBackup,
      { body: { datastore: access, group, id } },
      120_000,
    );
  }

  /** Re-reads the chunks of the given backups on the host, reporting progress; the result names each problem. */
  verifyBackups(
    req: VerifyRequest,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<VerifyResult> {
    return followTransfer(
      this.transport,
      agentRoutes.verifyBackups,
      { body: req },
      'verify',
      onProgress,
      signal,
    );
  }

  /** Garbage collection of a datastore on the host, reporting progress. */
  collectGarbage(
    req: GcRequest,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<GcResult> {
    const body = { body: req };
    return followTransfer(
      this.transport,
      agentRoutes.collectGarbage,
      body,
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
    return followTransfer(
      this.transport,
      agentRoutes.syncDatastore,
      { body: req },
      'the sync',
      onProgress,
      signal,
    );
  }

  /** Writes a backup's disk onto a volume of the host (made by the caller), reporting progress. */
  restoreDisk(
    req: RestoreDiskRequest,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<RestoreDiskResult> {
    return followTransfer(
      this.transport,
      agentRoutes.restoreDisk,
      { body: req },
      'the restore',
      onProgress,
      signal,
    );
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
    const call = { params: { id }, body: req };
    return followTransfer(this.transport, agentRoutes.backupVm, call, 'the backup', onReport, signal);
  }

  /** Live restore: the host serves the backup and makes the VM's volumes overlays on it. */
  async prepareLiveRestore(id: string, req: LiveRestoreRequest): Promise<void> {
    await callAgent(this.transport, agentRoutes.prepareLiveRestore, { params: { id }, body: req }, 120_000);
  }

  /** Live restore, the VM running: streams its restored disks in; resolves with the bytes streamed. */
  async streamLiveRestore(
    id: string,
    disks: number[],
    bytesPerS: number,
    onProgress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<number> {
    const call = { params: { id }, body: { disks, bytesPerS } };
    return followTransfer(
      this.transport,
      agentRoutes.streamLiveRestore,
      call,
      'the live restore',
      onProgress,
      signal,
    ).then((r) => r.streamedBytes);
  }
}
