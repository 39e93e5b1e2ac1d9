import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRule, ruleText } from './security-group.ts';

test('a rule as written on the command line, and back', () => {
  assert.deepEqual(parseRule('in tcp 22'), { direction: 'in', protocol: 'tcp', ports: { from: 22, to: 22 } });
  assert.deepEqual(parseRule(' in  tcp 5432 group:web '), {
    direction: 'in',
    protocol: 'tcp',
    ports: { from: 5432, to: 5432 },
    peer: { group: 'web' },
  });
  assert.deepEqual(parseRule('out udp 1000-2000 10.0.0.0/8'), {
    direction: 'out',
    protocol: 'udp',
    ports: { from: 1000, to: 2000 },
    peer: { cidr: '10.0.0.0/8' },
  });
  for (const t of ['in tcp 22', 'in icmp 10.0.0.0/8', 'out any group:db', 'in udp 53-54'])
    assert.equal(ruleText(parseRule(t)), t);
  assert.throws(() => parseRule('inbound tcp 22'), /starts with in or out/);
  assert.throws(() => parseRule('in sctp'), /tcp, udp, icmp or any/);
  assert.throws(() => parseRule('in tcp 22 23'), /23 is neither/);
});
