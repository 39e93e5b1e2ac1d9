/**
 * The manager's side of the agent protocol: typed calls to one host's agent, and a
 * self-reconnecting subscription to its event stream.
 */

import { TernError } from '../../errors.ts';
import type { SlotState } from '../../ha/statefile.ts';
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
import type { GuestExecRequest, GuestExecResult, GuestFileReadRequest } from '../../wire/guest-command.ts';
import type { ImportedImage, ImportImageRequest, UploadResult, VolumeDigest } from '../../wire/image.ts';
import type { HostNetworkSpec, HostNetworkState, PortRules } from '../../wire/network.ts';
import type { VmDir } from '../../wire/orphan.ts';
import type { CallOf, ReplyOf, Route } from '../../wire/route.ts';
import type { DiskSpec, NicSpec, VmSpec, VolumeRef } from '../../wire/vm.ts';
import { AgentBackupClient } from './agent-backup-client.ts';
import { followRoute } from './agent-stream.ts';
import { type AgentTransport, agentUnreachable, callAgent, postForBytes } from './agent-transport.ts';
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

  /** The host's backup calls: datastores, backing VMs up, restores (agent-backup-client.ts). */
  get backup(): AgentBackupClient {
    return new AgentBackupClient(this.transport);
  }

  /** One request on a plain route of the agent protocol; the answer is checked against its schema. */
  #call<R extends Route>(r: R, req: CallOf<R>, timeoutMs?: number): Promise<ReplyOf<R>> {
    return callAgent(this.transport, r, req, timeoutMs);
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
    const res = await postForBytes(this.transport, agentRoutes.guestFileRead, { id }, req, 300_000);
    try {
      return Buffer.from(await res.arrayBuffer());
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
