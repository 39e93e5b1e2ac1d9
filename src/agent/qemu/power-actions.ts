/**
 * The power actions asked of a running VM over its monitor (power button, reset, pause, resume)
 * or its guest agent (the guest's own shutdown or reboot, the thaw of a leftover freeze). Forcing
 * QEMU off is the end of the VM process (vm-process.ts), not an action on a running one.
 */
import { TernError } from '../../errors.ts';
import type { VmAction } from '../../wire/agent.ts';
import { guestPower } from './guest-power.ts';
import type { QgaClient } from './qga.ts';
import * as qmpc from './qmp-commands.ts';
import type { RunStateWatch } from './run-state-watch.ts';

export interface RunningVm {
  name: string;
  run: RunStateWatch;
  /** The guest agent's channel. */
  qga: QgaClient;
  /** VmProcess.thawLeftover. */
  thawLeftover(): Promise<void>;
}

export async function powerAction(vm: RunningVm, action: Exclude<VmAction, 'kill'>): Promise<void> {
  const { run, name } = vm;
  if (run.state === 'crashed' || run.state === 'unreachable' || !run.qmp) throw run.notAvailable();
  const qmp = run.qmp;
  switch (action) {
    case 'thaw':
      await vm.thawLeftover();
      break;
    case 'powerdown':
      await qmpc.systemPowerdown(qmp);
      break;
    case 'reset':
      await qmpc.systemReset(qmp);
      break;
    case 'pause':
      await qmpc.stop(qmp);
      break;
    case 'resume':
      // A `cont` before an incoming migration's state arrived would start the guest as
      // soon as it does, behind the back of whoever decides which copy runs.
      if (run.hold) throw new TernError('conflict', `VM ${name} is held: ${run.hold}`);
      await qmpc.cont(qmp);
      break;
    case 'guest-shutdown':
    case 'guest-reboot':
      if (run.state !== 'running') throw new TernError('conflict', `VM ${name} is ${run.state}`);
      await guestPower(vm.qga, (l) => run.onEvent(l), action === 'guest-reboot' ? 'reboot' : 'powerdown');
      break;
  }
  if (action === 'pause' || action === 'resume') await run.refreshStatus();
}
