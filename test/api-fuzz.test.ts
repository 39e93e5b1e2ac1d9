/**
 * Every operation of the OpenAPI document, fuzzed with an admin token: type-confused, null,
 * extra-field, huge, negative and missing-field bodies, bodies of the wrong shape, odd path
 * parameters and odd query strings. The API never answers 5xx, and never accepts (2xx) a body
 * that its own published schema, checked without coercion, calls invalid.
 * A seeded generator (TERN_FUZZ_SEED to repeat a run) on simulated hosts.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Value } from 'typebox/value';
import { seededRandom } from './seeded-random.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

type Schema = Record<string, unknown>;
interface Operation {
  method: string;
  path: string;
  params: string[];
  query: { name: string; schema: Schema }[];
  body: { type: string; schema: Schema } | null;
}
interface Failure {
  what: string;
  status: number;
  answer: string;
}

const seed = Number(process.env.TERN_FUZZ_SEED ?? 20240611);
const perOperation = 50;

let c: SimCluster;
let doc: { paths: Record<string, Record<string, Schema>>; components?: { schemas?: Record<string, Schema> } };
before(async () => {
  c = await startSimCluster(1);
  const vm = await c.api.task('POST', '/api/v1/vms', { name: 'fz', template: 'sim' });
  assert.equal(vm.state, 'succeeded', JSON.stringify(vm.error));
  const res = await c.api.raw('GET', '/api/v1/openapi.json');
  assert.equal(res.status, 200);
  doc = res.body as unknown as typeof doc;
});
after(async () => {
  await c?.close();
});

/** The schema with every local `$ref` replaced by what it names. */
function deref(schema: unknown, depth = 0): unknown {
  if (depth > 30 || typeof schema !== 'object' || schema === null) return schema;
  if (Array.isArray(schema)) return schema.map((s) => deref(s, depth + 1));
  const s = schema as Schema;
  if (typeof s.$ref === 'string') {
    const name = s.$ref.replace('#/components/schemas/', '');
    return deref(doc.components?.schemas?.[name], depth + 1);
  }
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, deref(v, depth + 1)]));
}

function operations(): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const parameters = (op.parameters ?? []) as { in: string; name: string; schema: Schema }[];
      const content = (op.requestBody as { content?: Record<string, { schema: Schema }> } | undefined)
        ?.content;
      const type = content ? Object.keys(content)[0] : undefined;
      ops.push({
        method: method.toUpperCase(),
        path,
        params: [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]),
        query: parameters.filter((p) => p.in === 'query').map((p) => ({ name: p.name, schema: p.schema })),
        body: type && content ? { type, schema: deref(content[type].schema) as Schema } : null,
      });
    }
  }
  return ops;
}

const oddParams = [
  'nosuch',
  '-1',
  '0',
  '99999999999999999999999',
  'a'.repeat(300),
  '%00',
  '%2e%2e',
  'null',
  'true',
  '1e308',
  '%F0%9F%90%A6',
  '%20',
  'x%2Fy',
  '%25',
  '_',
  '00000000-0000-4000-8000-000000000000',
];
const oddQuery = ['', 'abc', '-1', '0', '1e999', 'null', 'true', '%00', 'x'.repeat(5000), '%25', '_'];
const wrongValues: unknown[] = [0, 1, -1, 1.5, '2', 'false', '', true, false, null, [], {}, ['x'], { x: 1 }];

function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)];
}

/** A value the schema accepts, as far as a small generator can tell; checked by the caller. */
function sample(schema: Schema, rnd: () => number, depth = 0): unknown {
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum)) return pick(rnd, schema.enum);
  const branches = (schema.anyOf ?? schema.oneOf) as Schema[] | undefined;
  if (branches) return sample(pick(rnd, branches), rnd, depth + 1);
  if ('default' in schema) return schema.default;
  switch (schema.type) {
    case 'object': {
      const props = (schema.properties ?? {}) as Record<string, Schema>;
      const required = new Set((schema.required ?? []) as string[]);
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(props))
        if (required.has(k) || (depth < 3 && rnd() < 0.3)) out[k] = sample(v, rnd, depth + 1);
      return out;
    }
    case 'array': {
      const min = (schema.minItems as number | undefined) ?? 0;
      return Array.from({ length: min || (rnd() < 0.5 ? 1 : 0) }, () =>
        sample((schema.items ?? {}) as Schema, rnd, depth + 1),
      );
    }
    case 'integer':
    case 'number': {
      const min = (schema.minimum as number | undefined) ?? (schema.exclusiveMinimum as number | undefined);
      return min === undefined
        ? 1
        : Math.max(1, Math.ceil(min) + (schema.exclusiveMinimum !== undefined ? 1 : 0));
    }
    case 'boolean':
      return rnd() < 0.5;
    case 'string': {
      if (schema.format === 'date-time') return new Date(Date.now() + 86_400_000).toISOString();
      if (schema.format === 'ipv4') return '10.0.0.1';
      const candidates = [
        'fz',
        'fuzz-1',
        'sim',
        'local',
        '10.0.0.5/24',
        '02:00:00:00:00:01',
        'a',
        'x'.repeat(8),
      ];
      return candidates.find((s) => Value.Check(schema, s)) ?? 'fz';
    }
    default:
      return null;
  }
}

/** Paths to the properties of an object body, a level deep, with their schemas. */
function fields(schema: Schema, value: unknown): { key: string; schema: Schema; required: boolean }[] {
  if (schema.type !== 'object' || typeof value !== 'object' || value === null || Array.isArray(value))
    return [];
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(props).map(([key, s]) => ({ key, schema: s, required: required.has(key) }));
}

/** One fuzzed body for a JSON body schema, and what was done to it. */
function mutate(schema: Schema, rnd: () => number): { body: string; what: string } {
  const base = sample(schema, rnd) as Record<string, unknown>;
  const fs = fields(schema, base);
  const f = fs.length ? pick(rnd, fs) : undefined;
  const set = (v: unknown) => JSON.stringify(f ? { ...base, [f.key]: v } : v);
  switch (pick(rnd, ['wrong-type', 'null', 'extra', 'huge', 'negative', 'missing', 'shape', 'nested'])) {
    case 'wrong-type':
      return { body: set(pick(rnd, wrongValues)), what: `wrong type for ${f?.key ?? 'the body'}` };
    case 'null':
      return { body: set(null), what: `null ${f?.key ?? 'body'}` };
    case 'extra':
      return {
        body: JSON.stringify({
          ...base,
          [pick(rnd, ['colour', 'cpuOvercomit', '__proto__x', 'constructor'])]: 1,
        }),
        what: 'an extra field',
      };
    case 'huge':
      return {
        body: set(
          pick(rnd, [
            1e308,
            2 ** 63,
            Number.MAX_SAFE_INTEGER + 2,
            'x'.repeat(100_000),
            Array(5000).fill(1),
            65536 * 1024,
          ]),
        ),
        what: `a huge ${f?.key ?? 'body'}`,
      };
    case 'negative':
      return { body: set(pick(rnd, [-1, -1e308, -0.5, -(2 ** 53)])), what: `a negative ${f?.key ?? 'body'}` };
    case 'missing': {
      const req = fs.filter((x) => x.required);
      const gone = req.length ? pick(rnd, req).key : undefined;
      const { [gone ?? '']: _, ...rest } = base;
      return { body: JSON.stringify(rest), what: `without ${gone ?? 'anything'}` };
    }
    case 'shape':
      return {
        body: pick(rnd, ['[]', '"x"', '1', 'null', 'true', '{"a":{"b":{"c":[[[[]]]]}}}']),
        what: 'a body of the wrong shape',
      };
    default: {
      // A wrong value one level further down, where nested objects hide their own rules.
      const inner = f && typeof base[f.key] === 'object' && base[f.key] !== null ? f : undefined;
      if (!inner)
        return { body: set(pick(rnd, wrongValues)), what: `wrong type for ${f?.key ?? 'the body'}` };
      const v = base[inner.key];
      const nested = Array.isArray(v)
        ? [...v, pick(rnd, wrongValues)]
        : { ...(v as object), [pick(rnd, ['x', 'pool', 'path', 'mode', 'vms'])]: pick(rnd, wrongValues) };
      return { body: set(nested), what: `a wrong value inside ${inner.key}` };
    }
  }
}

function fill(op: Operation, rnd: () => number, real: boolean): string {
  const realValues: Record<string, string> = { vm: 'fz', index: '0', host: c.sim.hosts[0].name, name: 'sim' };
  return op.path.replace(/\{(\w+)\}/g, (_, k: string) =>
    real && realValues[k] !== undefined ? realValues[k] : pick(rnd, oddParams),
  );
}

// Never sent: the first ends the fuzzer's own session, the second is a stream that does not
// end (api-input covers its HEAD and its refusals).
const skipped = new Set(['DELETE /api/v1/session', 'GET /api/v1/events']);

test('fuzzing every operation finds no 5xx and no coercion', async () => {
  const rnd = seededRandom(seed);
  const failures: Failure[] = [];
  let sent = 0;
  const started = Date.now();
  const ops = operations();
  assert.ok(ops.length > 90, `${ops.length} operations in the document`);
  for (const op of ops) {
    if (skipped.has(`${op.method} ${op.path}`)) continue;
    // Operations without a body change what their path names: only paths that name nothing.
    const rounds = op.body || op.query.length ? perOperation : 3;
    for (let i = 0; i < rounds; i++) {
      let url = fill(op, rnd, op.body !== null && rnd() < 0.5);
      let body: string | undefined;
      let headers: Record<string, string> = {};
      let what = 'odd path parameters';
      let invalid = false;
      if (op.query.length && (!op.body || rnd() < 0.3)) {
        const q = pick(rnd, op.query);
        url += `?${encodeURIComponent(q.name)}=${encodeURIComponent(pick(rnd, oddQuery))}${rnd() < 0.3 ? '&unknown=1' : ''}`;
        what = `query ${q.name}`;
      }
      if (op.body?.type === 'application/json') {
        const m = mutate(op.body.schema, rnd);
        body = m.body;
        what = m.what;
        headers = { 'content-type': 'application/json' };
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch {
          parsed = undefined;
        }
        invalid = parsed === undefined || !Value.Check(op.body.schema, parsed);
      } else if (op.body) {
        body = pick(rnd, ['', 'x', 'not an image at all']);
        headers = { 'content-type': op.body.type };
        what = `a ${op.body.type} body`;
      } else if (op.method !== 'GET' && rnd() < 0.5) {
        body = '{"unexpected":true}';
        headers = { 'content-type': 'application/json' };
      }
      const r = await c.api.raw(op.method, url, { body, headers });
      sent++;
      const answer = JSON.stringify(r.body).slice(0, 200);
      const label = `${op.method} ${url.slice(0, 120)} with ${what}: ${body?.slice(0, 160) ?? ''}`;
      if (r.status >= 500) failures.push({ what: label, status: r.status, answer });
      else if (invalid && r.status < 300)
        failures.push({ what: `accepted ${label}`, status: r.status, answer });
    }
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`${sent} requests over ${ops.length} operations in ${seconds.toFixed(1)} s (seed ${seed})`);
  assert.deepEqual(failures.slice(0, 20), [], `${failures.length} failures with seed ${seed}`);
});
