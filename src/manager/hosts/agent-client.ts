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
import type { GuestExecRequest, GuestExecResult, GuestFileReadRequest } from '../../wire/guest-command.ts';
import type { ImportedImage, ImportImageRequest, UploadResult, VolumeDigest } from '../../wire/image.ts';
import type { VmDir } from '../../wire/orphan.ts';
import type { DiskSpec, VmSpec, VolumeRef } from '../../wire/vm.ts';
import { followAgentStream } from './agent-stream.ts';
import { type AgentTransport, errorOf } from './agent-transport.ts';
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

  #call<T>(method: string, path: string, body?: unknown, timeoutMs = 60_000): Promise<T> {
    return requestJson<T>(`${this.url}${path}`, {
      method,
      headers: this.#headers(),
      body,
      fetch: this.#fetch,
      timeoutMs,
      unreachable: (why) => `host agent at ${this.url} unreachable: ${why}`,
      peer: 'host agent',
    });
  }

  async info(): Promise<AgentInfo> {
    const info = await this.#call<AgentInfo>('GET', '/agent/v1/info', undefined, 10_000);
    if (info.protocol !== agentProtocolVersion) {
      throw new TernError(
        'protocol_error',
        `host speaks agent protocol ${info.protocol}, this manager ${agentProtocolVersion}`,
      );
    }
    return info;
  }

  async listVms(): Promise<AgentVm[]> {
    return (await this.#call<{ vms: AgentVm[] }>('GET', '/agent/v1/vms', undefined, 15_000)).vms;
  }

  async getVm(id: string): Promise<AgentVm | null> {
    try {
      return (await this.#call<{ vm: AgentVm }>('GET', `/agent/v1/vms/${id}`, undefined, 10_000)).vm;
    } catch (err) {
      if (err instanceof TernError && err.code === 'not_found') return null;
      throw err;
    }
  }

  /** The spec a VM runs with on this host; null when no process of it runs here. */
  async vmSpec(id: string): Promise<VmSpec | null> {
    try {
      return (await this.#call<{ spec: VmSpec }>('GET', `/agent/v1/vms/${id}/spec`, undefined, 10_000)).spec;
    } catch (err) {
      if (err instanceof TernError && err.code === 'not_found') return null;
      throw err;
    }
  }

  /** The `vms/<id>/` directories of the host's pools. */
  async vmDirs(): Promise<VmDir[]> {
    return (await this.#call<{ dirs: VmDir[] }>('GET', '/agent/v1/volumes/vm-dirs', undefined, 30_000)).dirs;
  }

  async runVm(spec: VmSpec): Promise<AgentVm> {
    return (await this.#call<{ vm: AgentVm }>('PUT', `/agent/v1/vms/${spec.id}`, spec, 90_000)).vm;
  }

  async act(id: string, action: VmAction): Promise<AgentVm> {
    return (
      await this.#call<{ vm: AgentVm }>('POST', `/agent/v1/vms/${id}/actions/${action}`, undefined, 30_000)
    ).vm;
  }

  async forgetVm(id: string): Promise<void> {
    await this.#call('DELETE', `/agent/v1/vms/${id}`);
  }

  async console(id: string, bytes: number): Promise<string> {
    return (await this.#call<{ text: string }>('GET', `/agent/v1/vms/${id}/console?bytes=${bytes}`)).text;
  }

  async createVolume(req: CreateVolumeRequest): Promise<VolumeInfo> {
    return (await this.#call<{ volume: VolumeInfo }>('POST', '/agent/v1/volumes', req)).volume;
  }

  async createSeed(req: CreateSeedRequest): Promise<VolumeInfo> {
    return (await this.#call<{ volume: VolumeInfo }>('POST', '/agent/v1/volumes/seed', req)).volume;
  }

  async importVolume(req: ImportVolumeRequest): Promise<VolumeInfo> {
    return (await this.#call<{ volume: VolumeInfo }>('POST', '/agent/v1/volumes/import', req, 600_000))
      .volume;
  }

  async volumeInfo(ref: VolumeRef): Promise<VolumeInfo | null> {
    try {
      const q = new URLSearchParams(ref).toString();
      return (await this.#call<{ volume: VolumeInfo }>('GET', `/agent/v1/volumes/info?${q}`)).volume;
    } catch (err) {
      if (err instanceof TernError && err.code === 'not_found') return null;
      throw err;
    }
  }

  async resizeVolume(req: ResizeVolumeRequest): Promise<VolumeInfo> {
    return (await this.#call<{ volume: VolumeInfo }>('POST', '/agent/v1/volumes/resize', req)).volume;
  }

  async volumeSnapshot(req: VolumeSnapshotRequest): Promise<VolumeInfo> {
    return (await this.#call<{ volume: VolumeInfo }>('POST', '/agent/v1/volumes/snapshots', req, 300_000))
      .volume;
  }

  async resizeDisk(id: string, index: number, sizeBytes: number): Promise<void> {
    await this.#call('POST', `/agent/v1/vms/${id}/disks/${index}/resize`, { sizeBytes });
  }

  async attachDisk(id: string, disk: DiskSpec): Promise<void> {
    await this.#call('POST', `/agent/v1/vms/${id}/disks`, disk);
  }

  async changeCdrom(id: string, req: ChangeCdromRequest): Promise<void> {
    await this.#call('POST', `/agent/v1/vms/${id}/cdrom`, req);
  }

  async detachDisk(id: string, index: number): Promise<void> {
    await this.#call('DELETE', `/agent/v1/vms/${id}/disks/${index}`, undefined, 90_000);
  }

  async snapshotVm(id: string, name: string): Promise<{ consistency: string }> {
    return this.#call('POST', `/agent/v1/vms/${id}/snapshots`, { name }, 300_000);
  }

  async deleteVmSnapshot(id: string, name: string): Promise<void> {
    await this.#call(
      'DELETE',
      `/agent/v1/vms/${id}/snapshots/${encodeURIComponent(name)}`,
      undefined,
      300_000,
    );
  }

  /**
   * Runs a command in a running VM's guest through its guest agent and waits for it to end
   * (at most its timeout, plus the time to reach the guest agent).
   */
  async guestExec(id: string, req: GuestExecRequest): Promise<GuestExecResult> {
    const timeoutMs = (req.timeoutSeconds ?? 30) * 1000 + 30_000;
    return this.#call<GuestExecResult>('POST', `/agent/v1/vms/${id}/guest/exec`, req, timeoutMs);
  }

  /** Reads a file of a running VM's guest, whole (the agent refuses one beyond `maxBytes`). */
  async guestFileRead(id: string, req: GuestFileReadRequest): Promise<Buffer> {
    const url = `${this.url}/agent/v1/vms/${id}/guest/file-read`;
    let res: Response;
    try {
      res = await this.#fetch(url, {
        method: 'POST',
        headers: { ...this.#headers(), 'content-type': 'application/json' },
        body: JSON.stringify(req),
        signal: AbortSignal.timeout(300_000),
      });
      if (!res.ok) throw await errorOf(res, 'host agent');
      return Buffer.from(await res.arrayBuffer());
    } catch (err) {
      if (err instanceof TernError) throw err;
      throw new TernError('unavailable', `host agent at ${this.url} unreachable: ${(err as Error).message}`);
    }
  }

  /** The HA statefile's first `slots` slots, as this host reads them from shared storage. */
  async readStatefile(ref: VolumeRef, slots: number, timeoutMs: number): Promise<SlotState[]> {
    const q = new URLSearchParams({ ...ref, slots: String(slots) });
    return (
      await this.#call<{ slots: SlotState[] }>('GET', `/agent/v1/ha/statefile?${q}`, undefined, timeoutMs)
    ).slots;
  }

  async deleteVolume(ref: VolumeRef): Promise<void> {
    await this.#call('DELETE', `/agent/v1/volumes?${new URLSearchParams(ref).toString()}`);
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

  /** Migration target: start the VM waiting for its state (docs/agent-protocol.md, "Migration"). */
  async prepareIncoming(req: IncomingMigrationRequest): Promise<IncomingMigration> {
    // Creating empty volumes and starting QEMU: well within a few minutes even on slow storage.
    return this.#call<IncomingMigration>('POST', '/agent/v1/migrations/incoming', req, 300_000);
  }

  /** Migration target: the state arrived (or arrives now); run the guest. */
  async finishIncoming(id: string): Promise<FinishIncomingResult> {
    return this.#call<FinishIncomingResult>(
      'POST',
      `/agent/v1/migrations/incoming/${id}/finish`,
      undefined,
      660_000,
    );
  }

  /** Migration target: end the waiting VM and remove what was made for it; idempotent. */
  async abortIncoming(id: string): Promise<void> {
    await this.#call('DELETE', `/agent/v1/migrations/incoming/${id}`, undefined, 120_000);
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
    return followOnAgent(this.transport, `/agent/v1/vms/${id}/migrate`, req, onReport, signal);
  }

  /** Migration source, once the target runs the VM: end the stopped copy and forget it. */
  async releaseMigrated(id: string): Promise<void> {
    await this.#call('POST', `/agent/v1/vms/${id}/release`, undefined, 60_000);
  }

  /** Moves a running VM's disk to a new volume on its host, reporting progress. */
  moveDisk(
    id: string,
    req: MoveDiskRequest,
    onReport: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<MigrationDone> {
    return followOnAgent(this.transport, `/agent/v1/vms/${id}/disks/move`, req, onReport, signal);
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
    const stream = {
      method: 'GET',
      path: '/agent/v1/events',
      maxLine: 4 * 1024 * 1024,
      silenceMs: 16_000,
      signal,
      during: 'the event stream',
    } as const;
    while (!signal.aborted) {
      try {
        await followAgentStream(this.transport, stream, (value) => {
          const event = value as AgentEvent;
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
