/**
 * Growing, inside a Linux guest, what lives on a disk that just grew: its partition (growpart)
 * and the filesystem on it (resize2fs for ext*, xfs_growfs for xfs). Tern's disk is found in the
 * guest by the serial number its device carries (diskSerial), never by a guess at its name.
 * A probe run in the guest tells the disks, partitions, mounts and tools; `planGrowth` (pure)
 * decides what to run; anything it cannot grow is said, never attempted.
 */
import { asTernError } from '../../errors.ts';
import type { GuestExecRequest, GuestExecResult } from '../../wire/guest-command.ts';

/** What the guest said: lines of `disk NAME`, `part NAME NUMBER`, `mount SRC DIR TYPE …`, `tool NAME`. */
export const probeScript = `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for d in /sys/block/*; do
  [ -r "$d/serial" ] && [ "$(cat "$d/serial")" = "$1" ] || continue
  n=\${d##*/}; echo "disk $n"
  for p in "$d"/"$n"*/partition; do [ -r "$p" ] && q=\${p%/partition} && echo "part \${q##*/} $(cat "$p")"; done
done
sed 's/^/mount /' /proc/mounts
for t in growpart resize2fs xfs_growfs; do command -v "$t" >/dev/null 2>&1 && echo "tool $t"; done
exit 0`;

export interface GrowthStep {
  /** What it grows, for people: "partition 1 of /dev/vdb", "ext4 on /dev/vdb1 (/data)". */
  what: string;
  command: string[];
}

export interface GrowthPlan {
  steps: GrowthStep[];
  /** Why something on the disk is not grown. */
  skipped: string[];
}

const toolPackage: Record<string, string> = {
  growpart: 'cloud-guest-utils (growpart)',
  resize2fs: 'e2fsprogs (resize2fs)',
  xfs_growfs: 'xfsprogs (xfs_growfs)',
};

/** The guest's probe output → what to run for the disk with `serial`. */
export function planGrowth(probe: string, serial: string): GrowthPlan {
  const lines = probe.split('\n').map((l) => l.trim().split(/\s+/));
  const disks = lines.filter((l) => l[0] === 'disk').map((l) => l[1]);
  const tools = new Set(lines.filter((l) => l[0] === 'tool').map((l) => l[1]));
  if (disks.length !== 1)
    return {
      steps: [],
      skipped: [
        disks.length === 0
          ? `no disk with serial ${serial} in the guest (a VM started before Tern gave its disks serials shows it after a restart)`
          : `${disks.length} disks with serial ${serial} in the guest; not guessing which`,
      ],
    };
  const disk = disks[0];
  const parts = new Map(lines.filter((l) => l[0] === 'part' && /^\d+$/.test(l[2])).map((l) => [l[1], l[2]]));
  const steps: GrowthStep[] = [];
  const skipped: string[] = [];
  const seen = new Set<string>();
  for (const l of lines) {
    if (l[0] !== 'mount' || l.length < 4) continue;
    const [, source, dir, type] = l;
    const dev = source.startsWith('/dev/') ? source.slice(5) : '';
    if (seen.has(dev) || (dev !== disk && !parts.has(dev))) continue;
    seen.add(dev);
    const mountPoint = dir.replace(/\\040/g, ' ');
    const needs = (tool: string) => {
      if (tools.has(tool)) return true;
      skipped.push(
        `${type} on ${source} (${mountPoint}): ${toolPackage[tool]} is not installed in the guest`,
      );
      return false;
    };
    const number = parts.get(dev);
    if (number !== undefined) {
      if (!needs('growpart')) continue;
      steps.push({
        what: `partition ${number} of /dev/${disk}`,
        command: ['growpart', `/dev/${disk}`, number],
      });
    }
    const what = `${type} on ${source} (${mountPoint})`;
    if (/^ext[234]$/.test(type)) {
      if (needs('resize2fs')) steps.push({ what, command: ['resize2fs', source] });
    } else if (type === 'xfs') {
      if (needs('xfs_growfs')) steps.push({ what, command: ['xfs_growfs', mountPoint] });
    } else {
      skipped.push(`${what}: Tern grows ext2/3/4 and xfs filesystems, not ${type}`);
    }
  }
  if (seen.size === 0) skipped.push(`no filesystem of /dev/${disk} is mounted in the guest`);
  return { steps, skipped };
}

export interface GrowthReport {
  grown: string[];
  notGrown: string[];
  message: string;
}

type Exec = (req: GuestExecRequest) => Promise<GuestExecResult>;
const text = (b64: string) => Buffer.from(b64, 'base64').toString('utf8').trim().slice(0, 300);
const withPath = (argv: string[]) => [
  'sh',
  '-c',
  'PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH exec "$@"',
  'sh',
  ...argv,
];

/**
 * Probes the guest and runs the plan. Never throws: the disk has grown whatever happens
 * here, and the report says what inside the guest did and did not.
 */
export async function growInGuest(exec: Exec, serial: string): Promise<GrowthReport> {
  const grown: string[] = [];
  const notGrown: string[] = [];
  try {
    const probe = await exec({ command: ['sh', '-c', probeScript, 'sh', serial], timeoutSeconds: 60 });
    if (probe.exitCode !== 0) throw new Error(`the guest's probe failed: ${text(probe.stderr)}`);
    const plan = planGrowth(Buffer.from(probe.stdout, 'base64').toString('utf8'), serial);
    notGrown.push(...plan.skipped);
    let partitionFailed = false;
    for (const step of plan.steps) {
      const partition = step.command[0] === 'growpart';
      // A filesystem waits on the partition under it (planned right before it).
      if (!partition && partitionFailed) {
        notGrown.push(`${step.what}: not grown, its partition was not`);
        partitionFailed = false;
        continue;
      }
      const r = await exec({ command: withPath(step.command), timeoutSeconds: 300 });
      // growpart says NOCHANGE (exit 1) when the partition already fills the disk.
      if (r.exitCode === 0 || (partition && /NOCHANGE/.test(text(r.stdout)))) {
        grown.push(step.what);
        partitionFailed = false;
        continue;
      }
      const why = text(r.stderr) || text(r.stdout);
      notGrown.push(
        `${step.what}: ${step.command[0]} failed (exit ${r.exitCode ?? `by signal ${r.signal}`}): ${why}`,
      );
      partitionFailed = partition;
    }
  } catch (err) {
    notGrown.push(`nothing was grown inside the guest: ${asTernError(err).message}`);
  }
  const message =
    notGrown.length === 0
      ? `grown inside the guest: ${grown.join(', ')}`
      : `${grown.length ? `grown inside the guest: ${grown.join(', ')}; ` : ''}the filesystem was not grown: ${notGrown.join('; ')}`;
  return { grown, notGrown, message };
}
