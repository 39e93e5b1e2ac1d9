/**
 * The guest as qemu-ga tells it: the heartbeat's ping, the guest's facts (OS, hostname,
 * interfaces, disks, machine-id), and the filesystem freeze a snapshot holds, with the thaw of
 * a freeze nobody holds any more. The heartbeat (heartbeat.ts) sets the pace and the VM's run
 * state is run-state-watch.ts; this owns what the guest agent said.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { emptyGuestInfo, type GuestInfo } from '../../wire/vm.ts';
import {
  type Sanitized,
  sanitizeBootId,
  sanitizeDisks,
  sanitizeHostname,
  sanitizeInterfaces,
  sanitizeMachineId,
  sanitizeOsInfo,
} from './guest-info.ts';
import { QgaClient } from './qga.ts';
import * as qga from './qga-commands.ts';

export class GuestWatch {
  readonly qga: QgaClient;
  guest: GuestInfo = emptyGuestInfo();
  pings = 0;
  /** A snapshot holds the guest's filesystems frozen on purpose: the heartbeat leaves them be. */
  holdingFreeze = false;
  /**
   * The guest's filesystems may be frozen with no snapshot holding them (after a reattach, or a
   * freeze or thaw that failed): the heartbeat asks the guest agent and thaws them.
   */
  freezeUnknown = false;
  readonly #id: string;
  readonly #name: () => string;
  readonly #log: Logger;
  readonly #emit: () => void;
  readonly #closing: () => boolean;

  constructor(
    id: string,
    socket: string,
    o: { name: () => string; log: Logger; emit: () => void; closing: () => boolean },
  ) {
    this.#id = id;
    this.#name = o.name;
    this.#log = o.log;
    this.#emit = o.emit;
    this.#closing = o.closing;
    this.qga = new QgaClient(socket, (m) => o.log.warn({ vm: id }, m));
  }

  /**
   * After a change the guest should see (a disk plugged in or out): reads the guest's facts
   * until its disk list changes, for at most `timeoutMs`, when the guest agent answers.
   */
  async refreshFacts(timeoutMs: number): Promise<void> {
    const before = this.guest.disks.join(',');
    const deadline = Date.now() + timeoutMs;
    while (this.guest.agent === 'responding' && !this.#closing()) {
      await this.fetchFacts();
      if (this.guest.disks.join(',') !== before || Date.now() > deadline) break;
      // The guest's kernel takes a moment to bring up a new PCI device.
      await delay(500);
    }
    this.#emit();
  }

  /** One heartbeat's look at the guest agent: ping, thaw a leftover freeze, now and then its facts. */
  async beat(): Promise<void> {
    const before = this.guest.agent;
    try {
      await qga.ping(this.qga, { timeoutMs: before === 'responding' ? 2000 : 1000 });
      this.guest.agent = 'responding';
      this.guest.lastHeartbeat = new Date().toISOString();
      if (!this.holdingFreeze && (this.freezeUnknown || this.guest.frozen))
        await this.thawLeftover().catch((err: Error) =>
          this.#log.warn(
            { vm: this.#id, err: err.message },
            "could not thaw the guest's filesystems; trying again",
          ),
        );
      // Guest facts change rarely: fetch them when the agent (re)appears and every tenth ping.
      if (before !== 'responding' || this.pings % 10 === 0) await this.fetchFacts();
      this.pings++;
    } catch {
      this.guest.agent = 'not-responding';
    }
  }

  async fetchFacts(): Promise<void> {
    const notes: string[] = [];
    const get = async <T>(
      fact: qga.GuestFact,
      sanitize: (raw: unknown) => { value: T; notes: string[] },
      keep: T,
    ) => {
      try {
        const r = sanitize(await fact.read(this.qga, { timeoutMs: 3000 }));
        notes.push(...r.notes);
        return r.value;
      } catch (err) {
        notes.push(`${fact.command}: ${(err as Error).message}`);
        return keep;
      }
    };
    this.guest.os = await get(qga.facts.os, sanitizeOsInfo, this.guest.os);
    this.guest.hostname = await get(qga.facts.hostname, sanitizeHostname, this.guest.hostname);
    this.guest.interfaces = await get(qga.facts.interfaces, sanitizeInterfaces, this.guest.interfaces);
    this.guest.disks = await get(qga.facts.disks, sanitizeDisks, this.guest.disks);
    const file = (path: string, sanitize: (raw: unknown) => Sanitized<string | null>, keep: string | null) =>
      this.#readFile(path, sanitize).then(
        (r) => {
          notes.push(...r.notes);
          return r.value;
        },
        (err: Error) => {
          notes.push(`${path}: ${err.message}`);
          return keep;
        },
      );
    this.guest.machineId = await file('/etc/machine-id', sanitizeMachineId, this.guest.machineId);
    // A reboot is seen by this too when the host missed its reset (no agent ran then).
    this.guest.bootId = await file('/proc/sys/kernel/random/boot_id', sanitizeBootId, this.guest.bootId);
    if (notes.length > 0) this.#log.warn({ vm: this.#id, notes }, 'guest agent replies were adjusted');
  }

  /** A small guest file (its machine-id, its boot id) through the guest agent's file commands. */
  async #readFile(
    path: string,
    sanitize: (raw: unknown) => Sanitized<string | null>,
  ): Promise<Sanitized<string | null>> {
    const handle = await qga.fileOpen(this.qga, path);
    if (typeof handle !== 'number' || !Number.isInteger(handle))
      return { value: null, notes: [`${path}: bad file handle`] };
    try {
      return sanitize(await qga.fileRead(this.qga, handle, 64));
    } finally {
      await qga.fileClose(this.qga, handle).catch(() => {});
    }
  }

  /**
   * Freezes the guest's filesystems for a snapshot (throws when the guest agent cannot); each
   * freeze is followed by `thawFilesystems`, and until then the heartbeat leaves them frozen.
   */
  async freeze(): Promise<void> {
    if (this.freezeUnknown && this.guest.agent === 'responding') await this.thawLeftover().catch(() => {});
    this.holdingFreeze = true;
    try {
      this.#responding();
      await qga.fsfreezeFreeze(this.qga, { timeoutMs: 30_000 });
    } catch (err) {
      this.holdingFreeze = false;
      // A freeze that timed out may have happened all the same: the heartbeat finds out.
      this.freezeUnknown = true;
      throw err;
    }
    this.guest.frozen = true;
    this.#emit();
  }

  /** Ends a snapshot's freeze; a thaw that fails is retried by the heartbeat. */
  async thaw(): Promise<void> {
    try {
      this.#responding();
      await qga.fsfreezeThaw(this.qga, { timeoutMs: 30_000 });
      this.guest.frozen = false;
    } catch (err) {
      this.freezeUnknown = true;
      this.#log.warn(
        { vm: this.#id, err: (err as Error).message },
        "thawing the guest's filesystems after a snapshot failed; trying again",
      );
    } finally {
      this.holdingFreeze = false;
      this.#emit();
    }
  }

  /** The guest-agent half of VmProcess.thawLeftover, once the guest agent answers. */
  async thawLeftover(): Promise<void> {
    const status = await qga.fsfreezeStatus(this.qga, { timeoutMs: 3000 });
    // A snapshot that began meanwhile owns the freeze; its thaw is queued behind our question.
    if (this.holdingFreeze) return;
    if (status === 'frozen') {
      this.guest.frozen = true;
      this.#emit();
      this.#log.warn(
        { vm: this.#id },
        "the guest's filesystems were left frozen by an interrupted snapshot; thawing them",
      );
      await qga.fsfreezeThaw(this.qga, { timeoutMs: 30_000 });
    }
    this.guest.frozen = false;
    this.freezeUnknown = false;
  }

  /** Guest agent commands of a snapshot go only to a guest agent that answers. */
  #responding(): void {
    if (this.guest.agent !== 'responding')
      throw new TernError('guest_error', `the guest agent of ${this.#name()} does not answer`);
  }
}
