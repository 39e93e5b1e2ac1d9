/**
 * The agent's side of the agent protocol (docs/agent-protocol.md): a small HTTP API that
 * only managers of its cluster may call (mutual TLS), plus an event stream of VM changes. The
 * routes are declared in src/wire/agent-routes.ts and handled in ./handlers.ts.
 */
import type { TLSSocket } from 'node:tls';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { TernError } from '../errors.ts';
import { registerRoutes } from '../http/declared-routes.ts';
import { installErrorHandling } from '../http/errors.ts';
import { validation } from '../http/validation.ts';
import { type Logger, quietRequests } from '../log.ts';
import { type Identity, peerOf } from '../pki/identity.ts';
import { agentProtocolVersion, protocolHeader } from '../wire/agent.ts';
import { agentRoutes } from '../wire/agent-routes.ts';
import type { BackupFiles } from './backup/backup-files.ts';
import type { HypervisorDriver } from './driver.ts';
import { agentHandlers } from './handlers.ts';
import type { Pools } from './storage/pools.ts';

export { agentVersion } from './handlers.ts';

export interface AgentServerOptions {
  driver: HypervisorDriver;
  pools: Pools;
  /** This host's certificate and the cluster CA; callers must present a manager certificate. */
  identity: Identity;
  log: Logger;
  /** Largest upload accepted (default: maxUploadBytes()). */
  maxUploadBytes?: number;
  /** True while the host has fenced itself (HA): commands that change anything are refused. */
  fenced?: () => boolean;
  /** Directories an import by path may read from (none: imports by upload only). */
  importDirs?: readonly string[];
  /** Reads files out of backups (absent: refused). */
  backupFiles?: BackupFiles;
}

export async function buildAgentServer(opts: AgentServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: quietRequests(opts.log),
    bodyLimit: 1024 * 1024,
    ...validation,
    https: {
      key: opts.identity.key,
      cert: opts.identity.cert,
      ca: opts.identity.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandling(app);

  app.addHook('onRequest', async (req) => {
    // The TLS handshake already refused certificates from any other CA; another host of the
    // cluster has a valid certificate too, but only a manager may command this agent. A host
    // may send a replication stream, which still needs the ticket a manager had issued for it.
    const role = peerOf(req.raw.socket as TLSSocket)?.role;
    const stream = req.method === 'POST' && req.routeOptions.url === agentRoutes.receiveReplica.path;
    if (role !== 'tern-manager' && !(stream && role === 'tern-host')) {
      throw new TernError('unauthorized', 'this agent only answers managers of its cluster');
    }
    const v = req.headers[protocolHeader];
    if (v !== undefined && v !== String(agentProtocolVersion)) {
      throw new TernError(
        'protocol_error',
        `agent speaks protocol ${agentProtocolVersion}, the manager ${v}`,
      );
    }
    // Reads stay open, so the manager can see what the fence left behind.
    if (req.method !== 'GET' && req.method !== 'HEAD' && opts.fenced?.()) {
      throw new TernError(
        'unavailable',
        'this host fenced itself: it reached neither a manager nor its HA statefile for the HA timeout and killed its protected VMs; it takes commands again once both are back',
      );
    }
  });

  // Uploads are streamed to disk as they arrive, never held in memory.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  registerRoutes(app, agentRoutes, agentHandlers(opts));

  return app;
}
