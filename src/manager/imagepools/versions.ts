/**
 * The decisions of image pools, pure: version life cycle, rolling reboot plans, chain
 * flattening and deletion guards. A version moves maintenance → test → production; the
 * production version before the current one is kept as the rollback target.
 */
import { TernError } from '../../errors.ts';

export type VersionState = 'maintenance' | 'test' | 'production' | 'retired';

export interface Version {
  number: number;
  /** The version this one is an overlay on; null for a base (standalone) image. */
  parent: number | null;
  state: VersionState;
}

export interface PoolState {
  name: string;
  versions: Version[];
  production: number;
  /** The production version before the current one: where a rollback goes. */
  previous: number | null;
  maxUnavailablePercent: number;
  chainLimit: number;
}

/** A pool VM and the version its write cache is an overlay on. */
export interface PoolVm {
  name: string;
  version: number;
  running: boolean;
}

/** Version `n` of the pool; not_found when it has none. */
export function find(pool: PoolState, n: number): Version {
  const v = pool.versions.find((x) => x.number === n);
  if (!v) throw new TernError('not_found', `pool ${pool.name} has no version ${n}`);
  return v;
}

/** How many versions deep a version's chain is, down to its base (a base counts 1). */
export function chainLength(pool: PoolState, n: number): number {
  let length = 0;
  for (
    let v: Version | undefined = find(pool, n);
    v;
    v = v.parent === null ? undefined : find(pool, v.parent)
  ) {
    length++;
    if (length > pool.versions.length)
      throw new TernError('internal', `pool ${pool.name} has a cycle in its versions`);
  }
  return length;
}

/**
 * A new maintenance version goes on top of production. When that would make the chain longer
 * than the limit, production is first flattened into a new base, so the new version starts a
 * short chain; running VMs keep reading the old chain, which nothing modifies.
 */
export function planNewVersion(pool: PoolState): { number: number; parent: number; flattenFirst: boolean } {
  if (pool.versions.some((v) => v.state === 'maintenance')) {
    throw new TernError('conflict', `pool ${pool.name} already has a version in maintenance`);
  }
  const number = Math.max(...pool.versions.map((v) => v.number)) + 1;
  return {
    number,
    parent: pool.production,
    flattenFirst: chainLength(pool, pool.production) + 1 > pool.chainLimit,
  };
}

export function markTest(pool: PoolState, n: number, maintenanceVmRunning: boolean): Version {
  const v = find(pool, n);
  if (v.state !== 'maintenance')
    throw new TernError('conflict', `version ${n} is ${v.state}, not in maintenance`);
  if (maintenanceVmRunning) throw new TernError('conflict', `shut down version ${n}'s maintenance VM first`);
  return { ...v, state: 'test' };
}

/** Promotion of a tested version; the current production becomes the rollback target. */
export function promote(pool: PoolState, n: number): { production: number; previous: number } {
  const v = find(pool, n);
  if (v.state !== 'test')
    throw new TernError('conflict', `version ${n} is ${v.state}; only a tested version is promoted`);
  return { production: n, previous: pool.production };
}

export function rollback(pool: PoolState): { production: number; previous: number } {
  if (pool.previous === null)
    throw new TernError('conflict', `pool ${pool.name} has no earlier version to go back to`);
  find(pool, pool.previous);
  return { production: pool.previous, previous: pool.production };
}

/**
 * The rolling reboot that moves a pool's VMs onto a version: batches of at most
 * max(1, floor(N × percent / 100)) VMs, so no more than that are unavailable at once. VMs
 * already on the target are left alone; stopped VMs get their new cache without a boot.
 */
export function rollingPlan(vms: PoolVm[], target: number, maxUnavailablePercent: number): PoolVm[][] {
  if (!(maxUnavailablePercent > 0 && maxUnavailablePercent <= 100)) {
    throw new TernError(
      'invalid_request',
      'the share of VMs unavailable at once is between 1 and 100 percent',
    );
  }
  const size = Math.max(1, Math.floor((vms.length * maxUnavailablePercent) / 100));
  const todo = vms.filter((v) => v.version !== target).sort((a, b) => a.name.localeCompare(b.name));
  const batches: PoolVm[][] = [];
  for (let i = 0; i < todo.length; i += size) batches.push(todo.slice(i, i + size));
  return batches;
}

/** A version may go only when nothing needs it: no VM on it, no later version built on it. */
export function refuseDelete(pool: PoolState, n: number, vms: PoolVm[]): void {
  const v = find(pool, n);
  if (n === pool.production) throw new TernError('conflict', `version ${n} is in production`);
  if (n === pool.previous) throw new TernError('conflict', `version ${n} is the rollback target`);
  const users = vms.filter((x) => x.version === n).map((x) => x.name);
  if (users.length > 0) throw new TernError('conflict', `version ${n} is in use by ${users.join(', ')}`);
  const children = pool.versions
    .filter((x) => x.parent === v.number && x.state !== 'retired')
    .map((x) => x.number);
  if (children.length > 0) {
    throw new TernError('conflict', `version ${n} is the base of version(s) ${children.join(', ')}`);
  }
}
