/**
 * The manager's REST API. Every route names its access beside its handler (`config: { access }`;
 * a route without one stops the manager from starting); the guard authenticates, checks the rule, hides other
 * people's VMs from self-service users, and every change or refusal goes to the audit log.
 * The OpenAPI document is generated from the same schemas that validate requests.
 */
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyRequest } from 'fastify';
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import { defaultBodyPaces, installBodyPace } from '../../http/body-pace.ts';
import { installErrorHandling } from '../../http/errors.ts';
import { learnMethods } from '../../http/methods.ts';
import { openObjects, validation } from '../../http/validation.ts';
import { type Logger, quietRequests } from '../../log.ts';
import { serviceRoutes } from '../../wire/api/service.ts';
import { UserName } from '../../wire/identity.ts';
import type { AuditEntry } from '../audit/entry.ts';
import { type RouteRule, refusal } from '../auth/permissions.ts';
import { type Principal, runAs, seesAllVms } from '../auth/principal.ts';
import { requireAccess } from './access.ts';
import { alertRoutes } from './alerts.ts';
import { auditRoutes } from './audit.ts';
import { backupFileRoutes } from './backup-files.ts';
import { backupJobRoutes } from './backup-jobs.ts';
import { backupSyncRoutes } from './backup-sync.ts';
import { backupRoutes } from './backups.ts';
import { clusterRoutes } from './cluster.ts';
import type { ApiServices, App } from './context.ts';
import { eventRoutes } from './events.ts';
import { groupRoutes } from './groups.ts';
import { haRoutes } from './ha.ts';
import { installSecurityHeaders } from './headers.ts';
import { hostRoutes } from './hosts.ts';
import { imagePoolRoutes } from './image-pools.ts';
import { imageRoutes } from './images.ts';
import { ldapRoutes } from './ldap.ts';
import { migrationRoutes } from './migration.ts';
import { networkRoutes } from './networks.ts';
import { apiDocument } from './openapi.ts';
import { projectRoutes } from './projects.ts';
import { replicationRoutes } from './replication.ts';
import { replicationFailoverRoutes } from './replication-failover.ts';
import { secretRoutes } from './secrets.ts';
import { securityGroupRoutes } from './security-groups.ts';
import { serve } from './serve.ts';
import { sessionRoutes } from './session.ts';
import { siteRoutes } from './sites.ts';
import { taskRoutes } from './tasks.ts';
import { templateRoutes } from './templates.ts';
import { tokenRoutes } from './tokens.ts';
import { userRoutes } from './users.ts';
import { vmActionRoutes } from './vm-actions.ts';
import { vmCdromRoutes } from './vm-cdrom.ts';
import { vmGuestRoutes } from './vm-guest.ts';
import { vmNicRoutes } from './vm-nics.ts';
import { vmStorageRoutes } from './vm-storage.ts';
import { vmRoutes } from './vms.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    /** How a login proved itself (`password`, `ldap`), for the audit log. */
    auditVia?: string;
    /** What the request did or why it failed, for the audit log. */
    auditDetail?: string;
  }
  interface FastifyInstance {
    /** What each registered route needs, by `METHOD /route`: read by the OpenAPI document and tests. */
    routeAccess: ReadonlyMap<string, RouteRule>;
  }
}

/** The API's certificate and key (PEM): from the cluster CA, or the operator's. */
export interface ApiTls {
  cert: string;
  key: string;
}

export async function buildApi(s: ApiServices, log: Logger, tls: ApiTls): Promise<App> {
  const app: App = Fastify({
    loggerInstance: quietRequests(log),
    bodyLimit: 256 * 1024,
    ...validation,
    https: { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' },
    // A connection with nothing going either way for two minutes (the event stream writes a
    // keepalive every 15 s) is closed, and so is an idle keep-alive one after 10 s; a body that
    // trickles in is cut by its pace (http/body-pace.ts).
    connectionTimeout: 120_000,
    keepAliveTimeout: 10_000,
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandling(app, learnMethods(app));
  installSecurityHeaders(app);
  installBodyPace(app, () => s.bodyPaces ?? defaultBodyPaces);

  const { access: routeAccess, declared } = requireAccess(app);
  app.decorate('routeAccess', routeAccess);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Tern API', version: '1', description: 'Virtualization manager for KVM/QEMU hosts' },
      components: { securitySchemes: { token: { type: 'http', scheme: 'bearer' } } },
      security: [{ token: [] }],
    },
    transformObject: (document) => apiDocument(document, routeAccess, declared),
  });

  app.addHook('onRoute', (route) => {
    const open = openObjects(route.schema?.body);
    if (open.length) throw new Error(`route ${route.url} takes unknown body fields at ${open.join(', ')}`);
  });

  // Decided on the route the router matched, never on the raw URL (which may be encoded
  // differently). The principal is also the async context of the rest of the request.
  app.addHook('onRequest', (req, _reply, done) => {
    const route = req.routeOptions.url;
    const rule = route === undefined ? 'authenticated' : req.routeOptions.config.access;
    if (rule === 'public') return done();
    s.authenticator
      .authenticate(req.headers)
      .then(async (p) => {
        req.principal = p;
        const why = refusal(rule ?? 'key.admin', p.permissions);
        if (why) throw new TernError('forbidden', why);
        // Self-service: another user's VM is as good as absent.
        const vmRef = (req.params as { vm?: string }).vm;
        if (vmRef !== undefined && !seesAllVms(p)) {
          const row = await s.store.find(vmRef);
          if (!row || row.ownerId === null || row.ownerId !== p.userId)
            throw new TernError('not_found', `VM ${vmRef} does not exist`);
        }
        runAs(p, () => done());
      })
      .catch((err: Error) => done(err));
  });

  app.addHook('onSend', async (req, reply, payload) => {
    if (reply.statusCode >= 400 && typeof payload === 'string') {
      try {
        const why = (JSON.parse(payload) as { error?: { message?: string } }).error?.message;
        // What the handler noted (the command run, say) stays, followed by why it failed.
        req.auditDetail = req.auditDetail && why ? `${req.auditDetail}: ${why}` : (why ?? req.auditDetail);
      } catch {
        // Not ours to explain.
      }
    }
    return payload;
  });

  // Every change, and every refusal, whoever asked and however it ended.
  // Every change, and every refusal, whoever asked and however it ended, also when the
  // client went away before the answer (the change may still be made).
  const record = async (req: FastifyRequest, status: number | null) => {
    const route = req.routeOptions.url;
    const changes = req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS';
    if (!route?.startsWith('/api/v1/') || !(changes || status === 401 || status === 403)) return;
    const body = req.body as { name?: unknown; user?: unknown } | undefined;
    const p = req.principal;
    const named =
      typeof body?.user === 'string' && Value.Check(UserName, body.user) ? body.user : 'anonymous';
    const entry: AuditEntry = {
      actor: p?.name ?? named,
      actorId: p?.userId ?? null,
      via: req.auditVia ?? p?.via ?? 'anonymous',
      action: `${req.method} ${route.slice('/api/v1'.length)}`,
      object: auditObject(route, req.params as Record<string, string>, body),
      sourceIp: req.ip,
      result:
        status === null
          ? 'failed'
          : status < 400
            ? 'ok'
            : status === 401 || status === 403
              ? 'denied'
              : 'failed',
      status,
      detail:
        status === null ? 'the client closed the connection before the answer' : (req.auditDetail ?? null),
    };
    // Refusals without credentials are tallied per address and minute, not written one by one.
    await (status === 401 && !p ? s.audit.refusedAnonymously(entry) : s.audit.append(entry)).catch(
      (err: Error) => req.log.error({ err }, 'could not write the audit log'),
    );
  };
  app.addHook('onResponse', async (req, reply) => record(req, reply.statusCode));
  app.addHook('onRequestAbort', async (req) => record(req, null));

  serve(app, serviceRoutes.health, 'public', async () => ({ ok: true }));
  serve(app, serviceRoutes.openapi, 'public', async () => app.swagger());

  sessionRoutes(app, s);
  tokenRoutes(app, s);
  userRoutes(app, s);
  groupRoutes(app, s);
  ldapRoutes(app, s);
  projectRoutes(app, s);
  auditRoutes(app, s);
  secretRoutes(app, s);
  vmRoutes(app, s);
  migrationRoutes(app, s);
  clusterRoutes(app, s);
  haRoutes(app, s);
  vmActionRoutes(app, s);
  vmStorageRoutes(app, s);
  vmGuestRoutes(app, s);
  vmCdromRoutes(app, s);
  vmNicRoutes(app, s);
  taskRoutes(app, s);
  hostRoutes(app, s);
  templateRoutes(app, s);
  imageRoutes(app, s);
  alertRoutes(app, s);
  imagePoolRoutes(app, s);
  networkRoutes(app, s);
  backupRoutes(app, s);
  backupJobRoutes(app, s);
  backupFileRoutes(app, s);
  backupSyncRoutes(app, s);
  replicationRoutes(app, s);
  siteRoutes(app, s);
  replicationFailoverRoutes(app, s);
  securityGroupRoutes(app, s);
  eventRoutes(app, s);
  return app;
}

/** The object a request acts on: its path with the parameters filled in, e.g. `vms/web-1/disks/1`. */
export function auditObject(
  route: string,
  params: Record<string, string>,
  body?: { name?: unknown },
): string {
  const path = route
    .slice('/api/v1/'.length)
    .replace(/:([a-zA-Z]+)/g, (_, k: string) => encodeURIComponent(params?.[k] ?? `:${k}`));
  const named = typeof body?.name === 'string' && !route.includes(':') ? `/${body.name}` : '';
  return `${path}${named}`;
}
