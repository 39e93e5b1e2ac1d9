import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CreateNetworkRequest } from '../../wire/network.ts';
import { bridgeNameOf, nextVni, planNetwork } from './plan.ts';

const id = '0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d';
const choices = { id, gatewayMac: '06:74:6e:00:00:01', vnisInUse: new Set([10000]), now: 't' };
const plan = (req: Partial<CreateNetworkRequest>) =>
  planNetwork({ name: 'n', type: 'nat', subnet: '10.1.0.0/24', ...req }, choices);

test('the bridge is named from the id, within the kernel’s 15 characters', () => {
  assert.equal(bridgeNameOf(id), 'tn0a1b2c3d');
  assert.equal(plan({}).bridge, 'tn0a1b2c3d');
});

test('each type takes its defaults: the first address as gateway, an overlay its VNI and a smaller MTU', () => {
  const nat = plan({});
  assert.equal(nat.gateway, '10.1.0.1');
  assert.equal(nat.mtu, 1500);
  assert.equal(nat.vni, null);
  const overlay = plan({ type: 'overlay' });
  assert.equal(overlay.vni, 10001, 'the lowest free VNI');
  assert.equal(overlay.mtu, 1450);
  assert.equal(plan({ type: 'bridge' }).gateway, null, 'a bridge network routes nothing unless told');
  assert.equal(plan({ type: 'isolated', gateway: null }).gateway, null);
  assert.equal(nextVni(new Set()), 10000);
});

test('what a type does not have is refused with the field named', () => {
  const refused = (req: Partial<CreateNetworkRequest>, field: string, why: RegExp) =>
    assert.throws(
      () => plan(req),
      (e: Error & { details?: { field?: string } }) => e.details?.field === field && why.test(e.message),
    );
  refused({ uplink: 'eth0' }, 'uplink', /a nat network has no uplink/);
  refused({ type: 'isolated', uplink: 'eth0' }, 'uplink', /isolated network has no uplink/);
  refused({ vni: 5 }, 'vni', /only an overlay/);
  refused({ type: 'bridge', vlan: 5 }, 'vlan', /needs an uplink/);
  refused({ type: 'overlay', vlan: 5 }, 'vlan', /not a overlay network/);
  refused({ gateway: null }, 'gateway', /needs one/);
  refused(
    { type: 'isolated', gateway: null, dhcp: { start: '10.1.0.10', end: '10.1.0.20' } },
    'gateway',
    /give one/,
  );
  refused({ gateway: '10.2.0.1' }, 'gateway', /no host address/);
  refused({ subnet: '10.1.0.1/24' }, 'subnet', /host bits/);
  assert.throws(() => plan({ type: 'overlay', vni: 10000 }), /VNI 10000 is used/);
});
