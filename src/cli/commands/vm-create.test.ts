import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNic } from './vm-create.ts';

test('--nic takes user, a host bridge, or a managed network with its address, MAC and group', () => {
  assert.deepEqual(parseNic('user'), { mode: 'user' });
  assert.deepEqual(parseNic('bridge:br0'), { mode: 'bridge', bridge: 'br0' });
  assert.deepEqual(parseNic('lab'), { mode: 'network', network: 'lab' });
  assert.deepEqual(parseNic('lab,ip=10.1.0.5,mac=02:00:00:00:00:01,group=web'), {
    mode: 'network',
    network: 'lab',
    ip: '10.1.0.5',
    mac: '02:00:00:00:00:01',
    group: 'web',
  });
  assert.deepEqual(parseNic('network:user,ip=10.1.0.5'), {
    mode: 'network',
    network: 'user',
    ip: '10.1.0.5',
  });
  assert.throws(() => parseNic('lab,ipaddr=10.1.0.5'), /ipaddr=10.1.0.5 is not ip=IP, mac=MAC or group=G/);
  assert.throws(() => parseNic('lab,ip'), /is not ip=IP/);
  assert.throws(() => parseNic(',ip=10.1.0.5'), /which network/);
});
