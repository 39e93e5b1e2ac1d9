/**
 * The recovery gate of a manager with hosts: a task interrupted by a restart goes on only once
 * the hosts it acts on are connected and have reported what they run. Right after a restart
 * their agents may still be starting (in all-in-one the agent starts after the manager); a
 * cleanup run before then fails and leaves disks and QEMUs behind while the inventory forgets them.
 */
import type { Db } from '../db/database.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { RecoveryGate } from './engine.ts';

/** How long a recovered task waits for one of its hosts before it fails, saying so. */
export const recoveryHostWaitMs = 120_000;

/**
 * The hosts whose agents a task on these objects calls. `ha:` objects name a failed host: its
 * failover must not wait for it.
 */
export async function hostsOfObjects(db: Db, objects: string[]): Promise<string[]> {
  const hosts = new Set<string>();
  for (const object of objects) {
    const colon = object.indexOf(':');
    const [type, ref] = [object.slice(0, colon), object.slice(colon + 1)];
    let ids: (string | null)[] = [];
    if (type === 'vm') {
      ids = (await db.selectFrom('vms').select('hostId').where('id', '=', ref).execute()).map(
        (r) => r.hostId,
      );
    } else if (type === 'host') {
      ids = [ref];
    } else if (type === 'template') {
      ids = (await db.selectFrom('templates').select('hostId').where('name', '=', ref).execute()).map(
        (r) => r.hostId,
      );
    } else if (type === 'image') {
      ids = (await db.selectFrom('images').select('hostId').where('name', '=', ref).execute()).map(
        (r) => r.hostId,
      );
    } else if (type === 'datastore' || type === 'backup') {
      // `datastore:<id>:<what>`, `backup:<datastore id>/<vm>/<backup>`: a host-local datastore's host.
      const datastoreId = ref.split(/[:/]/)[0];
      ids = (await db.selectFrom('datastores').select('hostId').where('id', '=', datastoreId).execute()).map(
        (r) => r.hostId,
      );
    } else if (type === 'imagepool') {
      ids = (await db.selectFrom('vms').select('hostId').where('imagePool', '=', ref).execute()).map(
        (r) => r.hostId,
      );
    }
    for (const id of ids) if (id) hosts.add(id);
  }
  return [...hosts];
}

export function hostGate(db: Db, hosts: HostRegistry, timeoutMs = recoveryHostWaitMs): RecoveryGate {
  return async (objects, ctx) => {
    for (const hostId of await hostsOfObjects(db, objects)) {
      await hosts.whenReported(hostId, timeoutMs, ctx.signal, (name) =>
        ctx.step(`waiting for host ${name} to connect`),
      );
    }
  };
}
