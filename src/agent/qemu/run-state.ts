/**
 * The VM state and reason Tern reports for a QEMU run state: a pure decision, so the VM
 * process only feeds it what QEMU said and what it already knows (a hold, an I/O error's
 * reason, a corrupt disk).
 */
import type { AgentVmState } from '../../wire/agent.ts';

const runtimeStates: Record<string, AgentVmState> = { running: 'running', shutdown: 'shutdown' };

/** Why a VM is paused, for QEMU run states other than a pause by request or an I/O error. */
const pauseReasons: Record<string, string> = {
  inmigrate: 'incoming migration',
  postmigrate: 'migrated to another host',
  'finish-migrate': 'migration switchover',
  prelaunch: 'not started yet',
  'restore-vm': 'restoring its state',
  'save-vm': 'saving its state',
};

/** The state and reason for QEMU run state `status`. */
export function runState(
  status: string,
  now: { hold: string | null; reason: string | null; corrupt: string | null },
): { state: AgentVmState; reason: string | null } {
  const state = runtimeStates[status] ?? 'paused';
  if (state === 'paused') {
    return {
      state,
      reason:
        now.hold ??
        (status === 'paused'
          ? 'paused by request'
          : status === 'io-error'
            ? (now.reason ?? 'disk I/O error')
            : (pauseReasons[status] ?? status)),
    };
  }
  return { state, reason: state === 'shutdown' ? 'the guest powered off' : now.corrupt };
}
