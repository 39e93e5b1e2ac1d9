/**
 * Who may do what: roles, the permissions they carry, and the permission every API route
 * needs. Pure data and decisions; the API's guard applies them. A route missing from
 * `routePermissions` makes the manager refuse to start, so nothing is reachable by default.
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
 * `public`: no principal needed; `authenticated`: any principal (about itself only).
 * Keys are `METHOD /route` exactly as registered.
 */
export type RouteRule = Permission | 'public' | 'authenticated';

export const routePermissions: Record<string, RouteRule> = {
  'GET /api/v1/health': 'public',
  'GET /api/v1/openapi.json': 'public',
  'POST /api/v1/session': 'public',
  'GET /api/v1/session': 'authenticated',
  'DELETE /api/v1/session': 'authenticated',
  'PUT /api/v1/session/password': 'authenticated',

  'GET /api/v1/tokens': 'authenticated',
  'POST /api/v1/tokens': 'authenticated',
  'DELETE /api/v1/tokens/:id': 'authenticated',

  'GET /api/v1/users': 'identity.read',
  'POST /api/v1/users': 'identity.write',
  'GET /api/v1/users/:user': 'identity.read',
  'PATCH /api/v1/users/:user': 'identity.write',
  'DELETE /api/v1/users/:user': 'identity.write',
  'GET /api/v1/groups': 'identity.read',
  'POST /api/v1/groups': 'identity.write',
  'DELETE /api/v1/groups/:group': 'identity.write',
  'PUT /api/v1/groups/:group/members/:user': 'identity.write',
  'DELETE /api/v1/groups/:group/members/:user': 'identity.write',
  'GET /api/v1/identity/ldap': 'identity.read',
  'PUT /api/v1/identity/ldap': 'identity.write',
  'DELETE /api/v1/identity/ldap': 'identity.write',

  'GET /api/v1/projects': 'project.read',
  'POST /api/v1/projects': 'project.write',
  'GET /api/v1/projects/:project': 'project.read',
  'PATCH /api/v1/projects/:project': 'project.write',
  'DELETE /api/v1/projects/:project': 'project.write',
  'PUT /api/v1/projects/:project/members/:kind/:member': 'project.write',
  'DELETE /api/v1/projects/:project/members/:kind/:member': 'project.write',

  'GET /api/v1/audit': 'audit.read',

  'GET /api/v1/secrets': 'secret.read',
  'POST /api/v1/secrets': 'secret.write',
  'GET /api/v1/secrets/:name': 'secret.read',
  'POST /api/v1/secrets/:name/reveal': 'secret.read',
  'DELETE /api/v1/secrets/:name': 'secret.write',
  'GET /api/v1/keys': 'key.admin',
  'POST /api/v1/keys/rotate': 'key.admin',
  'POST /api/v1/keys/backup': 'key.admin',

  'GET /api/v1/vms': 'vm.read',
  'POST /api/v1/vms': 'vm.write',
  'GET /api/v1/vms/:vm': 'vm.read',
  'DELETE /api/v1/vms/:vm': 'vm.delete',
  'GET /api/v1/vms/:vm/console': 'vm.write',
  'POST /api/v1/vms/:vm/start': 'vm.write',
  'POST /api/v1/vms/:vm/stop': 'vm.write',
  'POST /api/v1/vms/:vm/pause': 'vm.write',
  'POST /api/v1/vms/:vm/resume': 'vm.write',
  'POST /api/v1/vms/:vm/shutdown': 'vm.write',
  'POST /api/v1/vms/:vm/reboot': 'vm.write',
  // Commands in the guest are operating the VM, as its power actions are.
  'POST /api/v1/vms/:vm/exec': 'vm.write',
  'POST /api/v1/vms/:vm/files/read': 'vm.write',
  'POST /api/v1/vms/:vm/disks': 'vm.write',
  'DELETE /api/v1/vms/:vm/disks/:index': 'vm.write',
  'POST /api/v1/vms/:vm/disks/:index/resize': 'vm.write',
  'POST /api/v1/vms/:vm/disks/:index/move': 'vm.admin',
  'POST /api/v1/vms/:vm/cdrom': 'vm.write',
  'DELETE /api/v1/vms/:vm/cdrom': 'vm.write',
  'GET /api/v1/vms/:vm/snapshots': 'vm.read',
  'POST /api/v1/vms/:vm/snapshots': 'vm.write',
  'DELETE /api/v1/vms/:vm/snapshots/:name': 'vm.write',
  'POST /api/v1/vms/:vm/snapshots/:name/revert': 'vm.write',
  'PUT /api/v1/vms/:vm/ha': 'vm.admin',
  'POST /api/v1/vms/:vm/migrate': 'vm.admin',
  'POST /api/v1/vms/:vm/migrate/preview': 'vm.admin',

  'GET /api/v1/tasks': 'task.read',
  'GET /api/v1/tasks/:id': 'task.read',
  'POST /api/v1/tasks/:id/cancel': 'task.write',
  'GET /api/v1/events': 'event.read',
  'GET /api/v1/alerts': 'alert.read',

  'GET /api/v1/hosts': 'host.read',
  'POST /api/v1/hosts': 'host.write',
  'GET /api/v1/hosts/:host': 'host.read',
  'DELETE /api/v1/hosts/:host': 'host.write',
  'GET /api/v1/hosts/:host/orphans': 'host.read',
  'POST /api/v1/hosts/:host/orphans/:id/adopt': 'host.write',
  'DELETE /api/v1/hosts/:host/orphans/:id': 'host.write',
  'POST /api/v1/hosts/:host/maintenance': 'host.write',
  'DELETE /api/v1/hosts/:host/maintenance': 'host.write',
  'GET /api/v1/cluster': 'cluster.read',
  'POST /api/v1/cluster/capacity': 'cluster.read',
  'POST /api/v1/cluster/placement': 'cluster.read',
  'GET /api/v1/cluster/settings': 'cluster.read',
  'PATCH /api/v1/cluster/settings': 'cluster.write',
  'GET /api/v1/placement-groups': 'cluster.read',
  'POST /api/v1/placement-groups': 'cluster.write',
  'DELETE /api/v1/placement-groups/:name': 'cluster.write',
  'GET /api/v1/ha/status': 'cluster.read',
  'GET /api/v1/ha/plan': 'cluster.read',
  'GET /api/v1/ha/check': 'cluster.read',
  'GET /api/v1/ha/settings': 'cluster.read',
  'PATCH /api/v1/ha/settings': 'cluster.write',

  'GET /api/v1/templates': 'library.read',
  'POST /api/v1/templates': 'library.write',
  'GET /api/v1/templates/:name': 'library.read',
  'DELETE /api/v1/templates/:name': 'library.write',
  'GET /api/v1/images': 'library.read',
  'POST /api/v1/images': 'library.write',
  'PUT /api/v1/images/:name': 'library.write',
  'GET /api/v1/images/:name': 'library.read',
  'DELETE /api/v1/images/:name': 'library.write',
  'GET /api/v1/images/:name/content': 'library.read',
  'POST /api/v1/images/:name/verify': 'library.write',
  'GET /api/v1/image-pools': 'library.read',
  'POST /api/v1/image-pools': 'library.write',
  'GET /api/v1/image-pools/:pool': 'library.read',
  'POST /api/v1/image-pools/:pool/rollback': 'library.write',
  'POST /api/v1/image-pools/:pool/versions': 'library.write',
  'POST /api/v1/image-pools/:pool/versions/:number/test': 'library.write',
  'POST /api/v1/image-pools/:pool/versions/:number/promote': 'library.write',
  'DELETE /api/v1/image-pools/:pool/versions/:number': 'library.write',
};

/** Why a principal holding `held` may not take `rule`, or null when it may. */
export function refusal(rule: RouteRule, held: ReadonlySet<Permission>): string | null {
  if (rule === 'public' || rule === 'authenticated') return null;
  return held.has(rule) ? null : `this needs the permission ${rule}, which your role does not give`;
}
