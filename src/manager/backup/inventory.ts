/**
 * The backups the manager knows finished, per VM and datastore, with their figures. A row is
 * written only once the host said the backup's manifest is committed, and removed before its
 * manifest is: the inventory never lists a backup a restore could not find.
 */
import { TernError } from '../../errors.ts';
import type { Backup } from '../../wire/api/backups.ts';
import type { BackupDiskResult, BackupVmResult } from '../../wire/backup.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { type Db, now } from '../db/database.ts';
import type { BackupTable } from '../db/schema.ts';
import { dedupRatio, figuresOf, modeOf } from './figures.ts';

export interface BackupFilter {
  /** A VM's id, or the name it had (its backups outlive it). */
  vm?: string;
  datastoreId?: string;
}

export class BackupInventory {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Records a finished backup from the host's result. */
  async record(
    p: {
      datastoreId: string;
      vmId: string;
      vmName: string;
      spec: VmSpec;
      jobId: string | null;
      taskId: string;
      startedAt: string;
    },
    result: BackupVmResult,
  ): Promise<BackupTable> {
    const f = figuresOf(result.disks);
    const row: BackupTable = {
      datastoreId: p.datastoreId,
      vmId: p.vmId,
      id: result.id,
      vmName: p.vmName,
      spec: JSON.stringify(p.spec),
      jobId: p.jobId,
      taskId: p.taskId,
      consistency: result.consistency,
      consistencyNote: result.consistencyNote,
      disks: JSON.stringify(result.disks),
      ...f,
      manifestSha256: result.manifestSha256,
      startedAt: p.startedAt,
      createdAt: result.createdAt,
      verifiedAt: null,
      verifyOk: null,
      verifyProblems: null,
      provenAt: null,
      proof: null,
    };
    await this.#db
      .insertInto('backups')
      .values(row)
      .onConflict((oc) => oc.columns(['datastoreId', 'vmId', 'id']).doNothing())
      .execute();
    return row;
  }

  /**
   * Records the copy of a backup in another datastore (an offsite sync): the original's facts
   * and figures, unverified and unproven there. False when it was recorded already.
   */
  async recordCopy(original: BackupTable, datastoreId: string): Promise<boolean> {
    const row: BackupTable = {
      ...original,
      datastoreId,
      verifiedAt: null,
      verifyOk: null,
      verifyProblems: null,
      provenAt: null,
      proof: null,
    };
    const r = await this.#db
      .insertInto('backups')
      .values(row)
      .onConflict((oc) => oc.columns(['datastoreId', 'vmId', 'id']).doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async find(datastoreId: string, vmId: string, id: string): Promise<BackupTable | undefined> {
    return this.#db
      .selectFrom('backups')
      .selectAll()
      .where('datastoreId', '=', datastoreId)
      .where('vmId', '=', vmId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  /**
   * One backup of a VM, named as people name it (`vmRef`: its id, or the name it had), or by
   * the id of the VM that name has now (`vmId`); `datastoreId` picks among datastores holding
   * one of the same id.
   */
  async get(vmRef: string, id: string, datastoreId?: string, vmId?: string): Promise<BackupTable> {
    let q = this.#db
      .selectFrom('backups')
      .selectAll()
      .where((eb) =>
        eb.or([eb('vmId', '=', vmRef), eb('vmName', '=', vmRef), ...(vmId ? [eb('vmId', '=', vmId)] : [])]),
      )
      .where('id', '=', id);
    if (datastoreId) q = q.where('datastoreId', '=', datastoreId);
    const rows = await q.execute();
    if (rows.length === 0) throw new TernError('not_found', `no backup ${id} of VM ${vmRef}`);
    if (new Set(rows.map((r) => r.vmId)).size > 1)
      throw new TernError('conflict', `backups of several VMs named ${vmRef}: give the VM's id`);
    if (rows.length > 1)
      throw new TernError('conflict', `backup ${id} of VM ${vmRef} is in several datastores: name one`, {
        field: 'datastore',
      });
    return rows[0];
  }

  /** The newest backup of a VM in a datastore: what an incremental builds on. */
  async latest(datastoreId: string, vmId: string): Promise<BackupTable | undefined> {
    return this.#db
      .selectFrom('backups')
      .selectAll()
      .where('datastoreId', '=', datastoreId)
      .where('vmId', '=', vmId)
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** Newest first. */
  async list(f: BackupFilter = {}): Promise<BackupTable[]> {
    let q = this.#db.selectFrom('backups').selectAll();
    const vm = f.vm;
    if (vm) q = q.where((eb) => eb.or([eb('vmId', '=', vm), eb('vmName', '=', vm)]));
    if (f.datastoreId) q = q.where('datastoreId', '=', f.datastoreId);
    return q.orderBy('id', 'desc').orderBy('vmName').execute();
  }

  async remove(datastoreId: string, vmId: string, id: string): Promise<void> {
    await this.#db
      .deleteFrom('backups')
      .where('datastoreId', '=', datastoreId)
      .where('vmId', '=', vmId)
      .where('id', '=', id)
      .execute();
  }

  async setVerified(
    key: { datastoreId: string; vmId: string; id: string },
    ok: boolean,
    problems: readonly string[],
  ): Promise<void> {
    await this.#db
      .updateTable('backups')
      .set({ verifiedAt: now(), verifyOk: ok ? 1 : 0, verifyProblems: JSON.stringify(problems) })
      .where('datastoreId', '=', key.datastoreId)
      .where('vmId', '=', key.vmId)
      .where('id', '=', key.id)
      .execute();
  }

  /** A restore test booted it (`backup.prove`): what it measured. */
  async setProven(key: { datastoreId: string; vmId: string; id: string }, proof: unknown): Promise<void> {
    await this.#db
      .updateTable('backups')
      .set({ provenAt: now(), proof: JSON.stringify(proof) })
      .where('datastoreId', '=', key.datastoreId)
      .where('vmId', '=', key.vmId)
      .where('id', '=', key.id)
      .execute();
  }
}

/** The API's view of a row; `datastoreName` resolves its datastore's id. */
export function backupToWire(r: BackupTable, datastoreName: string): Backup {
  const disks = JSON.parse(r.disks) as BackupDiskResult[];
  return {
    datastore: datastoreName,
    vm: r.vmId,
    vmName: r.vmName,
    id: r.id,
    mode: modeOf(disks),
    consistency: r.consistency as Backup['consistency'],
    consistencyNote: r.consistencyNote,
    sizeBytes: r.sizeBytes,
    changedBytes: r.changedBytes,
    readBytes: r.readBytes,
    newBytes: r.newBytes,
    dedupRatio: dedupRatio(r),
    disks,
    startedAt: r.startedAt,
    createdAt: r.createdAt,
    verified:
      r.verifiedAt === null
        ? null
        : {
            at: r.verifiedAt,
            ok: r.verifyOk === 1,
            problems: JSON.parse(r.verifyProblems ?? '[]') as string[],
          },
    proven: r.provenAt === null ? null : { at: r.provenAt, detail: JSON.parse(r.proof ?? 'null') },
    job: r.jobId,
    task: r.taskId,
  };
}
