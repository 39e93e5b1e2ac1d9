/**
 * The `vms/<id>/` directories of a host's pools: where Tern puts each VM's disks and seed. The
 * manager compares them with its inventory to find what no VM accounts for (orphans).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { VmDir } from '../../wire/orphan.ts';
import type { Pools } from './pools.ts';

const vmId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Every VM directory (named by a VM id) in every pool, with its files and their sizes. */
export async function listVmDirs(pools: Pools): Promise<VmDir[]> {
  const dirs: VmDir[] = [];
  for (const [pool, root] of Object.entries(pools)) {
    const vms = path.join(root, 'vms');
    const ids = await fs.promises.readdir(vms).catch(() => [] as string[]);
    for (const id of ids.filter((x) => vmId.test(x))) {
      const entries = await fs.promises.readdir(path.join(vms, id), { withFileTypes: true }).catch(() => []);
      const files: VmDir['files'] = [];
      for (const e of entries) {
        if (!e.isFile()) continue;
        const st = await fs.promises.stat(path.join(vms, id, e.name)).catch(() => null);
        // Blocks, not the apparent size: what the file takes from the pool.
        if (st) files.push({ path: `vms/${id}/${e.name}`, bytes: st.blocks * 512 });
      }
      dirs.push({ pool, id, files });
    }
  }
  return dirs;
}
