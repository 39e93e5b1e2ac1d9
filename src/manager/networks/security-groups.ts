/**
 * Security groups: named rule sets a NIC is put in. A group in use by a NIC, or named as the
 * peer of another group's rule, cannot go; a rule naming a group that does not exist is refused.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type {
  CreateSecurityGroupRequest,
  SecurityGroup,
  SecurityRule,
  UpdateSecurityGroupRequest,
} from '../../wire/network.ts';
import { type Db, now } from '../db/database.ts';
import type { SecurityGroupTable } from '../db/schema.ts';
import { isUniqueViolation } from './store.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const groupToWire = (g: SecurityGroupTable): SecurityGroup => ({
  id: g.id,
  name: g.name,
  inbound: g.inbound as SecurityGroup['inbound'],
  outbound: g.outbound as SecurityGroup['outbound'],
  rules: JSON.parse(g.rules) as SecurityRule[],
  createdAt: g.createdAt,
});

/** Ports only for tcp and udp, each range in order. Pure. */
export function checkRules(rules: readonly SecurityRule[], self: string, groups: ReadonlySet<string>): void {
  rules.forEach((r, i) => {
    const field = `rules/${i}`;
    if (r.ports && r.protocol !== 'tcp' && r.protocol !== 'udp')
      throw new TernError('invalid_request', `rule ${i}: ports are for tcp and udp, not ${r.protocol}`, {
        field,
      });
    if (r.ports && r.ports.from > r.ports.to)
      throw new TernError(
        'invalid_request',
        `rule ${i}: port range ${r.ports.from}-${r.ports.to} is backwards`,
        {
          field,
        },
      );
    if (r.peer && 'group' in r.peer && r.peer.group !== self && !groups.has(r.peer.group))
      throw new TernError('invalid_request', `rule ${i}: security group ${r.peer.group} does not exist`, {
        field,
      });
  });
}

export class SecurityGroupStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async #names(): Promise<Set<string>> {
    return new Set((await this.#db.selectFrom('securityGroups').select('name').execute()).map((g) => g.name));
  }

  async create(req: CreateSecurityGroupRequest): Promise<SecurityGroup> {
    const rules = req.rules ?? [];
    checkRules(rules, req.name, await this.#names());
    const row: SecurityGroupTable = {
      id: randomUUID(),
      name: req.name,
      inbound: req.inbound ?? 'deny',
      outbound: req.outbound ?? 'allow',
      rules: JSON.stringify(rules),
      createdAt: now(),
    };
    try {
      await this.#db.insertInto('securityGroups').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err))
        throw new TernError('conflict', `a security group named ${req.name} exists`);
      throw err;
    }
    return groupToWire(row);
  }

  async find(ref: string): Promise<SecurityGroupTable | undefined> {
    return this.#db
      .selectFrom('securityGroups')
      .selectAll()
      .where(uuidPattern.test(ref) ? 'id' : 'name', '=', ref)
      .executeTakeFirst();
  }

  async row(ref: string): Promise<SecurityGroupTable> {
    const row = await this.find(ref);
    if (!row) throw new TernError('not_found', `security group ${ref} does not exist`);
    return row;
  }

  async get(ref: string): Promise<SecurityGroup> {
    return groupToWire(await this.row(ref));
  }

  async rows(): Promise<SecurityGroupTable[]> {
    return this.#db.selectFrom('securityGroups').selectAll().orderBy('name').execute();
  }

  async list(): Promise<SecurityGroup[]> {
    return (await this.rows()).map(groupToWire);
  }

  async update(ref: string, req: UpdateSecurityGroupRequest): Promise<SecurityGroup> {
    const row = await this.row(ref);
    if (req.rules) checkRules(req.rules, row.name, await this.#names());
    const changes = {
      ...(req.inbound ? { inbound: req.inbound } : {}),
      ...(req.outbound ? { outbound: req.outbound } : {}),
      ...(req.rules ? { rules: JSON.stringify(req.rules) } : {}),
    };
    if (Object.keys(changes).length)
      await this.#db.updateTable('securityGroups').set(changes).where('id', '=', row.id).execute();
    return this.get(row.id);
  }

  /** The addresses of each group's NICs, by group name: what rules naming a group reach. */
  async members(): Promise<Map<string, string[]>> {
    const rows = await this.#db
      .selectFrom('nics')
      .innerJoin('securityGroups', 'securityGroups.id', 'nics.securityGroup')
      .select(['securityGroups.name', 'nics.ip'])
      .where('nics.ip', 'is not', null)
      .execute();
    const by = new Map<string, string[]>();
    for (const r of rows) by.set(r.name, [...(by.get(r.name) ?? []), r.ip!]);
    return by;
  }

  async remove(ref: string): Promise<SecurityGroupTable> {
    const row = await this.row(ref);
    const nic = await this.#db
      .selectFrom('nics')
      .innerJoin('vms', 'vms.id', 'nics.vmId')
      .select('vms.name')
      .where('nics.securityGroup', '=', row.id)
      .executeTakeFirst();
    if (nic)
      throw new TernError('conflict', `security group ${row.name} is in use by a NIC of VM ${nic.name}`, {
        vm: nic.name,
      });
    const naming = (await this.rows()).find(
      (g) =>
        g.id !== row.id &&
        groupToWire(g).rules.some((r) => r.peer && 'group' in r.peer && r.peer.group === row.name),
    );
    if (naming)
      throw new TernError('conflict', `security group ${naming.name} has a rule naming ${row.name}`, {
        group: naming.name,
      });
    await this.#db.deleteFrom('securityGroups').where('id', '=', row.id).execute();
    return row;
  }
}
