/** /api/v1/hosts: the hosts the manager drives, how they join and leave. */
import { Type } from 'typebox';
import { ErrorBody, Uuid } from '../../wire/common.ts';
import { AddHostRequest, Host, JoinToken } from '../../wire/host.ts';
import { Orphan, OrphanAdopted } from '../../wire/orphan.ts';
import type { ApiServices, App } from './context.ts';

const HostParams = Type.Object({ host: Type.String({ maxLength: 63 }) });

export function hostRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/hosts',
    {
      config: { access: 'host.read' },
      schema: {
        summary: 'List hosts',
        tags: ['hosts'],
        response: { 200: Type.Object({ items: Type.Array(Host) }) },
      },
    },
    async () => ({ items: await s.hosts.list() }),
  );
  app.get(
    '/api/v1/hosts/:host',
    {
      config: { access: 'host.read' },
      schema: {
        summary: 'Show a host',
        tags: ['hosts'],
        params: HostParams,
        response: { 200: Host, 404: ErrorBody },
      },
    },
    async (req) => s.hosts.get(req.params.host),
  );
  app.post(
    '/api/v1/hosts',
    {
      config: { access: 'host.write' },
      schema: {
        summary: 'Add a host: make a single-use join token for its agent (valid one hour)',
        tags: ['hosts'],
        body: AddHostRequest,
        response: { 201: JoinToken, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const token = await s.joinTokens.create(req.body.name, s.joining.caFingerprint, s.joining.url);
      return reply.code(201).send(token);
    },
  );
  app.delete(
    '/api/v1/hosts/:host',
    {
      config: { access: 'host.write' },
      schema: {
        summary: 'Remove a host and revoke its certificate; it must have no VMs',
        tags: ['hosts'],
        params: HostParams,
        response: { 204: Type.Null(), 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      await s.hosts.remove(req.params.host);
      return reply.code(204).send(null);
    },
  );

  // Orphans: what a host holds for VMs the inventory does not know (docs/storage.md).
  const OrphanParams = Type.Object({ host: HostParams.properties.host, id: Uuid });
  app.get(
    '/api/v1/hosts/:host/orphans',
    {
      config: { access: 'host.read' },
      schema: {
        summary:
          'List what the host holds for VMs the inventory does not know: QEMU processes and VM volumes',
        tags: ['hosts'],
        params: HostParams,
        response: { 200: Type.Object({ items: Type.Array(Orphan) }), 404: ErrorBody },
      },
    },
    async (req) => ({ items: await s.orphans.list(req.params.host) }),
  );
  app.post(
    '/api/v1/hosts/:host/orphans/:id/adopt',
    {
      config: { access: 'host.write' },
      schema: {
        summary:
          'Adopt an orphan: a running one becomes a VM again, any other keeps its disks as kept volumes',
        tags: ['hosts'],
        params: OrphanParams,
        response: { 200: OrphanAdopted, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req) => s.orphans.adopt(req.params.host, req.params.id),
  );
  app.delete(
    '/api/v1/hosts/:host/orphans/:id',
    {
      config: { access: 'host.write' },
      schema: {
        summary: 'Remove an orphan: its files, and its QEMU (a running one only with force=true)',
        tags: ['hosts'],
        params: OrphanParams,
        querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: { 204: Type.Null(), 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      await s.orphans.remove(req.params.host, req.params.id, req.query.force ?? false);
      return reply.code(204).send(null);
    },
  );
}
