import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideUnplannedFailover, type PrimaryFacts } from './failover-guard.ts';

const facts = (vm: PrimaryFacts['vm'], host: PrimaryFacts['host']): PrimaryFacts => ({
  vmName: 'db-1',
  vm,
  host,
});

test('a primary confirmed not to run the VM lets the replica start, with no risk', () => {
  assert.deepEqual(decideUnplannedFailover(facts('stopped', 'online'), false), { allowed: true, risk: null });
  assert.deepEqual(decideUnplannedFailover(facts('unknown', 'fenced'), false), { allowed: true, risk: null });
});

test('a silent primary is refused unless forced, and the force carries the risk in words', () => {
  const refused = decideUnplannedFailover(facts('unknown', 'silent'), false);
  assert.equal(refused.allowed, false);
  assert.match(!refused.allowed ? refused.why : '', /silent and not confirmed fenced: db-1 may still run/);
  const forced = decideUnplannedFailover(facts('unknown', 'silent'), true);
  assert.equal(forced.allowed, true);
  assert.match(forced.allowed ? (forced.risk ?? '') : '', /two copies run and write/);
});

test('a primary that answers it runs the VM is refused even when forced: that is a planned failover', () => {
  for (const vm of ['running', 'paused'] as const) {
    const d = decideUnplannedFailover(facts(vm, 'online'), true);
    assert.equal(d.allowed, false);
    assert.match(!d.allowed ? d.fix : '', /planned failover/);
  }
});
