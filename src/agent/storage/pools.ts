/**
 * Storage pools on a host: named directories. A volume is addressed by pool and relative
 * path; resolution refuses anything that would land outside the pool's directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { VolumeRef } from '../../wire/vm.ts';

export type Pools = Readonly<Record<string, string>>;

export function resolveVolume(pools: Pools, ref: VolumeRef): string {
  const root = pools[ref.pool];
  if (!root) throw new TernError('not_found', `storage pool ${ref.pool} does not exist on this host`);
  const full = path.resolve(root, ref.path);
  if (!full.startsWith(path.resolve(root) + path.sep)) {
    throw new TernError('invalid_request', `volume path ${ref.path} leaves pool ${ref.pool}`);
  }
  return full;
}

/** A volume's file and its facts; a volume that is not there is not_found, named as the caller named it. */
export function statVolume(pools: Pools, ref: VolumeRef): { file: string; st: fs.Stats } {
  const file = resolveVolume(pools, ref);
  try {
    return { file, st: fs.statSync(file) };
  } catch {
    throw new TernError('not_found', `volume ${ref.pool}:${ref.path} does not exist`);
  }
}
