/**
 * Schema migrations, in order, written with Kysely's schema builder so the same steps run on
 * SQLite and (for manager clusters) PostgreSQL. Never edit a released migration; add one.
 */
import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists
type Db = Kysely<any>;

const migrations: Record<string, Migration> = {
  '0001-foundation': {
    async up(db: Db) {
      await db.schema
        .createTable('hosts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('address', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('last_seen', 'text')
        .addColumn('facts', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('templates')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('machine', 'text', (c) => c.notNull())
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mib', 'integer', (c) => c.notNull())
        .addColumn('disk_pool', 'text', (c) => c.notNull())
        .addColumn('disk_path', 'text', (c) => c.notNull())
        .addColumn('disk_size_bytes', 'bigint', (c) => c.notNull())
        .addColumn('boot', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('vms')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('state_reason', 'text')
        .addColumn('template', 'text')
        .addColumn('spec', 'text', (c) => c.notNull())
        .addColumn('disk_sizes', 'text', (c) => c.notNull())
        .addColumn('guest', 'text', (c) => c.notNull())
        .addColumn('vnc_port', 'integer')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('vms_state').on('vms').column('state').execute();
      await db.schema.createIndex('vms_host').on('vms').column('host_id').execute();
      await db.schema
        .createTable('tasks')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('objects', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('step', 'text', (c) => c.notNull())
        .addColumn('progress', 'integer', (c) => c.notNull())
        .addColumn('cancel_requested', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('params', 'text', (c) => c.notNull())
        .addColumn('result', 'text')
        .addColumn('error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .execute();
      await db.schema.createIndex('tasks_state').on('tasks').column('state').execute();
      await db.schema.createIndex('tasks_created').on('tasks').column('created_at').execute();
      await db.schema
        .createTable('task_log')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('task_id', 'text', (c) => c.notNull().references('tasks.id').onDelete('cascade'))
        .addColumn('time', 'text', (c) => c.notNull())
        .addColumn('line', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('task_log_task').on('task_log').column('task_id').execute();
      await db.schema
        .createTable('task_locks')
        .addColumn('object', 'text', (c) => c.primaryKey())
        .addColumn('task_id', 'text', (c) => c.notNull().references('tasks.id').onDelete('cascade'))
        .execute();
      await db.schema
        .createTable('api_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text')
        .addColumn('last_used_at', 'text')
        .execute();
      await sql`select 1`.execute(db);
    },
  },
  '0002-images': {
    async up(db: Db) {
      await db.schema
        .createTable('images')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('format', 'text', (c) => c.notNull())
        .addColumn('source_format', 'text', (c) => c.notNull())
        .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
        .addColumn('pool', 'text', (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('virtual_bytes', 'bigint', (c) => c.notNull())
        .addColumn('actual_bytes', 'bigint', (c) => c.notNull())
        .addColumn('sha256', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0003-provisioning': {
    async up(db: Db) {
      await db.schema.alterTable('vms').addColumn('clone', 'text').execute();
      await db.schema.alterTable('vms').addColumn('client_machine_id', 'text').execute();
    },
  },
  '0004-alerts': {
    async up(db: Db) {
      await db.schema
        .createTable('alerts')
        .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('object', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('raised_at', 'text', (c) => c.notNull())
        .addColumn('cleared_at', 'text')
        .execute();
      await db.schema.createIndex('alerts_id').on('alerts').column('id').execute();
    },
  },
  '0005-image-pools': {
    async up(db: Db) {
      await db.schema
        .createTable('image_pools')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('template', 'text', (c) => c.notNull())
        .addColumn('host_id', 'text', (c) => c.notNull())
        .addColumn('disk_pool', 'text', (c) => c.notNull())
        .addColumn('cache', 'text', (c) => c.notNull())
        .addColumn('max_unavailable_percent', 'integer', (c) => c.notNull())
        .addColumn('chain_limit', 'integer', (c) => c.notNull())
        .addColumn('production', 'integer', (c) => c.notNull())
        .addColumn('previous', 'integer')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('image_pool_versions')
        .addColumn('pool', 'text', (c) => c.notNull().references('image_pools.name').onDelete('cascade'))
        .addColumn('number', 'integer', (c) => c.notNull())
        .addColumn('parent', 'integer')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('maintenance_vm', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('image_pool_versions_pk', ['pool', 'number'])
        .execute();
      await db.schema.alterTable('vms').addColumn('image_pool', 'text').execute();
      await db.schema.alterTable('vms').addColumn('pool_version', 'integer').execute();
    },
  },
  '0006-cluster': {
    async up(db: Db) {
      // Hosts are known by the certificate they were issued at join, no longer by a shared token.
      await db.schema.alterTable('hosts').dropColumn('token').execute();
      await db.schema.alterTable('hosts').addColumn('cert_fingerprint', 'text').execute();
      await db.schema.alterTable('hosts').addColumn('cert_serial', 'text').execute();
      await db.schema.alterTable('hosts').addColumn('cert_expires_at', 'text').execute();
      await db.schema.alterTable('hosts').addColumn('joined_at', 'text').execute();
      await db.schema
        .createTable('join_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('host_name', 'text', (c) => c.notNull())
        .addColumn('secret_hash', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .execute();
      await db.schema
        .createTable('revoked_certificates')
        .addColumn('serial', 'text', (c) => c.primaryKey())
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('host_name', 'text', (c) => c.notNull())
        .addColumn('revoked_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('revoked_certificates_fingerprint')
        .on('revoked_certificates')
        .column('fingerprint')
        .execute();
      await db.schema
        .alterTable('vms')
        .addColumn('cpu_mode', 'text', (c) => c.notNull().defaultTo('compat'))
        .execute();
      await db.schema
        .createTable('placement_groups')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('placement_group_members')
        .addColumn('group_name', 'text', (c) =>
          c.notNull().references('placement_groups.name').onDelete('cascade'),
        )
        .addColumn('vm_id', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('placement_group_members_pk', ['group_name', 'vm_id'])
        .execute();
      // Which host a template was made on: its disk is reachable from there (and from every
      // host, when its pool is shared).
      await db.schema.alterTable('templates').addColumn('host_id', 'text').execute();
      await sql`UPDATE templates SET host_id = (SELECT id FROM hosts ORDER BY created_at LIMIT 1)`.execute(
        db,
      );
      await db.schema
        .createTable('settings')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0007-ha': {
    async up(db: Db) {
      // Each host renews its HA lease in its own slot of the statefile.
      await db.schema.alterTable('hosts').addColumn('ha_slot', 'integer').execute();
      await sql`UPDATE hosts SET ha_slot = (SELECT COUNT(*) FROM hosts h2 WHERE h2.created_at < hosts.created_at OR (h2.created_at = hosts.created_at AND h2.id < hosts.id))`.execute(
        db,
      );
      await db.schema.alterTable('vms').addColumn('ha_policy', 'text').execute();
    },
  },
  '0008-ha-acknowledged': {
    async up(db: Db) {
      // The protected VMs a host confirmed it enforces (a JSON array of VM ids): only those
      // does its fence kill, so only those may restart elsewhere when it fails.
      await db.schema.alterTable('hosts').addColumn('ha_acknowledged', 'text').execute();
    },
  },
  '0009-identity': {
    async up(db: Db) {
      // People: local users have a scrypt hash; LDAP users only a record of their last login.
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('display_name', 'text')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('password_hash', 'text')
        .addColumn('role', 'text')
        .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('last_login_at', 'text')
        .execute();
      // A group gives its members a role; `ldap_group` maps a directory group onto it.
      await db.schema
        .createTable('user_groups')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('ldap_group', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('user_group_members')
        .addColumn('group_name', 'text', (c) =>
          c.notNull().references('user_groups.name').onDelete('cascade'),
        )
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addPrimaryKeyConstraint('user_group_members_pk', ['group_name', 'user_id'])
        .execute();
      await db.schema
        .createTable('sessions')
        .addColumn('hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'text', (c) => c.notNull())
        .addColumn('source_ip', 'text')
        .execute();
      // Tokens belong to a user and may narrow its rights to some permissions.
      await db.schema.alterTable('api_tokens').addColumn('user_id', 'text').execute();
      await db.schema.alterTable('api_tokens').addColumn('scopes', 'text').execute();
      await db.schema.alterTable('api_tokens').addColumn('revoked_at', 'text').execute();
      // Projects: quotas, and who may create in them (users or groups).
      await db.schema
        .createTable('projects')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('max_vms', 'integer')
        .addColumn('max_vcpus', 'integer')
        .addColumn('max_memory_mib', 'integer')
        .addColumn('max_disk_bytes', 'bigint')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('project_members')
        .addColumn('project', 'text', (c) => c.notNull().references('projects.name').onDelete('cascade'))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('member', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('project_members_pk', ['project', 'kind', 'member'])
        .execute();
      await db.schema.alterTable('vms').addColumn('owner_id', 'text').execute();
      await db.schema.alterTable('vms').addColumn('project', 'text').execute();
      await db.schema.createIndex('vms_owner').on('vms').column('owner_id').execute();
      await db.schema.createIndex('vms_project').on('vms').column('project').execute();
      await db.schema.alterTable('tasks').addColumn('requested_by', 'text').execute();
      // Append-only: the triggers refuse to change or remove a record, whoever asks.
      await db.schema
        .createTable('audit_log')
        .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('actor_id', 'text')
        .addColumn('via', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('object', 'text', (c) => c.notNull())
        .addColumn('source_ip', 'text')
        .addColumn('result', 'text', (c) => c.notNull())
        .addColumn('status', 'integer')
        .addColumn('detail', 'text')
        .execute();
      await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();
      await sql`CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END`.execute(
        db,
      );
      await sql`CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END`.execute(
        db,
      );
      // Secrets: each value under its own data key, wrapped by a key-encryption key that
      // lives in the key store, never here.
      await db.schema
        .createTable('secrets')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('object', 'text')
        .addColumn('owner_id', 'text')
        .addColumn('kek_id', 'text', (c) => c.notNull())
        .addColumn('envelope', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('secrets_kek').on('secrets').column('kek_id').execute();
    },
  },
  '0010-group-members-by-user': {
    async up(db: Db) {
      // Every authenticated request looks up its user's groups.
      await db.schema
        .createIndex('user_group_members_user')
        .on('user_group_members')
        .column('user_id')
        .execute();
    },
  },
  '0011-kept-volumes': {
    async up(db: Db) {
      // Disks kept without a VM are no orphans: the host's report is compared with these.
      await db.schema
        .createTable('kept_volumes')
        .addColumn('pool', 'text', (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('kept_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('kept_volumes_pk', ['pool', 'path'])
        .execute();
    },
  },
  '0012-ha-restart-from': {
    async up(db: Db) {
      // Half-done HA restarts were told by their state reason, which any report overwrites.
      await db.schema.alterTable('vms').addColumn('ha_restart_from', 'text').execute();
      // Any unfinished failover finished every such restart; one of them now finishes these.
      const failover = await db
        .selectFrom('tasks')
        .select('params')
        .where('kind', '=', 'ha.failover')
        .where('state', 'in', ['queued', 'running'])
        .executeTakeFirst();
      const from = failover ? (JSON.parse(failover.params) as { hostId?: string }).hostId : undefined;
      if (from) {
        await db
          .updateTable('vms')
          .set({ ha_restart_from: from })
          .where('state_reason', '=', 'restarting: its host failed')
          .where('state', '=', 'stopped')
          .execute();
      }
    },
  },
  '0013-audit-retention': {
    async up(db: Db) {
      // The one delete the audit log allows: records older than the retention the operator set
      // (settings key `audit`, at least a day), never any when none is set. Updates stay refused.
      await sql`DROP TRIGGER audit_log_no_delete`.execute(db);
      await sql`CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        WHEN NOT coalesce(OLD.at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (
          SELECT CAST(json_extract(value, '$.retentionDays') AS INTEGER) FROM settings
          WHERE key = 'audit' AND json_extract(value, '$.retentionDays') >= 1) || ' days'), 0)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: only records older than its retention may go'); END`.execute(
        db,
      );
    },
  },
  '0015-template-generalization': {
    async up(db: Db) {
      await db.schema.alterTable('templates').addColumn('generalization', 'text').execute();
      await db.schema.alterTable('templates').addColumn('risk', 'text').execute();
      // Until now a VM was sealed as it was, into templates/<name>/: those templates are not
      // generalized. Others (the tiny guest's) were not sealed by Tern.
      await db
        .updateTable('templates')
        .set({ generalization: 'none', risk: 'clones share machine-id and SSH host keys' })
        .where(sql<boolean>`disk_path = 'templates/' || name || '/disk.qcow2'`)
        .execute();
    },
  },
  '0016-library-media': {
    async up(db: Db) {
      // Templates say which firmware their clones boot with and what OS they hold.
      await db.schema
        .alterTable('templates')
        .addColumn('firmware', 'text', (c) => c.notNull().defaultTo('bios'))
        .execute();
      await db.schema.alterTable('templates').addColumn('os_kind', 'text').execute();
      // A VM made from an image: a linked clone on it keeps the image from being deleted.
      await db.schema.alterTable('vms').addColumn('image', 'text').execute();
      await db.schema.createIndex('vms_image').on('vms').column('image').execute();
    },
  },
  '0017-networks': {
    async up(db: Db) {
      // Managed networks; the manager decides every name and number a host realizes.
      await db.schema
        .createTable('networks')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('subnet', 'text', (c) => c.notNull())
        .addColumn('gateway', 'text')
        .addColumn('gateway_mac', 'text', (c) => c.notNull().unique())
        .addColumn('dns', 'text', (c) => c.notNull())
        .addColumn('dhcp_start', 'text')
        .addColumn('dhcp_end', 'text')
        .addColumn('domain', 'text')
        .addColumn('uplink', 'text')
        .addColumn('vlan', 'integer')
        .addColumn('vni', 'integer', (c) => c.unique())
        .addColumn('mtu', 'integer', (c) => c.notNull())
        .addColumn('bridge', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('security_groups')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('inbound', 'text', (c) => c.notNull())
        .addColumn('outbound', 'text', (c) => c.notNull())
        .addColumn('rules', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      // Every NIC of every VM: its MAC is unique cluster-wide (the key), its address unique in
      // its network. A network or group in use cannot go (no cascade); a VM's NICs go with it.
      await db.schema
        .createTable('nics')
        .addColumn('mac', 'text', (c) => c.primaryKey())
        .addColumn('vm_id', 'text', (c) => c.notNull().references('vms.id').onDelete('cascade'))
        .addColumn('network_id', 'text', (c) => c.references('networks.id'))
        .addColumn('ip', 'text')
        .addColumn('security_group', 'text', (c) => c.references('security_groups.id'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('nics_network_ip', ['network_id', 'ip'])
        .execute();
      await db.schema.createIndex('nics_vm').on('nics').column('vm_id').execute();
      await db.schema.createIndex('nics_group').on('nics').column('security_group').execute();
      // The MACs VMs already have are taken; two alike (random ones that met) keep the first.
      // (Rows come back camelCased: the migrator runs through the manager's CamelCasePlugin.)
      const vms = await db.selectFrom('vms').select(['id', 'spec', 'created_at']).execute();
      for (const vm of vms as unknown as { id: string; spec: string; createdAt: string }[]) {
        const nics = (JSON.parse(vm.spec) as { nics?: { mac?: string }[] }).nics ?? [];
        for (const nic of nics) {
          if (typeof nic.mac !== 'string') continue;
          await db
            .insertInto('nics')
            .values({ mac: nic.mac, vm_id: vm.id, created_at: vm.createdAt })
            .onConflict((oc) => oc.column('mac').doNothing())
            .execute();
        }
      }
    },
  },
  '0018-host-networks': {
    async up(db: Db) {
      // What each host last said of each network: placement reads it, also right after a
      // manager restart, before the hosts have been given their networks again.
      await db.schema
        .createTable('host_networks')
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
        .addColumn('network_id', 'text', (c) => c.notNull().references('networks.id').onDelete('cascade'))
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('dhcp', 'text', (c) => c.notNull())
        .addColumn('ports', 'integer', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('host_networks_pk', ['host_id', 'network_id'])
        .execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
