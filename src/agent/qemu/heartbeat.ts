/**
 * The heartbeat of a running VM: on its timer, a look at the guest agent (guest-watch.ts) and,
 * while QEMU's monitor does not answer, one more try at the monitor. It probes often until the
 * guest agent first answers, so a booting VM is seen promptly, then at the agent's pace.
 */
import type { AgentVmState } from '../../wire/agent.ts';
import type { GuestWatch } from './guest-watch.ts';

export interface HeartbeatHooks {
  everyMs: number;
  guest: GuestWatch;
  state(): AgentVmState;
  /** QEMU is being ended or let go: nothing more to probe. */
  closing(): boolean;
  /** One try at the monitor of an unreachable VM; true when it answers again (or QEMU ended). */
  reconnect(): Promise<boolean>;
  changed(): void;
}

/** The pace of the probe until the guest agent first answers. */
const untilAnswerMs = 500;

export class Heartbeat {
  readonly #hooks: HeartbeatHooks;
  #timer: NodeJS.Timeout | null = null;

  constructor(hooks: HeartbeatHooks) {
    this.#hooks = hooks;
  }

  /** The next beat in `ms` (0: probe at once), instead of any beat already due. */
  schedule(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#beat(), ms);
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  async #beat(): Promise<void> {
    this.#timer = null;
    const h = this.#hooks;
    if (h.closing() || h.state() === 'crashed' || h.state() === 'stopped') return;
    // RunStateWatch.watch schedules the next beat once the monitor answers again.
    if (h.state() === 'unreachable' && (await h.reconnect())) return;
    if (h.state() !== 'running' && h.state() !== 'unreachable') {
      this.schedule(h.everyMs);
      return;
    }
    await h.guest.beat();
    if (h.closing()) return;
    h.changed();
    this.schedule(
      h.guest.guest.agent === 'responding' || h.state() === 'unreachable' ? h.everyMs : untilAnswerMs,
    );
  }
}
