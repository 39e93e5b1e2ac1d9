/** Bad input at the API boundary: always a clear 4xx in the error shape, never a 500. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Task } from '../src/wire/task.ts';
import { type Cluster, startCluster } from './harness.ts';

let c: Cluster;
before(async () => {
  c = await startCluster('input');
});
after(async () => {
  await c?.stop();
});

const json = { 'content-type': 'application/json' };

const cases: {
  name: string;
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
  status: number;
  code: string;
  message?: RegExp;
}[] = [
  {
    name: 'malformed JSON',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name": ',
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'wrong type',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"a","vcpus":"many"}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /vcpus/,
  },
  {
    name: 'unknown field',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"a","colour":"red"}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /additional/,
  },
  {
    name: 'name with spaces',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"my vm"}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /name/,
  },
  {
    name: 'name too long',
    method: 'POST',
    path: '/api/v1/vms',
    body: JSON.stringify({ name: 'a'.repeat(64) }),
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'missing name',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /name/,
  },
  {
    name: 'no disk and no template',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"nodisk"}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /diskGiB/,
  },
  {
    name: 'absurd memory',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"big","template":"tiny","memoryMiB":99999999999}',
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'negative vcpus',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"neg","template":"tiny","vcpus":-1}',
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'unknown template',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"t","template":"nosuch"}',
    headers: json,
    status: 404,
    code: 'not_found',
    message: /template nosuch/,
  },
  {
    name: 'not JSON',
    method: 'POST',
    path: '/api/v1/vms',
    body: 'name=a',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'body too large',
    method: 'POST',
    path: '/api/v1/vms',
    body: JSON.stringify({ name: 'x'.repeat(300 * 1024) }),
    headers: json,
    status: 413,
    code: 'payload_too_large',
  },
  {
    name: 'unknown VM',
    method: 'GET',
    path: '/api/v1/vms/nosuch',
    status: 404,
    code: 'not_found',
    message: /nosuch/,
  },
  {
    name: 'bad task id',
    method: 'GET',
    path: '/api/v1/tasks/not-a-uuid',
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'unknown task',
    method: 'GET',
    path: '/api/v1/tasks/00000000-0000-4000-8000-000000000000',
    status: 404,
    code: 'not_found',
  },
  {
    name: 'bad list limit',
    method: 'GET',
    path: '/api/v1/vms?limit=0',
    status: 400,
    code: 'invalid_request',
    message: /limit/,
  },
  {
    name: 'bad state filter',
    method: 'GET',
    path: '/api/v1/vms?state=flying',
    status: 400,
    code: 'invalid_request',
  },
  { name: 'unknown route', method: 'GET', path: '/api/v1/nothing', status: 404, code: 'not_found' },
  {
    name: 'shutdown timeout out of range',
    method: 'POST',
    path: '/api/v1/vms/nosuch/shutdown',
    body: '{"timeoutSeconds":0}',
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'migrating a VM that does not exist',
    method: 'POST',
    path: '/api/v1/vms/nosuch/migrate',
    body: '{}',
    headers: json,
    status: 404,
    code: 'not_found',
  },
  {
    name: 'an unknown migration mode',
    method: 'POST',
    path: '/api/v1/vms/nosuch/migrate',
    body: '{"mode":"warp"}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /mode/,
  },
  {
    name: 'a host name that is not a name',
    method: 'POST',
    path: '/api/v1/hosts',
    body: '{"name":"../etc"}',
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'a host that is already in the cluster',
    method: 'POST',
    path: '/api/v1/hosts',
    body: '{"name":"local"}',
    headers: json,
    status: 409,
    code: 'conflict',
    message: /already in the cluster/,
  },
  {
    name: 'maintenance of a host that does not exist',
    method: 'POST',
    path: '/api/v1/hosts/nosuch/maintenance',
    body: '{}',
    headers: json,
    status: 404,
    code: 'not_found',
  },
  {
    name: 'leaving maintenance when not in it',
    method: 'DELETE',
    path: '/api/v1/hosts/local/maintenance',
    status: 409,
    code: 'conflict',
  },
  {
    name: 'a capacity question without vCPUs',
    method: 'POST',
    path: '/api/v1/cluster/capacity',
    body: '{"size":{"vcpus":0,"memoryMiB":512,"diskBytes":0},"tolerate":1}',
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'an unknown placement strategy',
    method: 'PATCH',
    path: '/api/v1/cluster/settings',
    body: '{"strategy":"random"}',
    headers: json,
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'a VM joining a placement group that does not exist',
    method: 'POST',
    path: '/api/v1/vms',
    body: '{"name":"grouped","template":"tiny","groups":["nosuch"]}',
    headers: json,
    status: 404,
    code: 'not_found',
    message: /placement group nosuch/,
  },
  {
    name: 'moving a disk of a VM that does not exist',
    method: 'POST',
    path: '/api/v1/vms/nosuch/disks/0/move',
    body: '{"pool":"local"}',
    headers: json,
    status: 404,
    code: 'not_found',
  },
  // Nothing is coerced: a body means what it says or is refused.
  ...(
    [
      ['a number for a name', '{"name":123,"template":"tiny"}', /name must be string/],
      ['a string for vcpus', '{"name":"coerced","template":"tiny","vcpus":"2"}', /vcpus must be integer/],
      [
        'a string for a flag',
        '{"name":"coerced","template":"tiny","start":"false"}',
        /start must be boolean/,
      ],
      [
        'null for a number',
        '{"name":"coerced","template":"tiny","memoryMiB":null}',
        /memoryMiB must be integer/,
      ],
    ] as const
  ).map(([name, body, message]) => ({
    name,
    method: 'POST',
    path: '/api/v1/vms',
    body,
    headers: json,
    status: 400,
    code: 'invalid_request',
    message,
  })),
  {
    name: 'a typo in a cluster setting',
    method: 'PATCH',
    path: '/api/v1/cluster/settings',
    body: '{"cpuOvercomit":2}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /no field "cpuOvercomit"/,
  },
  {
    name: 'a typo in an HA setting',
    method: 'PATCH',
    path: '/api/v1/ha/settings',
    body: '{"timeout":10}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /no field "timeout"/,
  },
  {
    name: 'a typo in a quota',
    method: 'POST',
    path: '/api/v1/projects',
    body: '{"name":"typo","quota":{"vm":1}}',
    headers: json,
    status: 400,
    code: 'invalid_request',
    message: /no field "vm"/,
  },
];

for (const k of cases) {
  test(`${k.name} → ${k.status}`, async () => {
    const r = await c.api.raw(k.method, k.path, { body: k.body, headers: k.headers });
    assert.equal(r.status, k.status, JSON.stringify(r.body));
    assert.equal(r.body.error?.code, k.code);
    assert.ok(r.body.error?.message, 'a message for people');
    if (k.message) assert.match(r.body.error!.message, k.message);
  });
}

test('requests without a valid token are refused', async () => {
  for (const authorization of ['', 'Bearer nope', 'Basic abc']) {
    const res = await c.api.fetch(`${c.api.url}/api/v1/vms`, {
      headers: authorization ? { authorization } : {},
    });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'unauthorized');
  }
  // The router decodes paths: an encoded spelling of a route is still that route, and still needs a token.
  for (const route of ['/%61pi/v1/vms', '/api/v1/%76ms', '/api//v1/vms', '/nothing']) {
    const res = await c.api.fetch(`${c.api.url}${route}`);
    assert.ok(res.status === 401 || res.status === 404, `${route}: ${res.status}`);
    assert.notEqual(res.status, 200);
  }
  const health = await c.api.fetch(`${c.api.url}/api/v1/health`);
  assert.equal(health.status, 200);
});

test('a duplicate VM name is a conflict, and nothing is lost', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'dup', template: 'tiny' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const r = await c.api.raw('POST', '/api/v1/vms', {
    body: '{"name":"dup","template":"tiny"}',
    headers: json,
  });
  assert.equal(r.status, 409);
  assert.match(r.body.error!.message, /dup/);
  const list = await c.api.request<{ total: number }>('GET', '/api/v1/vms');
  assert.equal(list.total, 1);
});

test('a second task on a busy VM is refused with the task that holds it', async () => {
  const first = await c.api.request<{ task: Task }>('POST', '/api/v1/vms/dup/start');
  const second = await c.api.raw('POST', '/api/v1/vms/dup/start');
  // The first may already have finished on a fast machine; then the second is accepted.
  if (second.status === 409) {
    assert.equal(second.body.error?.code, 'locked');
    assert.match(second.body.error!.message, new RegExp(first.task.id));
  } else {
    assert.equal(second.status, 202);
  }
  await c.api.settle(first.task);
  const stop = await c.api.task('POST', '/api/v1/vms/dup/stop');
  assert.equal(stop.state, 'succeeded', JSON.stringify(stop.error));
});

test('the OpenAPI document describes the API', async () => {
  const res = await c.api.fetch(`${c.api.url}/api/v1/openapi.json`);
  assert.equal(res.status, 200);
  const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
  assert.equal(doc.openapi, '3.1.0');
  for (const p of ['/api/v1/vms', '/api/v1/vms/{vm}', '/api/v1/vms/{vm}/shutdown', '/api/v1/tasks/{id}']) {
    assert.ok(doc.paths[p], `${p} documented`);
  }
  assert.ok(doc.paths['/api/v1/vms'].post);
});

test('a wrong method is 405 with the methods the path answers', async () => {
  const r = await c.api.raw('PUT', '/api/v1/vms');
  assert.equal(r.status, 405, JSON.stringify(r.body));
  assert.equal(r.body.error?.code, 'method_not_allowed');
  assert.equal(r.headers.get('allow'), 'GET, HEAD, POST');
  const one = await c.api.raw('PATCH', '/api/v1/vms/some-vm');
  assert.equal(one.status, 405);
  assert.equal(one.headers.get('allow'), 'DELETE, GET, HEAD');
  const none = await c.api.raw('PUT', '/api/v1/nothing/here');
  assert.equal(none.status, 404);
  const anonymous = await c.api.fetch(`${c.api.url}/api/v1/vms`, { method: 'PUT' });
  assert.equal(anonymous.status, 401, 'no map of the API without a token');
});

test('HEAD of the event stream answers with its headers and no stream', async () => {
  const r = await c.api.raw('HEAD', '/api/v1/events');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
  assert.equal(r.body, '');
});
