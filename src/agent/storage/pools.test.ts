import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveVolume } from './pools.ts';

test('volumes resolve inside their pool only', () => {
  const pools = { local: '/srv/tern/local' };
  assert.equal(
    resolveVolume(pools, { pool: 'local', path: 'vms/a/disk0.qcow2' }),
    '/srv/tern/local/vms/a/disk0.qcow2',
  );
  assert.throws(() => resolveVolume(pools, { pool: 'local', path: '../etc/passwd' }), /leaves pool/);
  assert.throws(() => resolveVolume(pools, { pool: 'local', path: '.' }), /leaves pool/);
  assert.throws(() => resolveVolume(pools, { pool: 'other', path: 'x' }), /does not exist/);
});
