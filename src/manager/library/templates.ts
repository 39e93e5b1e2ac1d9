/** Templates in the library: a VM spec plus a read-only base disk on a storage pool. */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Generalization, OsKind, Template } from '../../wire/template.ts';
import type { BootSpec, Firmware } from '../../wire/vm.ts';
import { type Db, now } from '../db/database.ts';
import type { TemplateTable } from '../db/schema.ts';
import type { AgentClient } from '../hosts/agent-client.ts';

function toWire(r: TemplateTable): Template {
  return {
    name: r.name,
    description: r.description,
    machine: r.machine as Template['machine'],
    vcpus: r.vcpus,
    memoryMiB: r.memoryMib,
    disk: { pool: r.diskPool, path: r.diskPath },
    diskSizeBytes: Number(r.diskSizeBytes),
    boot: r.boot ? (JSON.parse(r.boot) as BootSpec) : null,
    generalization: r.generalization as Generalization | null,
    risk: r.risk,
    firmware: (r.firmware ?? 'bios') as Firmware,
    os: r.osKind as OsKind | null,
    createdAt: r.createdAt,
  };
}

/**
 * A new template: one not sealed from a VM by Tern has no generalization of record; its firmware
 * is BIOS and its OS unknown unless said.
 */
export type NewTemplate = Omit<Template, 'generalization' | 'risk' | 'firmware' | 'os'> &
  Partial<Pick<Template, 'generalization' | 'risk' | 'firmware' | 'os'>>;

export class TemplateStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async list(): Promise<Template[]> {
    return (await this.#db.selectFrom('templates').selectAll().orderBy('name').execute()).map(toWire);
  }

  async get(name: string): Promise<Template> {
    const row = await this.#db
      .selectFrom('templates')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    if (!row) throw new TernError('not_found', `template ${name} does not exist`);
    return toWire(row);
  }

  async has(name: string): Promise<boolean> {
    return (
      (await this.#db.selectFrom('templates').select('name').where('name', '=', name).executeTakeFirst()) !==
      undefined
    );
  }

  /** The host the template's disk was made on. */
  async hostOf(name: string): Promise<string | null> {
    const row = await this.#db
      .selectFrom('templates')
      .select('hostId')
      .where('name', '=', name)
      .executeTakeFirst();
    return row?.hostId ?? null;
  }

  /** Names of the VMs whose disks are overlays on this template's disk. */
  async linkedClones(name: string): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('vms')
      .select('name')
      .where('template', '=', name)
      // Rows from before clone kinds were recorded are linked clones.
      .where((eb) => eb.or([eb('clone', '=', 'linked'), eb('clone', 'is', null)]))
      .orderBy('name')
      .execute();
    return rows.map((r) => r.name);
  }

  async remove(name: string): Promise<void> {
    await this.#db.deleteFrom('templates').where('name', '=', name).execute();
  }

  /** `hostId`: the host the template's disk was made on. */
  async insert(t: NewTemplate, hostId: string): Promise<void> {
    await this.#db
      .insertInto('templates')
      .values({
        name: t.name,
        description: t.description,
        machine: t.machine,
        vcpus: t.vcpus,
        memoryMib: t.memoryMiB,
        diskPool: t.disk.pool,
        diskPath: t.disk.path,
        hostId,
        diskSizeBytes: t.diskSizeBytes,
        boot: t.boot ? JSON.stringify(t.boot) : null,
        generalization: t.generalization ?? null,
        risk: t.risk ?? null,
        firmware: t.firmware ?? 'bios',
        osKind: t.os ?? null,
        createdAt: t.createdAt,
      })
      .execute();
  }
}

interface GuestManifest {
  name: string;
  key: string;
  kernel: string;
  initrd: string;
  disk: string;
  cmdline: string;
}

/** The OS kind the template a VM was made from records, if any (it may be gone since). */
export async function osOfTemplate(templates: TemplateStore, name: string | null): Promise<OsKind | null> {
  if (!name) return null;
  return (await templates.get(name).catch(() => null))?.os ?? null;
}

/**
 * Imports the test guest built by guest/build.sh (its output directory) as the `tiny`
 * template, copying kernel, initrd and disk into the host's pool. Idempotent.
 */
export async function importTinyTemplate(
  templates: TemplateStore,
  hostId: string,
  agent: AgentClient,
  guestDir: string,
  pool: string,
  log: Logger,
): Promise<void> {
  if (await templates.has('tiny')) return;
  const manifestFile = path.join(guestDir, 'manifest.json');
  if (!fs.existsSync(manifestFile)) {
    log.warn({ guestDir }, 'no test guest found; the tiny template is not available (run guest/build.sh)');
    return;
  }
  const m = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as GuestManifest;
  const dir = `templates/tiny-${m.key.slice(0, 12)}`;
  const ref = (file: string) => ({ pool, path: `${dir}/${file}` });
  const ensure = async (file: string, format: 'raw' | 'qcow2') => {
    const existing = await agent.volumeInfo(ref(file));
    return (
      existing ?? agent.importVolume({ volume: ref(file), sourcePath: path.join(guestDir, file), format })
    );
  };
  await ensure(m.kernel, 'raw');
  await ensure(m.initrd, 'raw');
  const disk = await ensure(m.disk, 'qcow2');
  await templates.insert(
    {
      name: 'tiny',
      description: 'Tern test guest: Debian kernel, busybox, qemu-ga, NoCloud seed support',
      machine: 'q35',
      vcpus: 1,
      memoryMiB: 256,
      disk: ref(m.disk),
      diskSizeBytes: disk.virtualBytes,
      boot: { kernel: ref(m.kernel), initrd: ref(m.initrd), cmdline: m.cmdline },
      createdAt: now(),
    },
    hostId,
  );
  log.info({ dir }, 'imported the tiny template');
}
