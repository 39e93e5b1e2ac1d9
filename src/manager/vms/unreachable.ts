/**
 * An unreachable VM: its QEMU runs but its monitor does not answer (a deleted socket, a hung
 * QEMU). Its guest may well be alive and writing to its disks, so nothing that would end it or
 * change its disks happens on a guess: each such operation refuses, says why, and names the
 * way to force it.
 */
import { TernError } from '../../errors.ts';

/** Throws for an unreachable VM; `forced` says what --force would do (or what to do instead). */
export function refuseUnreachable(
  vm: { name: string; state: string; stateReason: string | null },
  forced: string,
): void {
  if (vm.state !== 'unreachable') return;
  throw new TernError(
    'conflict',
    `VM ${vm.name} is unreachable (${vm.stateReason ?? 'its monitor does not answer'}); its guest may still be running, so Tern leaves it alone: ${forced}`,
  );
}

/** For operations without a force of their own. */
export const forceOffFirst = (name: string) => `force it off first with \`tern vm stop ${name} --force\``;
