/**
 * The OpenAPI document the manager serves is valid OpenAPI 3.1 (checked against the
 * specification's own schema) and says what a generated client needs: where the API is, an
 * operation id for every operation, named types, who is refused, where a task is followed,
 * and the bodies that are not JSON.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

type Json = Record<string, unknown>;
interface Operation {
  operationId?: string;
  security?: unknown[];
  requestBody?: { content: Record<string, unknown> };
  responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, unknown> }>;
}

let c: SimCluster;
let doc: { servers?: unknown[]; paths: Record<string, Record<string, Operation>>; components: Json };
before(async () => {
  c = await startSimCluster(1);
  const r = await c.api.raw('GET', '/api/v1/openapi.json');
  assert.equal(r.status, 200);
  doc = r.body as unknown as typeof doc;
});
after(async () => {
  await c?.close();
});

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({
      key: `${method.toUpperCase()} ${path}`,
      path,
      method,
      op,
    })),
  );

test('the document validates against the OpenAPI 3.1 schema, every reference resolving', async () => {
  const validator = new Validator();
  const result = await validator.validate(doc as Json);
  assert.deepEqual(result.errors ?? [], [], 'no validation errors');
  assert.equal(result.valid, true);
  const text = JSON.stringify(doc);
  const schemas = doc.components.schemas as Json;
  for (const m of text.matchAll(/"#\/components\/schemas\/([^"]+)"/g))
    assert.ok(schemas[m[1]], `${m[1]} is defined`);
});

test('servers, and a unique operation id on every operation', () => {
  assert.ok(doc.servers?.length, 'servers');
  const ids = operations().map((o) => o.op.operationId);
  assert.ok(ids.length > 90);
  assert.ok(
    ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z]+$/.test(id)),
    'an id on each',
  );
  assert.equal(new Set(ids).size, ids.length, 'ids are unique');
});

test('the wire objects are named types', () => {
  const schemas = doc.components.schemas as Json;
  for (const name of [
    'Vm',
    'CreateVmRequest',
    'Task',
    'ErrorBody',
    'Template',
    'Image',
    'ImagePool',
    'Alert',
    'Host',
    'Project',
  ])
    assert.ok(schemas[name], `${name} is a named schema`);
  const show = doc.paths['/api/v1/vms/{vm}'].get.responses['200'].content?.['application/json'];
  assert.deepEqual(show, { schema: { $ref: '#/components/schemas/Vm' } });
});

test('401 and 403 where they apply, and a Location on every 202', () => {
  for (const { key, path, method, op } of operations()) {
    const rule = c.manager.routeAccess.get(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`);
    assert.ok(rule, `${key} has a rule`);
    if (rule === 'public') assert.deepEqual(op.security, [], `${key} needs no token`);
    else assert.ok(op.responses['401'], `${key} declares 401`);
    if (rule !== 'public' && rule !== 'authenticated') assert.ok(op.responses['403'], `${key} declares 403`);
    if (op.responses['202']) assert.ok(op.responses['202'].headers?.Location, `${key}: 202 with Location`);
  }
});

test('the upload and the event stream are described', () => {
  const upload = doc.paths['/api/v1/images/{name}'].put.requestBody;
  assert.ok(upload?.content['application/octet-stream'], 'the image upload is a byte stream');
  const events = doc.paths['/api/v1/events'].get.responses['200'].content;
  assert.ok(events?.['text/event-stream'], 'events are a server-sent event stream');
});
