/**
 * Project quotas: pure decisions over what a project uses and what a request adds. The
 * refusal names the project, the quota, what is in use and what was asked, so a self-service
 * user knows what to free or whom to ask.
 */
import type { Quota, Usage } from '../../wire/identity.ts';

const labels: Record<keyof Usage, string> = {
  vms: 'VM',
  vcpus: 'vCPU',
  memoryMiB: 'memory',
  diskBytes: 'disk',
};

const show = (k: keyof Usage, n: number) =>
  k === 'memoryMiB' ? `${n} MiB` : k === 'diskBytes' ? `${(n / 2 ** 30).toFixed(1)} GiB` : String(n);

/** Why adding `request` to `usage` breaks a quota of `project`, or null when it fits. */
export function quotaRefusal(
  project: string,
  quota: Quota,
  usage: Usage,
  request: Partial<Usage>,
): string | null {
  for (const k of Object.keys(labels) as (keyof Usage)[]) {
    const limit = quota[k];
    const add = request[k] ?? 0;
    if (limit === null || add <= 0) continue;
    if (usage[k] + add > limit)
      return `project ${project} would exceed its ${labels[k]} quota: ${show(k, usage[k])} of ${show(k, limit)} in use, ${show(k, add)} more asked`;
  }
  return null;
}

/** What a set of VMs uses, from their specs and disk sizes. */
export function usageOf(vms: { vcpus: number; memoryMiB: number; diskBytes: number }[]): Usage {
  return {
    vms: vms.length,
    vcpus: vms.reduce((n, v) => n + v.vcpus, 0),
    memoryMiB: vms.reduce((n, v) => n + v.memoryMiB, 0),
    diskBytes: vms.reduce((n, v) => n + v.diskBytes, 0),
  };
}
