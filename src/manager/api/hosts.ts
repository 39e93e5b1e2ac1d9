/** /api/v1/hosts: the hosts the manager drives, how they join and leave. */
import { Type } from 'typebox';
import { ErrorBody } from '../../wire/common.ts';
import { AddHostRequest, Host, JoinToken } from '../../wire/host.ts';
import type { ApiServices, App } from './context.ts';

const HostParams = Type.Object({ host: Type.String({ maxLength: 63 }) });

export function hostRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/hosts',
    {
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
}
