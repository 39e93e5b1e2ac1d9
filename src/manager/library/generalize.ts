/**
 * Generalizing a VM before it is sealed into a template, so that its clones do not share one
 * identity: whether and how Tern can do it for a VM (pure), the commands the guest agent runs
 * in a Linux guest, and the check of what the guest shows afterwards.
 *
 * systemd fills /etc/machine-id at boot only when it is empty, and cloud-init does not touch it
 * on a new instance id: a machine id left in a template is the machine id of every clone.
 */
import { TernError } from '../../errors.ts';
import type { Generalization, OsKind } from '../../wire/template.ts';
import type { GuestOs, Vm } from '../../wire/vm.ts';

export const sharedIdentityRisk = 'clones share machine-id and SSH host keys';

export type SealPlan =
  | { method: 'guest-agent' }
  | { method: Exclude<Generalization, 'guest-agent'>; risk: string };

/** qemu-ga reports Windows as `mswindows` (guest-get-osinfo). */
export function isWindows(os: GuestOs | null): boolean {
  return os?.id === 'mswindows' || /\bwindows\b/i.test(os?.name ?? '');
}

const asIs = { method: 'none', risk: sharedIdentityRisk } as const;

/**
 * How a VM can be sealed. A running Linux guest whose agent answers is generalized through it;
 * anything else is refused with the way out, or sealed as it is with `force` (and the risk
 * recorded). `vm.guest.os` is the last the guest agent reported, kept while the VM is stopped;
 * `templateOs` the OS kind of the template the VM was made from, if it says.
 */
export function planSeal(
  vm: Pick<Vm, 'name' | 'state' | 'guest'>,
  force: boolean,
  templateOs: OsKind | null = null,
): SealPlan {
  if (vm.state !== 'stopped' && vm.state !== 'running') {
    throw new TernError('conflict', `VM ${vm.name} is ${vm.state}; start it or shut it down first`);
  }
  if (isWindows(vm.guest.os) || templateOs === 'windows') {
    if (force) return asIs;
    throw new TernError(
      'conflict',
      `VM ${vm.name} runs Windows, which Tern does not generalize: run \`sysprep /generalize /oobe /shutdown\` in the guest, then seal it with --force`,
      { os: vm.guest.os?.name ?? vm.guest.os?.id ?? null },
    );
  }
  if (vm.state === 'running' && vm.guest.agent === 'responding') return { method: 'guest-agent' };
  if (force) return asIs;
  const why =
    vm.state === 'stopped' ? `VM ${vm.name} is stopped` : `the guest agent of VM ${vm.name} does not answer`;
  throw new TernError(
    'conflict',
    `${why}, so Tern cannot generalize it (${sharedIdentityRisk} otherwise): start the VM so its guest agent can generalize it, or use --force to seal it as it is`,
  );
}

/**
 * The OS kind a template sealed from the VM records: Linux once the generalization (which
 * checks `uname -s`) ran, Windows when the guest said so, otherwise its own template's.
 */
export function sealedOs(plan: SealPlan, guestOs: GuestOs | null, templateOs: OsKind | null): OsKind | null {
  if (plan.method === 'guest-agent') return 'linux';
  if (isWindows(guestOs)) return 'windows';
  return templateOs;
}

/**
 * Run by /bin/sh in the guest. The machine id is emptied, not removed: systemd writes a new
 * one at the next boot only into an existing empty file (some versions fail without it). A
 * bind mount over it (a read-only /etc) would empty the mount, not the disk: refused. The
 * D-Bus copy goes only when it is a file of its own, not the usual link to /etc/machine-id.
 * cloud-init 22.4's `clean --machine-id` removes the file, so it is not used; nor is `--seed`,
 * which would take away a seed built into the image.
 */
export const generalizeScript = `set -e
[ "$(uname -s)" = Linux ] || { echo "not a Linux guest: $(uname -s)" >&2; exit 3; }
if grep -q ' /etc/machine-id ' /proc/self/mountinfo 2>/dev/null; then
  echo "/etc/machine-id is a mount point (a read-only /etc?); the disk's copy cannot be emptied" >&2; exit 4
fi
: > /etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then rm -f /var/lib/dbus/machine-id; fi
rm -f /etc/ssh/ssh_host_*
if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs; fi
sync
`;

/** What the guest shows after generalizing, read back by a command of its own. */
export const inspectScript = `printf 'machine-id-bytes=%s\\n' "$(wc -c < /etc/machine-id 2>/dev/null | tr -d ' ')"
for f in /etc/ssh/ssh_host_*; do [ -e "$f" ] && printf 'host-key=%s\\n' "$f"; done
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then echo 'dbus-machine-id=file'; fi
exit 0
`;

/** What is still wrong in the output of `inspectScript`; empty when the guest is generalized. */
export function leftIdentity(stdout: string): string[] {
  const lines = stdout.split('\n').map((l) => l.trim());
  const problems: string[] = [];
  const size = lines.find((l) => l.startsWith('machine-id-bytes='))?.slice('machine-id-bytes='.length);
  if (size === undefined) problems.push('the guest did not report /etc/machine-id');
  else if (size === '') problems.push('/etc/machine-id is missing');
  else if (size !== '0') problems.push(`/etc/machine-id still holds ${size.slice(0, 20)} bytes`);
  const keys = lines.filter((l) => l.startsWith('host-key=')).map((l) => l.slice('host-key='.length));
  if (keys.length > 0)
    problems.push(`SSH host keys left: ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', …' : ''}`);
  if (lines.includes('dbus-machine-id=file')) problems.push('/var/lib/dbus/machine-id is left');
  return problems;
}
