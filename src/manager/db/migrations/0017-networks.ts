import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
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
};
