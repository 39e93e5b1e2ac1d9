/**
 * Projects (resource pools): quotas on VMs, vCPUs, memory and disk, and who may create in
 * them (users, or groups). Admission is serialized per project, so two requests racing for
 * the last vCPU cannot both get it.
 */
import { TernError } from '../../errors.ts';
import type { Project, Quota, Usage } from '../../wire/identity.ts';
import { type Db, now } from '../db/database.ts';
import type { ProjectTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { quotaRefusal, usageOf } from './quota.ts';

/** A user and the groups it belongs to. */
export interface Member {
  userId: string;
  groups: string[];
}

const quotaOf = (r: ProjectTable): Quota => ({
  vms: r.maxVms,
  vcpus: r.maxVcpus,
  memoryMiB: r.maxMemoryMib,
  diskBytes: r.maxDiskBytes === null ? null : Number(r.maxDiskBytes),
});

const quotaColumns = (q: Partial<Quota>) => ({
  ...(q.vms !== undefined ? { maxVms: q.vms } : {}),
  ...(q.vcpus !== undefined ? { maxVcpus: q.vcpus } : {}),
  ...(q.memoryMiB !== undefined ? { maxMemoryMib: q.memoryMiB } : {}),
  ...(q.diskBytes !== undefined ? { maxDiskBytes: q.diskBytes } : {}),
});

export class ProjectStore {
  readonly #db: Db;
  readonly #admitting = new Map<string, Promise<unknown>>();

  constructor(db: Db) {
    this.#db = db;
  }

  async create(p: { name: string; description?: string; quota?: Partial<Quota> }): Promise<Project> {
    if (await this.#row(p.name)) throw new TernError('conflict', `project ${p.name} already exists`);
    await this.#db
      .insertInto('projects')
      .values({
        name: p.name,
        description: p.description ?? '',
        maxVms: null,
        maxVcpus: null,
        maxMemoryMib: null,
        maxDiskBytes: null,
        ...quotaColumns(p.quota ?? {}),
        createdAt: now(),
      })
      .execute();
    return this.get(p.name);
  }

  async #row(name: string): Promise<ProjectTable | undefined> {
    return this.#db.selectFrom('projects').selectAll().where('name', '=', name).executeTakeFirst();
  }

  async get(name: string): Promise<Project> {
    const r = await this.#row(name);
    if (!r) throw new TernError('not_found', `project ${name} does not exist`);
    const members = await this.#db
      .selectFrom('projectMembers')
      .leftJoin('users', (j) =>
        j.onRef('users.id', '=', 'projectMembers.member').on('projectMembers.kind', '=', 'user'),
      )
      .select(['projectMembers.kind', 'projectMembers.member', 'users.name'])
      .where('project', '=', name)
      .orderBy('projectMembers.kind')
      .orderBy('projectMembers.member')
      .execute();
    return {
      name: r.name,
      description: r.description,
      quota: quotaOf(r),
      usage: await this.usage(name),
      members: members.map((m) => ({
        kind: m.kind === 'group' ? ('group' as const) : ('user' as const),
        name: m.kind === 'user' ? (m.name ?? m.member) : m.member,
      })),
      createdAt: r.createdAt,
    };
  }

  /** Every project, or those `member` belongs to. */
  async list(member?: Member): Promise<Project[]> {
    const names = member
      ? await this.namesFor(member)
      : (await this.#db.selectFrom('projects').select('name').orderBy('name').execute()).map((r) => r.name);
    return Promise.all(names.map((n) => this.get(n)));
  }

  /** The projects a user belongs to, itself or through one of its groups. */
  async namesFor(member: Member): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('projectMembers')
      .select('project')
      .distinct()
      .where((eb) =>
        eb.or([
          eb.and([eb('kind', '=', 'user'), eb('member', '=', member.userId)]),
          ...(member.groups.length
            ? [eb.and([eb('kind', '=', 'group'), eb('member', 'in', member.groups)])]
            : []),
        ]),
      )
      .orderBy('project')
      .execute();
    return rows.map((r) => r.project);
  }

  /**
   * The project a VM of `member` counts against: the one asked for, which a self-service
   * user must belong to, or a self-service user's only project. Null: no quota applies.
   */
  async choose(requested: string | undefined, member: Member | null): Promise<string | null> {
    if (requested !== undefined) {
      await this.get(requested);
      if (member && !(await this.namesFor(member)).includes(requested))
        throw new TernError('forbidden', `you are not a member of project ${requested}`);
      return requested;
    }
    if (!member) return null;
    const mine = await this.namesFor(member);
    if (mine.length === 1) return mine[0];
    if (mine.length === 0)
      throw new TernError(
        'forbidden',
        'you are in no project; an administrator must add you to one before you can create VMs',
      );
    throw new TernError('invalid_request', `name a project: you are in ${mine.join(', ')}`);
  }

  async update(name: string, change: { description?: string; quota?: Partial<Quota> }): Promise<Project> {
    await this.get(name);
    const set = {
      ...(change.description !== undefined ? { description: change.description } : {}),
      ...quotaColumns(change.quota ?? {}),
    };
    if (Object.keys(set).length > 0)
      await this.#db.updateTable('projects').set(set).where('name', '=', name).execute();
    return this.get(name);
  }

  async remove(name: string): Promise<void> {
    const p = await this.get(name);
    if (p.usage.vms > 0) throw new TernError('conflict', `project ${name} still has ${p.usage.vms} VMs`);
    await this.#db.deleteFrom('projects').where('name', '=', name).execute();
  }

  async addMember(name: string, kind: 'user' | 'group', member: string): Promise<void> {
    await this.get(name);
    await this.#db
      .insertInto('projectMembers')
      .values({ project: name, kind, member })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  async removeMember(name: string, kind: 'user' | 'group', member: string): Promise<void> {
    await this.#db
      .deleteFrom('projectMembers')
      .where('project', '=', name)
      .where('kind', '=', kind)
      .where('member', '=', member)
      .execute();
  }

  async usage(name: string): Promise<Usage> {
    const rows = await this.#db
      .selectFrom('vms')
      .select(['spec', 'diskSizes'])
      .where('project', '=', name)
      .execute();
    return usageOf(
      rows.map((r) => {
        const spec = vmSpecOf(r);
        const sizes = JSON.parse(r.diskSizes) as number[];
        return { vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, diskBytes: sizes.reduce((a, b) => a + b, 0) };
      }),
    );
  }

  /**
   * Runs `apply` (which records the new use) only if `request` fits the project's quota,
   * one admission per project at a time; refuses with a message naming the quota otherwise.
   */
  async admit<T>(name: string, request: Partial<Usage>, apply: () => Promise<T>): Promise<T> {
    const before = this.#admitting.get(name) ?? Promise.resolve();
    const run = before.then(async () => {
      const r = await this.#row(name);
      if (!r) throw new TernError('not_found', `project ${name} does not exist`);
      const why = quotaRefusal(name, quotaOf(r), await this.usage(name), request);
      if (why) throw new TernError('quota_exceeded', why, { project: name });
      return apply();
    });
    const settled = run.catch(() => undefined);
    this.#admitting.set(name, settled);
    void settled.then(() => {
      if (this.#admitting.get(name) === settled) this.#admitting.delete(name);
    });
    return run;
  }
}
