/**
 * Who may do what: roles and the permissions they carry. Pure data and decisions; each API
 * route names what it needs beside its handler, and the API's guard applies it. A route that
 * names nothing makes the manager refuse to start, so nothing is reachable by default.
 */

import { type Permission, permissions, type Role } from '../../wire/permissions.ts';

const readEverything: Permission[] = [
  'vm.read',
  'vm.all',
  'host.read',
  'cluster.read',
  'library.read',
  'task.read',
  'alert.read',
  'event.read',
  'identity.read',
  'project.read',
  'network.read',
  'backup.read',
  'replication.read',
];

export const rolePermissions: Record<Role, readonly Permission[]> = {
  admin: permissions,
  // Runs the infrastructure; does not manage people, keys or the audit trail.
  operator: [
    ...readEverything,
    'vm.write',
    'vm.delete',
    'vm.admin',
    'host.write',
    'cluster.write',
    'network.write',
    'backup.write',
    'replication.write',
    'library.write',
    'task.write',
    'secret.read',
    'secret.write',
  ],
  // Sees everything, the audit log included, and changes nothing; never sees a secret's value.
  auditor: [...readEverything, 'audit.read'],
  // Self-service: its own VMs, within the quotas of its projects.
  user: [
    'vm.read',
    'vm.write',
    'vm.delete',
    'library.read',
    'network.read',
    'task.read',
    'task.write',
    'project.read',
    'event.read',
    'secret.read',
    'secret.write',
  ],
};

/** What a principal holds: the union of its roles, narrowed by a token's scopes if it has any. */
export function effectivePermissions(
  held: readonly Role[],
  scopes: readonly Permission[] | null,
): Set<Permission> {
  const all = new Set(held.flatMap((r) => rolePermissions[r]));
  return scopes ? new Set(scopes.filter((p) => all.has(p))) : all;
}

/**
 * What a route needs, declared beside its handler (`config: { access }`): `public`, no principal;
 * `authenticated`, any principal (about itself only); or a permission.
 */
export type RouteRule = Permission | 'public' | 'authenticated';

/** Why a principal holding `held` may not take `rule`, or null when it may. */
export function refusal(rule: RouteRule, held: ReadonlySet<Permission>): string | null {
  if (rule === 'public' || rule === 'authenticated') return null;
  return held.has(rule) ? null : `this needs the permission ${rule}, which your role does not give`;
}
