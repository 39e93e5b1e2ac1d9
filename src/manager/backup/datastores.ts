/**
 * Backup datastores as the manager keeps them: a directory and the host that reaches it (or
 * none: shared, every host mounts it at the same path), a chunk size fixed at creation, and,
 * when encrypted, a key of 32 random bytes the manager makes and keeps as a secret. The key is
 * handed to a host with each request (`access`) and never written there, so a stolen datastore
 * reveals nothing. The manager never opens datastore files itself: a host's agent does.
 */

import { randomBytes, randomUUID } from 'node:crypto';
import { DEFAULT_CHUNK_SIZE, isChunkSize } from '../../backup/datastore/fixed-index.ts';
import { TernError } from '../../errors.ts';
import type { CreateDatastoreBody, Datastore } from '../../wire/api/backups.ts';
import type { DatastoreAccess } from '../../wire/backup.ts';
import { type Db, now } from '../db/database.ts';
import type { DatastoreTable } from '../db/schema.ts';
import type { AgentClient } from '../hosts/agent-client.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { SecretStore } from '../secrets/store.ts';
import { runningBackups } from './running.ts';

/** The secret holding a datastore's key. */
export const datastoreKeySecret = (id: string) => `datastore-${id}-key`;
const keyObject = (id: string) => `datastore:${id}`;

export class Datastores {
  readonly #db: Db;
  readonly #secrets: SecretStore;
  readonly #hosts: HostRegistry;

  constructor(db: Db, secrets: SecretStore, hosts: HostRegistry) {
    this.#db = db;
    this.#secrets = secrets;
    this.#hosts = hosts;
  }

  /**
   * Makes the datastore on its host (or any online host, for a shared one), then records it.
   * The key is kept first: a datastore that exists is never without its key. A failure
   * removes the key again (the host made nothing, or what it made is refused next time as
   * "already there", never silently reused with another key).
   */
  async create(body: CreateDatastoreBody): Promise<Datastore> {
    if (await this.#find(body.name)) throw new TernError('conflict', `datastore ${body.name} exists`);
    const chunkSize = body.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!isChunkSize(chunkSize))
      throw new TernError('invalid_request', 'chunkSize must be a power of two from 4 KiB to 64 MiB', {
        field: 'chunkSize',
      });
    const host = body.host ? await this.#hosts.get(body.host) : null;
    const id = randomUUID();
    const key = body.encrypt ? randomBytes(32).toString('base64') : null;
    if (key)
      await this.#secrets.put(datastoreKeySecret(id), key, { kind: 'datastore-key', object: keyObject(id) });
    try {
      const hostId = host?.id ?? (await this.#hosts.pickHost()).id;
      await this.#hosts.client(hostId).backup.createDatastore({ path: body.path, key });
      const row: DatastoreTable = {
        id,
        name: body.name,
        path: body.path,
        hostId: host?.id ?? null,
        encrypted: key ? 1 : 0,
        chunkSize,
        createdAt: now(),
      };
      await this.#db.insertInto('datastores').values(row).execute();
      return this.#toWire(row, host?.name ?? null, 0);
    } catch (err) {
      await this.#secrets.removeFor(keyObject(id));
      throw err;
    }
  }

  async #find(ref: string): Promise<DatastoreTable | undefined> {
    return this.#db
      .selectFrom('datastores')
      .selectAll()
      .where((eb) => eb.or([eb('name', '=', ref), eb('id', '=', ref)]))
      .executeTakeFirst();
  }

  /** A datastore by name or id. */
  async row(ref: string): Promise<DatastoreTable> {
    const row = await this.#find(ref);
    if (!row) throw new TernError('not_found', `datastore ${ref} does not exist`);
    return row;
  }

  async list(): Promise<Datastore[]> {
    const rows = await this.#db.selectFrom('datastores').selectAll().orderBy('name').execute();
    const counts = await this.#counts();
    const names = await this.#hostNames();
    return rows.map((r) =>
      this.#toWire(r, r.hostId ? (names.get(r.hostId) ?? r.hostId) : null, counts.get(r.id) ?? 0),
    );
  }

  /** One datastore, with what its host sees of it now (reachable, right key, room left). */
  async show(ref: string): Promise<Datastore> {
    const row = await this.row(ref);
    const counts = await this.#counts();
    const names = await this.#hostNames();
    const wire = this.#toWire(
      row,
      row.hostId ? (names.get(row.hostId) ?? row.hostId) : null,
      counts.get(row.id) ?? 0,
    );
    try {
      const { agent } = await this.agentFor(row);
      return {
        ...wire,
        status: await agent.backup.datastoreStatus(await this.access(row)),
        statusError: null,
      };
    } catch (err) {
      return { ...wire, status: null, statusError: (err as Error).message };
    }
  }

  /**
   * Forgets a datastore no backup in the inventory and no job uses; its files stay where they
   * are. Its key goes with it: refused while backups are listed, since they would be lost.
   */
  async remove(ref: string): Promise<void> {
    const row = await this.row(ref);
    const backups = (await this.#counts()).get(row.id) ?? 0;
    if (backups > 0)
      throw new TernError(
        'conflict',
        `datastore ${row.name} holds ${backups} backup(s): prune them first (its key goes with it)`,
      );
    const job = await this.#db
      .selectFrom('backupJobs')
      .select('name')
      .where('datastoreId', '=', row.id)
      .executeTakeFirst();
    if (job) throw new TernError('conflict', `backup job ${job.name} uses datastore ${row.name}`);
    if ((await runningBackups(this.#db, row.id)).length > 0)
      throw new TernError('conflict', `a backup into datastore ${row.name} is running`);
    await this.#db.deleteFrom('datastores').where('id', '=', row.id).execute();
    await this.#secrets.removeFor(keyObject(row.id));
  }

  /** What a host is given to open the datastore: its path and (encrypted) its key. */
  async access(row: DatastoreTable): Promise<DatastoreAccess> {
    return {
      path: row.path,
      key: row.encrypted ? await this.#secrets.reveal(datastoreKeySecret(row.id)) : null,
    };
  }

  /**
   * The host that works on the datastore: its own host; for a shared one `near` (the host of
   * the VM being backed up or restored) or else any online host.
   */
  async agentFor(row: DatastoreTable, near?: string | null): Promise<{ hostId: string; agent: AgentClient }> {
    if (row.hostId && near && near !== row.hostId) {
      const [a, b] = await Promise.all([this.#hosts.get(row.hostId), this.#hosts.get(near)]);
      throw new TernError(
        'conflict',
        `datastore ${row.name} is on host ${a.name}, not reachable from host ${b.name}: use a shared datastore or one on ${b.name}`,
      );
    }
    const hostId = row.hostId ?? near ?? (await this.#hosts.pickHost()).id;
    return { hostId, agent: this.#hosts.client(hostId) };
  }

  async #counts(): Promise<Map<string, number>> {
    const rows = await this.#db
      .selectFrom('backups')
      .select(['datastoreId', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('datastoreId')
      .execute();
    return new Map(rows.map((r) => [r.datastoreId, Number(r.n)]));
  }

  async #hostNames(): Promise<Map<string, string>> {
    const rows = await this.#db.selectFrom('hosts').select(['id', 'name']).execute();
    return new Map(rows.map((r) => [r.id, r.name]));
  }

  #toWire(r: DatastoreTable, host: string | null, backups: number): Datastore {
    return {
      id: r.id,
      name: r.name,
      path: r.path,
      host,
      encrypted: r.encrypted === 1,
      chunkSize: r.chunkSize,
      backups,
      createdAt: r.createdAt,
    };
  }
}
