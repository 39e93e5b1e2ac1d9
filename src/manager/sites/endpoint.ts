/**
 * The routes other sites call on this cluster's endpoint (`/site/v1/…`). The endpoint asks every
 * caller for a certificate without requiring one (agents join without); here only a certificate
 * that a trusted site's CA issued to one of its managers gets in (./trust.ts).
 */
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { TernError, unreachable } from '../../errors.ts';
import { agentRoutes } from '../../wire/agent-routes.ts';
import { ErrorBody } from '../../wire/common.ts';
import { ReplicaStatus, ReplicationId } from '../../wire/replication.ts';
import { pathOf } from '../../wire/route.ts';
import {
  SiteHello,
  SitePrepareBody,
  SitePrepareReply,
  SitePruneBody,
  SiteReplica,
  SiteReplicaCreate,
} from '../../wire/site.ts';
import type { App } from '../api/context.ts';
import type { AgentTransport } from '../hosts/agent-transport.ts';
import type { SiteReplicas } from './replicas.ts';
import type { SiteStore } from './store.ts';
import { type SitePeer, siteOfCertificate } from './trust.ts';

export interface SiteEndpointOptions {
  sites: SiteStore;
  replicas: SiteReplicas;
  /** This cluster's hosts' agents, for the stream relayed to one. */
  agentOf: (hostId: string) => AgentTransport;
  caFingerprint: string;
}

/**
 * The trusted site whose manager is calling (or, with `role`, one of its hosts), or a refusal
 * saying why.
 */
export async function callingSite(
  req: FastifyRequest,
  sites: SiteStore,
  role: 'tern-manager' | 'tern-host' = 'tern-manager',
): Promise<SitePeer> {
  const cert = (req.raw.socket as TLSSocket).getPeerCertificate?.();
  if (!cert?.raw) throw new TernError('unauthorized', 'a site certificate is required');
  const peer = siteOfCertificate(cert.raw, await sites.trusted(), new Date());
  if ('refused' in peer) throw new TernError('unauthorized', peer.refused);
  if (peer.role !== role)
    throw new TernError('forbidden', `site ${peer.site.name}'s ${peer.role} certificate may not call this`);
  return peer;
}

export function registerSiteRoutes(app: App, opts: SiteEndpointOptions): void {
  app.get('/site/v1/hello', { schema: { response: { 200: SiteHello, '4xx': ErrorBody } } }, async (req) => {
    const peer = await callingSite(req, opts.sites);
    return { fingerprint: opts.caFingerprint, knownAs: peer.site.name };
  });

  const Id = Type.Object({ id: ReplicationId });
  const bad = { '4xx': ErrorBody, '5xx': ErrorBody };
  app.post(
    '/site/v1/replicas',
    { schema: { body: SiteReplicaCreate, response: { 200: SiteReplica, ...bad } } },
    async (req) => opts.replicas.create((await callingSite(req, opts.sites)).site, req.body),
  );
  app.post(
    '/site/v1/replicas/:id/prepare',
    { schema: { params: Id, body: SitePrepareBody, response: { 200: SitePrepareReply, ...bad } } },
    async (req) => opts.replicas.prepare((await callingSite(req, opts.sites)).site, req.params.id, req.body),
  );
  app.post(
    '/site/v1/replicas/:id/status',
    { schema: { params: Id, response: { 200: ReplicaStatus, ...bad } } },
    async (req) => opts.replicas.status((await callingSite(req, opts.sites)).site, req.params.id),
  );
  app.post(
    '/site/v1/replicas/:id/prune',
    { schema: { params: Id, body: SitePruneBody, response: { 200: ReplicaStatus, ...bad } } },
    async (req) => opts.replicas.prune((await callingSite(req, opts.sites)).site, req.params.id, req.body),
  );
  app.post(
    '/site/v1/replicas/:id/remove',
    { schema: { params: Id, response: { 204: Type.Null(), ...bad } } },
    async (req, reply) => {
      await opts.replicas.remove((await callingSite(req, opts.sites)).site, req.params.id);
      return reply.code(204).send(null);
    },
  );

  // The stream of a cycle, from a host of the primary's site, passed on to the host keeping the
  // replica: this site's agents trust only this cluster's CA, so the manager stands between,
  // as a replication server does at a replica site. The ticket is the replica host's to check.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  app.post('/site/v1/replicas/:id/receive', { schema: { params: Id } }, async (req, reply) => {
    const peer = await callingSite(req, opts.sites, 'tern-host');
    const row = await opts.replicas.row(peer.site, req.params.id);
    const agent = opts.agentOf(row.targetHostId);
    const res = await agent
      .fetch(`${agent.url}${pathOf(agentRoutes.receiveReplica, { id: row.id })}`, {
        method: 'POST',
        headers: {
          ...agent.headers,
          'content-type': 'application/octet-stream',
          authorization: req.headers.authorization ?? '',
        },
        body: req.body as Readable,
        duplex: 'half',
      } as unknown as RequestInit)
      .catch((err: Error) => {
        throw unreachable(err, (why) => `the host keeping the replica is unreachable: ${why}`);
      });
    return reply
      .code(res.status)
      .type(res.headers.get('content-type') ?? 'application/json')
      .send(Buffer.from(await res.arrayBuffer()));
  });
}
