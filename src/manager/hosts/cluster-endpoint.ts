/**
 * The manager's cluster endpoint: the HTTPS port agents talk to (the API port is for people).
 * Its certificate comes from the cluster CA, which a joining agent pins by fingerprint. Joining
 * needs a join token; everything else needs the client certificate of a current host, except
 * `/site/v1/…`, which other sites' managers call with theirs (../sites/endpoint.ts).
 */
import type { TLSSocket } from 'node:tls';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import type { App } from '../../http/app.ts';
import { installErrorHandling } from '../../http/errors.ts';
import { validation } from '../../http/validation.ts';
import { type Logger, quietRequests } from '../../log.ts';
import type { ClusterCa } from '../../pki/ca.ts';
import { type Identity, peerOf } from '../../pki/identity.ts';
import { ErrorBody } from '../../wire/common.ts';
import { type HaAssignment, HeartbeatReply, HeartbeatRequest } from '../../wire/ha.ts';
import { type Host, JoinRequest, JoinResult } from '../../wire/host.ts';
import { bestEffort } from '../db/disk-space.ts';
import type { JoinTokens } from './join.ts';
import type { HostRegistry } from './registry.ts';

export interface ClusterEndpointOptions {
  ca: ClusterCa;
  identity: Identity;
  joinTokens: JoinTokens;
  hosts: HostRegistry;
  /** A host's HA duties, sent back with every heartbeat. */
  haAssignment: (hostId: string) => Promise<HaAssignment>;
  /** The host reported the generation of the assignment it enforces. */
  haAcknowledged: (hostId: string, current: HaAssignment, generation: number | null) => Promise<void>;
  /** More routes on the endpoint: other sites' managers call `/site/v1/…` (../sites/endpoint.ts). */
  routes: (app: App) => void;
  log: Logger;
}

export async function buildClusterEndpoint(opts: ClusterEndpointOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: quietRequests(opts.log),
    bodyLimit: 64 * 1024,
    ...validation,
    https: {
      key: opts.identity.key,
      cert: opts.identity.cert,
      ca: opts.ca.certPem,
      // Asked for, not required: a joining agent has no certificate yet.
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandling(app);

  /** The current host whose certificate the caller presented. */
  const callingHost = async (req: FastifyRequest): Promise<Host> => {
    const peer = peerOf(req.raw.socket as TLSSocket);
    if (peer?.role !== 'tern-host') {
      throw new TernError('unauthorized', 'a host certificate from this cluster is required');
    }
    return opts.hosts.byCertificate(peer.fingerprint);
  };

  // Served to anyone: a joining agent checks it against the fingerprint it was given.
  app.get('/cluster/v1/ca', async (_req, reply) =>
    reply.type('application/x-pem-file').send(opts.ca.certPem),
  );

  app.post(
    '/cluster/v1/join',
    { schema: { body: JoinRequest, response: { 200: JoinResult, '4xx': ErrorBody } } },
    async (req) => {
      const name = await opts.joinTokens.redeem(req.body);
      const address = new URL(req.body.address);
      const cert = await opts.ca.issue(name, 'tern-host', req.body.publicKey, [
        address.hostname.replace(/^\[|\]$/g, ''),
      ]);
      await opts.hosts.enrol(name, address.origin, cert);
      opts.log.info({ host: name, address: address.origin }, 'host joined the cluster');
      return { host: name, certificate: cert.pem, ca: opts.ca.certPem };
    },
  );

  app.post(
    '/cluster/v1/heartbeat',
    {
      schema: { response: { 200: HeartbeatReply, '4xx': ErrorBody } },
    },
    async (req) => {
      const host = await callingHost(req);
      await opts.hosts.heartbeats.heard(host.id);
      const ha = await opts.haAssignment(host.id);
      // Agents before HA send no body: they enforce nothing.
      const report = Value.Check(HeartbeatRequest, req.body) ? req.body.haGeneration : null;
      // The answer is HA's network heartbeat and must not fail for bookkeeping: an
      // acknowledgment that cannot be recorded (a full disk) is recorded at a later beat.
      await bestEffort(opts.haAcknowledged(host.id, ha, report), opts.log, 'what HA duties a host enforces');
      return { host: host.name, state: host.state, ha };
    },
  );
  opts.routes(app);
  return app;
}
