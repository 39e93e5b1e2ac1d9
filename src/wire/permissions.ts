/**
 * The names of access: roles and the permissions they carry. Part of the contract (the API
 * reports and accepts them); what each role holds is decided in manager/auth/permissions.ts.
 */

export const roles = ['admin', 'operator', 'auditor', 'user'] as const;
export type Role = (typeof roles)[number];

export const permissions = [
  'vm.read',
  'vm.write',
  'vm.delete',
  /** Placement of VMs: migration, HA policy, moving disks between pools. */
  'vm.admin',
  /** The VM permissions apply to every VM, not only to the principal's own. */
  'vm.all',
  'host.read',
  'host.write',
  'cluster.read',
  'cluster.write',
  'library.read',
  'library.write',
  'task.read',
  'task.write',
  'alert.read',
  'event.read',
  'audit.read',
  'identity.read',
  'identity.write',
  'project.read',
  'project.write',
  /** Managed networks and security groups: reading them, and making or removing them. */
  'network.read',
  'network.write',
  /** Backup datastores and backups: seeing them, and running, restoring, pruning, collecting. */
  'backup.read',
  'backup.write',
  /** Replicated VMs: seeing them and their recovery points, and replicating, pausing, removing. */
  'replication.read',
  'replication.write',
  'secret.read',
  'secret.write',
  'key.admin',
] as const;
export type Permission = (typeof permissions)[number];

export const isRole = (x: string): x is Role => (roles as readonly string[]).includes(x);
export const isPermission = (x: string): x is Permission => (permissions as readonly string[]).includes(x);
