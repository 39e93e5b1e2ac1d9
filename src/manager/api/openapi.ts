/**
 * The OpenAPI document: what @fastify/swagger generates from the route schemas, finished with
 * what those cannot say: where the API is, an operation id for every operation, who is refused
 * (401/403), where an accepted task is followed (`Location`), the upload and event-stream
 * bodies, and the wire schemas as named components, so generated clients get named types.
 */
import * as alert from '../../wire/alert.ts';
import * as cluster from '../../wire/cluster.ts';
import * as common from '../../wire/common.ts';
import * as event from '../../wire/event.ts';
import * as guestCommand from '../../wire/guest-command.ts';
import * as ha from '../../wire/ha.ts';
import * as haPolicy from '../../wire/ha-policy.ts';
import * as host from '../../wire/host.ts';
import * as identity from '../../wire/identity.ts';
import * as image from '../../wire/image.ts';
import * as imagePool from '../../wire/image-pool.ts';
import type { RawBody, Route } from '../../wire/route.ts';
import * as secret from '../../wire/secret.ts';
import * as task from '../../wire/task.ts';
import * as template from '../../wire/template.ts';
import * as vm from '../../wire/vm.ts';
import type { RouteRule } from '../auth/permissions.ts';

type Json = Record<string, unknown>;
type Operation = Json & { responses?: Record<string, Json>; operationId?: string };

const errorRef = { $ref: '#/components/schemas/ErrorBody' };
const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: errorRef } },
});

/** A body that is not JSON, as OpenAPI describes it. */
function rawContent(raw: RawBody): Json {
  const schema =
    raw.contentType === 'application/octet-stream'
      ? { type: 'string', format: 'binary' }
      : { type: 'string' };
  return { description: raw.description, content: { [raw.contentType]: { schema } } };
}

/** Schemas in a stable spelling, to recognise a named one wherever it is inlined. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Json)[k])}`).join(',')}}`;
}

/**
 * A schema node as @fastify/swagger writes it into the document: a const is an enum of one, a
 * record's any-key pattern is additionalProperties.
 */
function asSwaggerSpellsIt(_key: string, x: unknown): unknown {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return x;
  return Object.fromEntries(
    Object.entries(x).map(([k, y]) => {
      if (k === 'const') return ['enum', [y]];
      const any = (y as Json | null)?.['^.*$'];
      if (k === 'patternProperties' && any !== undefined && Object.keys(y as Json).length === 1)
        return ['additionalProperties', any];
      return [k, y];
    }),
  );
}

/** The object schemas exported by wire modules, by their export name. */
export function namedSchemas(...modules: Record<string, unknown>[]): Record<string, Json> {
  const named: Record<string, Json> = {};
  for (const m of modules) {
    for (const [name, v] of Object.entries(m)) {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) continue;
      const s = JSON.parse(JSON.stringify(v), asSwaggerSpellsIt) as Json;
      if (s.type === 'object' || Array.isArray(s.anyOf)) named[name] ??= s;
    }
  }
  return named;
}

function operationId(method: string, path: string): string {
  const segments = path.replace(/^\/api\/v1\//, '').split('/');
  const words = segments
    .map((s) => (s.startsWith('{') ? `By${s.slice(1, -1)}` : s))
    .flatMap((s) => s.split(/[-_]/))
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1));
  return `${method}${words.join('')}`;
}

export function finishDocument(
  doc: Json,
  named: Record<string, Json>,
  rules: ReadonlyMap<string, RouteRule>,
  declared: ReadonlyMap<string, Route> = new Map(),
): Json {
  const byShape = new Map(Object.entries(named).map(([name, s]) => [canonical(s), name]));
  const used = new Set<string>(['ErrorBody']);
  const refer = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(refer);
    if (typeof node !== 'object' || node === null) return node;
    const name = byShape.get(canonical(node));
    if (name) {
      used.add(name);
      return { $ref: `#/components/schemas/${name}` };
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, refer(v)]));
  };

  const paths = (doc.paths ?? {}) as Record<string, Record<string, Operation>>;
  for (const [path, item] of Object.entries(paths)) {
    const route = path.replace(/\{(\w+)\}/g, ':$1');
    for (const [method, op] of Object.entries(item)) {
      const _key = `${method.toUpperCase()} ${path}`;
      const rule = rules.get(`${method.toUpperCase()} ${route}`);
      const decl = declared.get(`${method.toUpperCase()} ${route}`);
      const rawBody = decl?.rawBody;
      const rawReply = decl?.rawReply;
      op.operationId ??= operationId(method, path);
      op.responses ??= {};
      const responses = op.responses;
      for (const [status, r] of Object.entries(responses)) {
        // fastify-swagger's default description says nothing.
        if (r.description === 'Default Response') r.description = Number(status) < 400 ? 'done' : 'refused';
      }
      if (rawBody) op.requestBody = { required: true, ...rawContent(rawBody) };
      if (rawReply) responses['200'] = rawContent(rawReply);
      responses['400'] ??= errorResponse('the request is malformed or names a field it may not');
      if (rule !== 'public') {
        responses['401'] ??= errorResponse('no valid token or session');
        if (rule !== 'authenticated') responses['403'] ??= errorResponse('the role does not allow it');
      } else {
        op.security = [];
      }
      if (responses['202']) {
        responses['202'].headers = {
          Location: {
            description: 'the task to follow: /api/v1/tasks/{id}',
            schema: { type: 'string' },
          },
        };
      }
      item[method] = refer(op) as Operation;
    }
  }
  const components = (doc.components ?? {}) as Json;
  const schemas = (components.schemas ?? {}) as Json;
  // A named schema's own parts may be named too; each is added once it is referred to.
  for (let added = true; added; ) {
    added = false;
    for (const name of used) {
      if (schemas[name]) continue;
      schemas[name] = Object.fromEntries(Object.entries(named[name]).map(([k, v]) => [k, refer(v)]));
      added = true;
    }
  }
  return {
    ...doc,
    servers: [{ url: '/', description: 'this manager' }],
    components: { ...components, schemas },
  };
}

const wireSchemas = namedSchemas(
  common,
  vm,
  task,
  host,
  template,
  image,
  imagePool,
  alert,
  identity,
  secret,
  cluster,
  ha,
  haPolicy,
  event,
  guestCommand,
);

/** For @fastify/swagger's `transformObject`, with what each registered route needs. */
export function apiDocument(
  document: { openapiObject: unknown } | { swaggerObject: unknown },
  rules: ReadonlyMap<string, RouteRule>,
  declared: ReadonlyMap<string, Route>,
): never {
  const doc = 'openapiObject' in document ? document.openapiObject : document.swaggerObject;
  return finishDocument(doc as Json, wireSchemas, rules, declared) as never;
}
