import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultHaSettings } from '../../wire/ha.ts';
import {
  minTimeoutS,
  type ReadinessCheckName,
  type ReadinessHost,
  type ReadinessInput,
  readiness,
  readinessChecks,
} from './readiness.ts';

const host = (name: string, over: Partial<ReadinessHost> = {}): ReadinessHost => ({
  name,
  state: 'online',
  pools: [
    { name: 'san', shared: true },
    { name: 'nfs', shared: true },
    { name: 'local', shared: false },
  ],
  managementPaths: 2,
  ...over,
});

/** A cluster that passes every check. */
const ready = (over: Partial<ReadinessInput> = {}): ReadinessInput => ({
  hosts: [host('a'), host('b'), host('c')],
  manager: { onHost: null, standbys: 0 },
  settings: { ...defaultHaSettings, enabled: true, statefilePool: 'san', storageFailoverS: 20 },
  toleratesNow: 1,
  ...over,
});

const only = (input: ReadinessInput, check: ReadinessCheckName) => {
  const r = readiness(input).find((c) => c.check === check);
  assert.ok(r);
  return r;
};

test('a ready cluster passes every check, one answer per check in order', () => {
  const r = readiness(ready());
  assert.deepEqual(
    r.map((c) => c.check),
    [...readinessChecks],
  );
  for (const c of r) {
    assert.equal(c.level, 'ok', `${c.check}: ${c.message}`);
    assert.equal(c.fix, null);
  }
});

test('HA off: a warning with the command that turns it on', () => {
  const c = only(ready({ settings: { ...ready().settings, enabled: false } }), 'enabled');
  assert.equal(c.level, 'warning');
  assert.match(c.message, /HA is off/);
  assert.match(c.fix ?? '', /tern ha settings --enable/);
});

test('fewer than 2 hosts is an error', () => {
  for (const hosts of [[], [host('a')]]) {
    const c = only(ready({ hosts }), 'hosts');
    assert.equal(c.level, 'error');
    assert.match(c.message, /nowhere to restart/);
    assert.match(c.fix ?? '', /tern host add/);
  }
});

test('the manager on a cluster host without a standby is a single point of failure', () => {
  const c = only(ready({ manager: { onHost: 'b', standbys: 0 } }), 'manager');
  assert.equal(c.level, 'warning');
  assert.match(c.message, /^the manager runs on host b with no standby: if b fails/);
  assert.match(c.fix ?? '', /outside the cluster|standby/);
  assert.equal(only(ready({ manager: { onHost: 'b', standbys: 1 } }), 'manager').level, 'ok');
  // A machine that is not one of the hosts is outside the cluster.
  assert.equal(only(ready({ manager: { onHost: 'mgmt1', standbys: 0 } }), 'manager').level, 'ok');
});

test('statefile pool not set: an error that suggests the pools every host shares', () => {
  const c = only(ready({ settings: { ...ready().settings, statefilePool: null } }), 'statefile');
  assert.equal(c.level, 'error');
  assert.match(c.message, /no statefile pool is set/);
  assert.equal(c.fix, 'choose a pool every host shares (nfs, san): tern ha settings --statefile-pool nfs');
});

test('statefile pool unknown to every host', () => {
  const c = only(ready({ settings: { ...ready().settings, statefilePool: 'ceph' } }), 'statefile');
  assert.equal(c.level, 'error');
  assert.equal(c.message, 'statefile pool ceph is unknown: no host reports it');
});

test('statefile pool missing on a host, or local storage: not shared by every host', () => {
  const hosts = [
    host('a'),
    host('b', { pools: [{ name: 'nfs', shared: true }] }),
    host('c', { pools: [{ name: 'nfs', shared: true }] }),
  ];
  const c = only(ready({ hosts }), 'statefile');
  assert.equal(c.level, 'error');
  assert.match(c.message, /^statefile pool san is not shared by every host: b, c do not see it/);
  assert.match(c.fix ?? '', /--statefile-pool nfs$/);

  const local = only(ready({ settings: { ...ready().settings, statefilePool: 'local' } }), 'statefile');
  assert.equal(local.level, 'error');
  assert.match(local.message, /it is local storage on a, b, c/);
});

test('no pool shared by all: the fix says to add one', () => {
  const hosts = [host('a', { pools: [{ name: 'local', shared: false }] }), host('b')];
  const c = only(ready({ hosts, settings: { ...ready().settings, statefilePool: null } }), 'statefile');
  assert.match(c.fix ?? '', /^add a pool every host mounts as shared storage/);
});

test('a single management network path is a warning naming the hosts; unknown is noted', () => {
  const hosts = [host('a', { managementPaths: 1 }), host('b'), host('c', { managementPaths: 1 })];
  const c = only(ready({ hosts }), 'management-network');
  assert.equal(c.level, 'warning');
  assert.match(c.message, /^a, c have a single management network path/);
  assert.match(c.fix ?? '', /bond of two NICs wired to separate switches/);

  const unknown = only(
    ready({ hosts: [host('a', { managementPaths: undefined }), host('b')] }),
    'management-network',
  );
  assert.equal(unknown.level, 'ok');
  assert.match(unknown.message, /^a did not report its management paths/);
});

test('HA timeout shorter than the storage failover plus margin', () => {
  assert.equal(minTimeoutS(0), 0);
  assert.equal(minTimeoutS(10), 15);
  assert.equal(minTimeoutS(20), 25);
  assert.equal(minTimeoutS(40), 50);
  const settings = { ...ready().settings, timeoutS: 30, storageFailoverS: 30 };
  const c = only(ready({ settings }), 'timeout');
  assert.equal(c.level, 'warning');
  assert.match(
    c.message,
    /^HA timeout 30 s is shorter than the declared 30 s storage failover plus margin \(38 s\)/,
  );
  assert.equal(
    c.fix,
    'raise the timeout: tern ha settings --timeout 38; or shorten the storage path failover (multipath timeouts) to 24 s or less',
  );
  assert.equal(only(ready({ settings: { ...settings, timeoutS: 38 } }), 'timeout').level, 'ok');
  assert.equal(only(ready({ settings: { ...settings, storageFailoverS: 24 } }), 'timeout').level, 'ok');
  // Beyond the longest timeout there is only one fix.
  const long = only(ready({ settings: { ...settings, timeoutS: 600, storageFailoverS: 590 } }), 'timeout');
  assert.match(long.fix ?? '', /to 480 s or less; the HA timeout cannot exceed 600 s$/);
  // Nothing declared: nothing to hold the timeout against.
  assert.equal(only(ready({ settings: { ...settings, storageFailoverS: 0 } }), 'timeout').level, 'ok');
});

test('capacity below failures-to-tolerate', () => {
  const c = only(ready({ toleratesNow: 0 }), 'capacity');
  assert.equal(c.level, 'warning');
  assert.match(
    c.message,
    /^protected VMs can restart after only 0 host failures, fewer than the 1 to tolerate/,
  );
  assert.match(c.fix ?? '', /add hosts or memory/);
  const two = only(
    ready({ toleratesNow: 1, settings: { ...ready().settings, failuresToTolerate: 2 } }),
    'capacity',
  );
  assert.equal(two.level, 'warning');
  assert.equal(only(ready({ toleratesNow: 3 }), 'capacity').level, 'ok');
});
