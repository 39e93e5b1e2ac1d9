/** Which alerts a VM's state calls for. Pure: the watcher raises and clears to match. */
import type { Alert } from '../../wire/alert.ts';
import type { Vm } from '../../wire/vm.ts';

export type WantedAlert = Pick<Alert, 'id' | 'severity' | 'object' | 'message'>;

/** Every alert kind this module can raise for a VM, so the ones not wanted any more are cleared. */
export const vmAlertKinds = ['storage-full', 'io-error', 'corrupt', 'crashed', 'unreachable'] as const;

export function vmAlerts(vm: Vm): WantedAlert[] {
  const object = `vm:${vm.id}`;
  const reason = vm.stateReason ?? '';
  if (vm.state === 'paused' && reason.startsWith('storage full')) {
    return [
      {
        id: `${object}:storage-full`,
        severity: 'critical',
        object,
        message: `VM ${vm.name} is paused: ${reason}. Free space in its storage pool, then resume it (tern vm resume ${vm.name}).`,
      },
    ];
  }
  if (vm.state === 'paused' && reason.startsWith('I/O error')) {
    return [
      {
        id: `${object}:io-error`,
        severity: 'critical',
        object,
        message: `VM ${vm.name} is paused: ${reason}`,
      },
    ];
  }
  if ((vm.state === 'running' || vm.state === 'paused') && reason.startsWith('disk image corrupt')) {
    return [
      {
        id: `${object}:corrupt`,
        severity: 'critical',
        object,
        message: `VM ${vm.name}: ${reason}. Its guest gets I/O errors on that disk: shut it down, then repair the image (qemu-img check -r all) or restore it from a backup.`,
      },
    ];
  }
  if (vm.state === 'unreachable') {
    return [
      {
        id: `${object}:unreachable`,
        severity: 'warning',
        object,
        message: `VM ${vm.name} is unreachable: ${reason}. Its guest may still run; Tern changes nothing without --force.`,
      },
    ];
  }
  if (vm.state === 'crashed') {
    return [
      { id: `${object}:crashed`, severity: 'warning', object, message: `VM ${vm.name} crashed: ${reason}` },
    ];
  }
  return [];
}

/** The manager's own disk is full: nothing it decides can be recorded until there is room. */
export const managerDiskFullId = 'manager:disk-full';

export function managerDiskFullAlert(why: string): WantedAlert {
  return { id: managerDiskFullId, severity: 'critical', object: 'manager', message: why };
}
