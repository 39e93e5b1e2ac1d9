/** Image pools and their versions in the database, and where their volumes live. */
import { TernError } from '../../errors.ts';
import type { ImagePool, ImagePoolVersion } from '../../wire/image-pool.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import type { Db } from '../db/database.ts';
import type { ImagePoolTable, ImagePoolVersionTable } from '../db/schema.ts';
import type { PoolState, PoolVm, VersionState } from './versions.ts';

export function versionVolume(pool: ImagePoolTable, n: number): VolumeRef {
  return { pool: pool.diskPool, path: `imagepools/${pool.name}/v${n}.qcow2` };
}

export function bootVolume(pool: ImagePoolTable, file: 'kernel' | 'initrd'): VolumeRef {
  return { pool: pool.diskPool, path: `imagepools/${pool.name}/${file}` };
}

export class ImagePoolStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async row(name: string): Promise<ImagePoolTable> {
    const row = await this.#db
      .selectFrom('imagePools')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    if (!row) throw new TernError('not_found', `image pool ${name} does not exist`);
    return row;
  }

  async has(name: string): Promise<boolean> {
    return (
      (await this.#db.selectFrom('imagePools').select('name').where('name', '=', name).executeTakeFirst()) !==
      undefined
    );
  }

  async versions(name: string): Promise<ImagePoolVersionTable[]> {
    return this.#db
      .selectFrom('imagePoolVersions')
      .selectAll()
      .where('pool', '=', name)
      .orderBy('number')
      .execute();
  }

  async members(name: string): Promise<PoolVm[]> {
    const rows = await this.#db
      .selectFrom('vms')
      .select(['name', 'poolVersion', 'state'])
      .where('imagePool', '=', name)
      .orderBy('name')
      .execute();
    return rows.map((r) => ({
      name: r.name,
      version: r.poolVersion ?? 0,
      running: r.state === 'running' || r.state === 'paused',
    }));
  }

  async state(name: string): Promise<PoolState> {
    const row = await this.row(name);
    return {
      name,
      versions: (await this.versions(name)).map((v) => ({
        number: v.number,
        parent: v.parent,
        state: v.state as VersionState,
      })),
      production: row.production,
      previous: row.previous,
      maxUnavailablePercent: row.maxUnavailablePercent,
      chainLimit: row.chainLimit,
    };
  }

  async insert(pool: ImagePoolTable, first: ImagePoolVersionTable): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await trx.insertInto('imagePools').values(pool).execute();
      await trx.insertInto('imagePoolVersions').values(first).execute();
    });
  }

  async addVersion(v: ImagePoolVersionTable): Promise<void> {
    await this.#db.insertInto('imagePoolVersions').values(v).execute();
  }

  async setVersion(
    pool: string,
    n: number,
    changes: Partial<Pick<ImagePoolVersionTable, 'state' | 'maintenanceVm'>>,
  ) {
    await this.#db
      .updateTable('imagePoolVersions')
      .set(changes)
      .where('pool', '=', pool)
      .where('number', '=', n)
      .execute();
  }

  async removeVersion(pool: string, n: number): Promise<void> {
    await this.#db.deleteFrom('imagePoolVersions').where('pool', '=', pool).where('number', '=', n).execute();
  }

  /** Makes `production` the production version; the one it replaces becomes the rollback target. */
  async setProduction(pool: string, production: number, previous: number): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await trx.updateTable('imagePools').set({ production, previous }).where('name', '=', pool).execute();
      await trx
        .updateTable('imagePoolVersions')
        .set({ state: 'retired' })
        .where('pool', '=', pool)
        .where('state', '=', 'production')
        .execute();
      await trx
        .updateTable('imagePoolVersions')
        .set({ state: 'production' })
        .where('pool', '=', pool)
        .where('number', '=', production)
        .execute();
    });
  }

  async list(): Promise<ImagePool[]> {
    const rows = await this.#db.selectFrom('imagePools').selectAll().orderBy('name').execute();
    return Promise.all(rows.map((r) => this.toWire(r)));
  }

  async toWire(row: ImagePoolTable): Promise<ImagePool> {
    const vms = await this.#db
      .selectFrom('vms')
      .select(['name', 'poolVersion', 'state'])
      .where('imagePool', '=', row.name)
      .orderBy('name')
      .execute();
    return {
      name: row.name,
      template: row.template,
      cache: row.cache as ImagePool['cache'],
      maxUnavailablePercent: row.maxUnavailablePercent,
      chainLimit: row.chainLimit,
      production: row.production,
      previous: row.previous,
      versions: (await this.versions(row.name)).map(
        (v): ImagePoolVersion => ({
          number: v.number,
          parent: v.parent,
          state: v.state as ImagePoolVersion['state'],
          maintenanceVm: v.maintenanceVm,
          createdAt: v.createdAt,
        }),
      ),
      vms: vms.map((v) => ({ name: v.name, version: v.poolVersion, state: v.state })),
      createdAt: row.createdAt,
    };
  }
}
