/**
 * Backup jobs as the manager keeps them: a selection (VM ids, placement groups, projects), a
 * schedule read once when written (a schedule that cannot be read or never happens is refused
 * then, not found out by a job that never runs), a retention, bounds. The scheduler reads them
 * to know what is due; a run records its outcome here.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type {
  BackupJob,
  BackupJobResult,
  CreateBackupJobBody,
  Retention,
  UpdateBackupJobBody,
} from '../../wire/api/backup-jobs.ts';
import { groupsNamed } from '../cluster/groups.ts';
import { type Db, now } from '../db/database.ts';
import type { BackupJobTable, DatastoreTable } from '../db/schema.ts';
import type { Zone } from './calendar.ts';
import type { ScheduledJob } from './due.ts';
import { checkRetention } from './retention.ts';
import { nextRun, nextRuns, parseSchedule } from './schedule.ts';
import { type BackupSelection, isEmptySelection } from './selection.ts';

/** Where a job's datastore is looked up (the datastore service). */
export interface DatastoreLookup {
  row(ref: string): Promise<DatastoreTable>;
}

export const defaultConcurrencyPerHost = 1;
export const defaultConcurrencyPerDatastore = 4;

export class BackupJobs {
  readonly #db: Db;
  readonly #datastores: DatastoreLookup;
  readonly #zone: Zone;

  constructor(db: Db, datastores: DatastoreLookup, zone: Zone = 'local') {
    this.#db = db;
    this.#datastores = datastores;
    this.#zone = zone;
  }

  get zone(): Zone {
    return this.#zone;
  }

  async create(body: CreateBackupJobBody): Promise<BackupJob> {
    const schedule = parseSchedule(body.schedule);
    const retention = checkRetention(body.retention ?? {});
    const datastore = await this.#datastores.row(body.datastore);
    if (await this.#find(body.name)) throw new TernError('conflict', `backup job ${body.name} exists`);
    const selection = await this.#selection(body);
    const enabled = body.enabled ?? true;
    const row: BackupJobTable = {
      id: randomUUID(),
      name: body.name,
      datastoreId: datastore.id,
      selection: JSON.stringify(selection),
      schedule: schedule.text,
      retention: JSON.stringify(retention),
      concurrencyPerHost: body.concurrencyPerHost ?? defaultConcurrencyPerHost,
      concurrencyPerDatastore: body.concurrencyPerDatastore ?? defaultConcurrencyPerDatastore,
      bandwidth: body.bandwidth ?? 0,
      prove: body.prove ? 1 : 0,
      enabled: enabled ? 1 : 0,
      lastRunAt: null,
      nextRunAt: enabled ? (nextRun(schedule, new Date(), this.#zone)?.toISOString() ?? null) : null,
      lastResult: null,
      lastTaskId: null,
      createdAt: now(),
    };
    await this.#db.insertInto('backupJobs').values(row).execute();
    return this.toWire(row, true);
  }

  /**
   * The lists given, checked: VM names resolved to ids (a rename keeps the job's VMs), groups
   * and projects that exist. A list not given stays as `current` has it (a VM deleted since
   * included: it is reported at each run until the job no longer names it).
   */
  async #selection(
    given: Pick<CreateBackupJobBody, 'vms' | 'groups' | 'projects'>,
    current: BackupSelection = { vms: [], groups: [], projects: [] },
  ): Promise<BackupSelection> {
    let vms = current.vms;
    if (given.vms) {
      vms = [];
      for (const ref of new Set(given.vms)) {
        const vm = await this.#db
          .selectFrom('vms')
          .select('id')
          .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
          .executeTakeFirst();
        if (!vm) throw new TernError('not_found', `VM ${ref} does not exist`, { field: 'vms' });
        if (!vms.includes(vm.id)) vms.push(vm.id);
      }
    }
    const groups = given.groups ? [...new Set(given.groups)] : current.groups;
    if (given.groups) await groupsNamed(this.#db, groups);
    const projects = given.projects ? [...new Set(given.projects)] : current.projects;
    for (const p of given.projects ? projects : []) {
      const found = await this.#db
        .selectFrom('projects')
        .select('name')
        .where('name', '=', p)
        .executeTakeFirst();
      if (!found) throw new TernError('not_found', `project ${p} does not exist`, { field: 'projects' });
    }
    const selection = { vms, groups, projects };
    if (isEmptySelection(selection))
      throw new TernError(
        'invalid_request',
        'a backup job selects VMs: name VMs, placement groups or projects',
      );
    return selection;
  }

  async #find(ref: string): Promise<BackupJobTable | undefined> {
    return this.#db
      .selectFrom('backupJobs')
      .selectAll()
      .where((eb) => eb.or([eb('name', '=', ref), eb('id', '=', ref)]))
      .executeTakeFirst();
  }

  async row(ref: string): Promise<BackupJobTable> {
    const row = await this.#find(ref);
    if (!row) throw new TernError('not_found', `backup job ${ref} does not exist`);
    return row;
  }

  async list(): Promise<BackupJob[]> {
    const rows = await this.#db.selectFrom('backupJobs').selectAll().orderBy('name').execute();
    return Promise.all(rows.map((r) => this.toWire(r, false)));
  }

  async show(ref: string): Promise<BackupJob> {
    return this.toWire(await this.row(ref), true);
  }

  async update(ref: string, body: UpdateBackupJobBody): Promise<BackupJob> {
    const row = await this.row(ref);
    const schedule = parseSchedule(body.schedule ?? row.schedule);
    const enabled = body.enabled ?? row.enabled === 1;
    const selection =
      body.vms || body.groups || body.projects
        ? JSON.stringify(await this.#selection(body, this.selectionOf(row)))
        : row.selection;
    const changes: Partial<BackupJobTable> = {
      selection,
      schedule: schedule.text,
      enabled: enabled ? 1 : 0,
      ...(body.prove !== undefined ? { prove: body.prove ? 1 : 0 } : {}),
      ...(body.retention ? { retention: JSON.stringify(checkRetention(body.retention)) } : {}),
    };
    // A new schedule or a job enabled again is planned from now; a disabled one has no next run.
    if (!enabled) changes.nextRunAt = null;
    else if (body.schedule !== undefined || row.enabled === 0)
      changes.nextRunAt = nextRun(schedule, new Date(), this.#zone)?.toISOString() ?? null;
    await this.#db.updateTable('backupJobs').set(changes).where('id', '=', row.id).execute();
    return this.show(row.id);
  }

  /** Removes the job; its backups stay. A run in progress goes on to its end. */
  async remove(ref: string): Promise<void> {
    const row = await this.row(ref);
    await this.#db.deleteFrom('backupJobs').where('id', '=', row.id).execute();
  }

  /** Every job as the scheduler decides over them. */
  async scheduled(): Promise<ScheduledJob[]> {
    const rows = await this.#db.selectFrom('backupJobs').selectAll().execute();
    return rows.map((r) => ({
      id: r.id,
      schedule: parseSchedule(r.schedule),
      enabled: r.enabled === 1,
      nextRunAt: r.nextRunAt === null ? null : new Date(r.nextRunAt),
    }));
  }

  /**
   * Moves a job's next run from `was` (as read) to `at`; false when it was no longer `was`:
   * another scheduler (a second manager on the same database) took this run, or the job was
   * changed meanwhile. Only the one that moved it starts the run.
   */
  async setNextRun(id: string, at: Date | null, was: Date | null): Promise<boolean> {
    const r = await this.#db
      .updateTable('backupJobs')
      .set({ nextRunAt: at?.toISOString() ?? null })
      .where('id', '=', id)
      .where('nextRunAt', was === null ? 'is' : '=', was?.toISOString() ?? null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async recordStart(id: string, taskId: string): Promise<void> {
    await this.#db
      .updateTable('backupJobs')
      .set({ lastRunAt: now(), lastTaskId: taskId })
      .where('id', '=', id)
      .execute();
  }

  async recordResult(id: string, result: BackupJobResult): Promise<void> {
    await this.#db
      .updateTable('backupJobs')
      .set({ lastResult: JSON.stringify(result) })
      .where('id', '=', id)
      .execute();
  }

  selectionOf(row: BackupJobTable): BackupSelection {
    return JSON.parse(row.selection) as BackupSelection;
  }

  retentionOf(row: BackupJobTable): Retention {
    return JSON.parse(row.retention) as Retention;
  }

  async toWire(r: BackupJobTable, withNextRuns: boolean): Promise<BackupJob> {
    const selection = this.selectionOf(r);
    const names = new Map(
      selection.vms.length === 0
        ? []
        : (
            await this.#db.selectFrom('vms').select(['id', 'name']).where('id', 'in', selection.vms).execute()
          ).map((v) => [v.id, v.name]),
    );
    const datastore = await this.#db
      .selectFrom('datastores')
      .select('name')
      .where('id', '=', r.datastoreId)
      .executeTakeFirst();
    return {
      id: r.id,
      name: r.name,
      datastore: datastore?.name ?? r.datastoreId,
      vms: selection.vms.map((id) => names.get(id) ?? id),
      groups: selection.groups,
      projects: selection.projects,
      schedule: r.schedule,
      retention: this.retentionOf(r),
      concurrencyPerHost: r.concurrencyPerHost,
      concurrencyPerDatastore: r.concurrencyPerDatastore,
      bandwidth: r.bandwidth,
      prove: r.prove === 1,
      enabled: r.enabled === 1,
      lastRunAt: r.lastRunAt,
      nextRunAt: r.nextRunAt,
      lastResult: r.lastResult === null ? null : (JSON.parse(r.lastResult) as BackupJobResult),
      lastTask: r.lastTaskId,
      ...(withNextRuns
        ? {
            nextRuns:
              r.enabled === 1
                ? nextRuns(parseSchedule(r.schedule), new Date(), 5, this.#zone).map((d) => d.toISOString())
                : [],
          }
        : {}),
      createdAt: r.createdAt,
    };
  }
}
