/**
 * `tern ha check`: the single points of failure and settings that would keep HA from doing its
 * job, each named with its fix. Pure: the shell describes the cluster, this judges it.
 */
import type { HaSettings } from '../../wire/ha.ts';
import type { HostState } from '../../wire/host.ts';

export interface ReadinessHost {
  name: string;
  state: HostState;
  pools: readonly { name: string; shared: boolean }[];
  /** Independent network paths from the host to the manager (bond members on separate switches); unknown when absent. */
  managementPaths?: number;
}

export interface ReadinessInput {
  hosts: readonly ReadinessHost[];
  manager: {
    /** The host (by name) the leading manager runs on; null when it runs outside the cluster. */
    onHost: string | null;
    standbys: number;
  };
  settings: HaSettings;
  /** From admission's `tolerance`: host failures every protected VM survives now. */
  toleratesNow: number;
}

export const readinessChecks = [
  'enabled',
  'hosts',
  'manager',
  'statefile',
  'management-network',
  'timeout',
  'capacity',
] as const;
export type ReadinessCheckName = (typeof readinessChecks)[number];

export type CheckLevel = 'ok' | 'warning' | 'error';

export interface ReadinessCheck {
  check: ReadinessCheckName;
  level: CheckLevel;
  /** What is wrong (or, when ok, what was found). */
  message: string;
  /** What to do about it; null when ok. */
  fix: string | null;
}

/**
 * The least HA timeout for a declared storage failover time. While the path fails over, no
 * lease write lands; after it, the next renewal must land and be read before the silence counts.
 * The margin (the larger of 5 s and 25%) covers that renewal and the failover taking longer than
 * declared.
 */
export function minTimeoutS(storageFailoverS: number): number {
  if (storageFailoverS <= 0) return 0;
  return storageFailoverS + Math.max(5, Math.ceil(storageFailoverS / 4));
}

const list = (names: readonly string[]) =>
  names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
const hostsWord = (n: number) => `${n} host${n === 1 ? '' : 's'}`;

const ok = (check: ReadinessCheckName, message: string): ReadinessCheck => ({
  check,
  level: 'ok',
  message,
  fix: null,
});

export function readiness(input: ReadinessInput): ReadinessCheck[] {
  return [
    enabled(input),
    hostCount(input),
    manager(input),
    statefile(input),
    managementNetwork(input),
    timeout(input),
    capacity(input),
  ];
}

function enabled({ settings }: ReadinessInput): ReadinessCheck {
  if (settings.enabled) return ok('enabled', 'HA is on');
  return {
    check: 'enabled',
    level: 'warning',
    message: 'HA is off: when a host fails, its VMs stay down until someone starts them elsewhere',
    fix: 'turn it on once the other checks pass: tern ha settings --enable',
  };
}

function hostCount({ hosts }: ReadinessInput): ReadinessCheck {
  if (hosts.length >= 2) return ok('hosts', `${hostsWord(hosts.length)}`);
  return {
    check: 'hosts',
    level: 'error',
    message: `the cluster has ${hostsWord(hosts.length)}: a failed host's VMs have nowhere to restart`,
    fix: 'join at least one more host that sees the same shared storage: tern host add',
  };
}

function manager({ manager: m, hosts }: ReadinessInput): ReadinessCheck {
  const on = m.onHost !== null && hosts.some((h) => h.name === m.onHost) ? m.onHost : null;
  if (on === null) return ok('manager', "the manager runs outside the cluster's hosts");
  if (m.standbys > 0) {
    return ok(
      'manager',
      `the manager runs on ${on}, with ${m.standbys} standby${m.standbys === 1 ? '' : 's'}`,
    );
  }
  return {
    check: 'manager',
    level: 'warning',
    message:
      `the manager runs on host ${on} with no standby: if ${on} fails, nothing declares it failed ` +
      'or restarts its VMs (or any other) until the manager is back',
    fix: 'run the manager on a machine outside the cluster, or add a standby manager on another host (PostgreSQL)',
  };
}

function statefile({ settings, hosts }: ReadinessInput): ReadinessCheck {
  const pool = settings.statefilePool;
  const candidates = sharedByAll(hosts);
  const pick =
    candidates.length > 0
      ? `choose a pool every host shares (${list(candidates)}): tern ha settings --statefile-pool ${candidates[0]}`
      : 'add a pool every host mounts as shared storage (NFS, iSCSI, Ceph), then: tern ha settings --statefile-pool NAME';
  if (pool === null) {
    return {
      check: 'statefile',
      level: 'error',
      message:
        'no statefile pool is set: hosts have no storage heartbeat, so a host cut off from the manager cannot be told from a dead one',
      fix: pick,
    };
  }
  const missing = hosts.filter((h) => !h.pools.some((p) => p.name === pool)).map((h) => h.name);
  if (hosts.length > 0 && missing.length === hosts.length) {
    return {
      check: 'statefile',
      level: 'error',
      message: `statefile pool ${pool} is unknown: no host reports it`,
      fix: pick,
    };
  }
  const local = hosts.filter((h) => h.pools.some((p) => p.name === pool && !p.shared)).map((h) => h.name);
  if (missing.length > 0 || local.length > 0) {
    const parts: string[] = [];
    if (missing.length > 0) parts.push(`${list(missing)} ${missing.length === 1 ? 'does' : 'do'} not see it`);
    if (local.length > 0) parts.push(`it is local storage on ${list(local)}`);
    return {
      check: 'statefile',
      level: 'error',
      message: `statefile pool ${pool} is not shared by every host: ${parts.join('; ')}. A host that cannot write its lease there looks dead whenever its network drops`,
      fix: pick,
    };
  }
  return ok('statefile', `statefile pool ${pool} is shared by every host`);
}

/** Pools every host lists as shared, by name. */
function sharedByAll(hosts: readonly ReadinessHost[]): string[] {
  if (hosts.length === 0) return [];
  const names = hosts[0].pools.filter((p) => p.shared).map((p) => p.name);
  return names.filter((n) => hosts.every((h) => h.pools.some((p) => p.name === n && p.shared))).sort();
}

function managementNetwork({ hosts }: ReadinessInput): ReadinessCheck {
  const single = hosts
    .filter((h) => h.managementPaths !== undefined && h.managementPaths < 2)
    .map((h) => h.name);
  const unknown = hosts.filter((h) => h.managementPaths === undefined).map((h) => h.name);
  if (single.length > 0) {
    return {
      check: 'management-network',
      level: 'warning',
      message:
        `${list(single)} ${single.length === 1 ? 'has' : 'have'} a single management network path: one NIC, cable ` +
        'or switch failure cuts them from the manager (isolated, not restarted, but unmanaged); if the ' +
        'storage uses that path too, they also lose their lease and fence',
      fix: 'give each host two paths to the manager: a bond of two NICs wired to separate switches',
    };
  }
  if (unknown.length > 0) {
    return ok(
      'management-network',
      `${list(unknown)} did not report ${unknown.length === 1 ? 'its' : 'their'} management paths; check that each has two (a bond across two switches)`,
    );
  }
  return ok('management-network', 'every host has at least two management network paths');
}

function timeout({ settings }: ReadinessInput): ReadinessCheck {
  const failover = settings.storageFailoverS;
  if (failover <= 0) {
    return ok(
      'timeout',
      `HA timeout ${settings.timeoutS} s; no storage failover time declared (tern ha settings --storage-failover SECONDS if the storage path fails over)`,
    );
  }
  const least = minTimeoutS(failover);
  if (settings.timeoutS >= least) {
    return ok(
      'timeout',
      `HA timeout ${settings.timeoutS} s covers the declared ${failover} s storage failover`,
    );
  }
  return {
    check: 'timeout',
    level: 'warning',
    message:
      `HA timeout ${settings.timeoutS} s is shorter than the declared ${failover} s storage failover plus margin ` +
      `(${least} s): during a routine failover every lease goes silent, and any host that also loses its ` +
      'manager link fences and has its VMs restarted',
    fix: shortenOrRaise(settings.timeoutS, least),
  };
}

function shortenOrRaise(timeoutS: number, least: number): string {
  let fits = 0;
  while (minTimeoutS(fits + 1) <= timeoutS) fits++;
  const shorten = `shorten the storage path failover (multipath timeouts) to ${fits} s or less`;
  if (least > 600) return `${shorten}; the HA timeout cannot exceed 600 s`;
  return `raise the timeout: tern ha settings --timeout ${least}; or ${shorten}`;
}

function capacity({ settings, toleratesNow }: ReadinessInput): ReadinessCheck {
  const k = settings.failuresToTolerate;
  if (toleratesNow >= k) {
    return ok(
      'capacity',
      `every protected VM can restart after ${toleratesNow} host failure${toleratesNow === 1 ? '' : 's'} (${k} required)`,
    );
  }
  return {
    check: 'capacity',
    level: 'warning',
    message:
      `protected VMs can restart after only ${toleratesNow} host failure${toleratesNow === 1 ? '' : 's'}, ` +
      `fewer than the ${k} to tolerate: after a failure some would stay down (tern ha plan shows which)`,
    fix: 'add hosts or memory, protect fewer VMs (or make some best-effort), or lower failures-to-tolerate: tern ha settings --tolerate N',
  };
}
