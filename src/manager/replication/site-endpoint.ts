/**
 * The routes another site's manager calls on this cluster's endpoint to keep a replica here
 * (`/site/v1/replicas/…`), each let in only for a trusted site (../sites/endpoint.ts) and
 * answered by site-replicas.ts; and the relay of a cycle's stream from that site's host to the
 * host keeping the replica.
 */
import { Readable } from 'node:stream';
import { Type } from 'typebox';
import { unreachable } from '../../errors.ts';
import type { App } from '../../http/app.ts';
import { sendUpload } from '../../http/upload.ts';
import { agentRoutes } from '../../wire/agent-routes.ts';
import { ErrorBody } from '../../wire/common.ts';
import { ReplicaStatus, ReplicationId } from '../../wire/replication.ts';
import { pathOf } from '../../wire/route.ts';
import {
  SitePrepareBody,
  SitePrepareReply,
  SitePrimaryFacts,
  SitePruneBody,
  SiteReplica,
  SiteReplicaCreate,
} from '../../wire/site.ts';
import type { AgentTransport } from '../hosts/agent-transport.ts';
import { callingSite } from '../sites/endpoint.ts';
import type { SiteStore } from '../sites/store.ts';
import type { TrustedSite } from '../sites/trust.ts';
import type { SiteReplicas } from './site-replicas.ts';

export interface SiteReplicaEndpointOptions {
  sites: SiteStore;
  replicas: SiteReplicas;
  /** This cluster's hosts' agents, for the stream relayed to one. */
  agentOf: (hostId: string) => AgentTransport;
  /** What this cluster says of a VM it replicates to `site` (replication `id`), for a failover there. */
  primaryFacts: (site: TrustedSite, id: string) => Promise<SitePrimaryFacts>;
}

export function registerSiteReplicaRoutes(app: App, opts: SiteReplicaEndpointOptions): void {
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
    '/site/v1/replicas/:id/primary',
    { schema: { params: Id, response: { 200: SitePrimaryFacts, ...bad } } },
    async (req) => opts.primaryFacts((await callingSite(req, opts.sites)).site, req.params.id),
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
    const res = await sendUpload(
      agent.fetch,
      `${agent.url}${pathOf(agentRoutes.receiveReplica, { id: row.id })}`,
      {
        method: 'POST',
        headers: { ...agent.headers, authorization: req.headers.authorization ?? '' },
        body: Readable.toWeb(req.body as Readable) as ReadableStream<Uint8Array>,
      },
    ).catch((err: Error) => {
      throw unreachable(err, (why) => `the host keeping the replica is unreachable: ${why}`);
    });
    return reply
      .code(res.status)
      .type(res.headers.get('content-type') ?? 'application/json')
      .send(Buffer.from(await res.arrayBuffer()));
  });
}
