/**
 * The guest's own shutdown or reboot through its agent. qemu-ga's guest-shutdown runs the guest's
 * `shutdown` and answers only when that fails (its error, e.g. "child process has failed to
 * shutdown" from a systemd guest without logind). So the answer is awaited for a while: the
 * guest seen going down (a reset, a power-off, qemu-ga closing its port) ends the wait early,
 * and silence means the guest agent took it.
 */

import type { QgaClient } from './qga.ts';
import * as qga from './qga-commands.ts';
import type { QmpEvent } from './qmp.ts';
import { qmpEvents } from './qmp-commands.ts';

/** Every QMP event of the VM, until the returned function is called (VmProcess.onEvent). */
type Events = (listener: (e: QmpEvent) => void) => () => void;

export async function guestPower(
  channel: QgaClient,
  events: Events,
  mode: 'reboot' | 'powerdown',
): Promise<void> {
  await qga.ping(channel, { timeoutMs: 3000 });
  let stopListening = () => {};
  const goingDown = new Promise<void>((resolve) => {
    stopListening = events((e) => {
      const port = e.data as { id?: string; open?: boolean };
      if (
        e.event === qmpEvents.reset ||
        e.event === qmpEvents.shutdown ||
        (e.event === qmpEvents.vserportChange && port.id === 'qga0-port' && port.open === false)
      )
        resolve();
    });
  });
  try {
    await qga.shutdown(channel, mode, { errorWithinMs: 10_000, accepted: goingDown });
  } finally {
    stopListening();
  }
}
