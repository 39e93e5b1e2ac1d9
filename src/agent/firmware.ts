/**
 * UEFI firmware for VMs: OVMF from Debian's `ovmf` package. The code is shared read-only by
 * every UEFI VM; each VM boots with its own copy of the empty variable store.
 */
import fs from 'node:fs';

export const ovmf = Object.freeze({
  code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  vars: '/usr/share/OVMF/OVMF_VARS_4M.fd',
});

/** Whether this host can boot UEFI VMs. */
export function ovmfPresent(): boolean {
  return fs.existsSync(ovmf.code) && fs.existsSync(ovmf.vars);
}
