/** Disk images and ISOs in the library: one row each, pointing at a volume on a host's pool. */
import { TernError } from '../../errors.ts';
import type { Image, ImageKind } from '../../wire/image.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import type { Db } from '../db/database.ts';
import type { ImageTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';

/** Where an image lives in its pool. */
export function imageVolumePath(name: string, kind: ImageKind): string {
  return `images/${name}.${kind === 'iso' ? 'iso' : 'qcow2'}`;
}

/** The name of the library image stored at `ref`, or null for a volume that is none. */
export function imageNameOf(ref: VolumeRef): string | null {
  return /^images\/(.+)\.(iso|qcow2)$/.exec(ref.path)?.[1] ?? null;
}

type Row = ImageTable & { hostName: string | null };

function toWire(r: Row): Image {
  return {
    name: r.name,
    kind: r.kind as ImageKind,
    format: r.format,
    sourceFormat: r.sourceFormat,
    host: r.hostName ?? r.hostId,
    volume: { pool: r.pool, path: r.path },
    virtualBytes: Number(r.virtualBytes),
    actualBytes: Number(r.actualBytes),
    sha256: r.sha256,
    createdAt: r.createdAt,
  };
}

/** Deleting an image that VMs read would take their base disk or their CD away. */
export async function refuseIfUsed(images: ImageStore, name: string): Promise<void> {
  const vms = await images.usedBy(name);
  if (vms.length === 0) return;
  const shown = vms.slice(0, 20).join(', ') + (vms.length > 20 ? ', …' : '');
  throw new TernError(
    'conflict',
    `image ${name} is used by ${vms.length} VM(s) (linked clones on it, or with it in their CD-ROM): ${shown}; delete them, or eject it, first`,
    { vms },
  );
}

export class ImageStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  #select() {
    return this.#db
      .selectFrom('images')
      .leftJoin('hosts', 'hosts.id', 'images.hostId')
      .selectAll('images')
      .select('hosts.name as hostName');
  }

  async list(): Promise<Image[]> {
    return (await this.#select().orderBy('images.name').execute()).map(toWire);
  }

  async row(name: string): Promise<ImageTable> {
    const row = await this.#db.selectFrom('images').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) throw new TernError('not_found', `image ${name} does not exist`);
    return row;
  }

  async get(name: string): Promise<Image> {
    const row = await this.#select().where('images.name', '=', name).executeTakeFirst();
    if (!row) throw new TernError('not_found', `image ${name} does not exist`);
    return toWire(row);
  }

  async has(name: string): Promise<boolean> {
    return (
      (await this.#db.selectFrom('images').select('name').where('name', '=', name).executeTakeFirst()) !==
      undefined
    );
  }

  async insert(row: ImageTable): Promise<void> {
    try {
      await this.#db.insertInto('images').values(row).execute();
    } catch (err) {
      if (/UNIQUE|PRIMARY KEY|duplicate/i.test((err as Error).message))
        throw new TernError('conflict', `image ${row.name} exists`);
      throw err;
    }
  }

  async setSha256(name: string, sha256: string): Promise<void> {
    await this.#db.updateTable('images').set({ sha256 }).where('name', '=', name).execute();
  }

  /**
   * The VMs that need the image's file: linked clones on it (their disk's backing file) and
   * those with it in their CD-ROM drive.
   */
  async usedBy(name: string): Promise<string[]> {
    const row = await this.row(name);
    const linked = await this.#db
      .selectFrom('vms')
      .select('name')
      .where('image', '=', name)
      .where('clone', '=', 'linked')
      .execute();
    const inDrive = await this.#db
      .selectFrom('vms')
      .select(['name', 'spec'])
      .where('spec', 'like', `%${JSON.stringify(row.path).slice(1, -1)}%`)
      .execute();
    const names = new Set(linked.map((r) => r.name));
    for (const r of inDrive) {
      const medium = vmSpecOf(r).cdrom?.medium;
      if (medium?.pool === row.pool && medium.path === row.path) names.add(r.name);
    }
    return [...names].sort();
  }

  async remove(name: string): Promise<void> {
    await this.#db.deleteFrom('images').where('name', '=', name).execute();
  }
}
