import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SecurityGroup } from '../../wire/network.ts';
import { portRules } from './port-rules.ts';

const group: SecurityGroup = {
  id: '00000000-0000-4000-8000-000000000001',
  name: 'db',
  inbound: 'deny',
  outbound: 'allow',
  rules: [
    { direction: 'in', protocol: 'tcp', ports: { from: 5432, to: 5432 }, peer: { group: 'web' } },
    { direction: 'in', protocol: 'icmp', peer: { cidr: '10.0.0.0/8' } },
    { direction: 'in', protocol: 'tcp', ports: { from: 22, to: 22 } },
    { direction: 'in', protocol: 'any', peer: { group: 'empty' } },
  ],
  createdAt: 't',
};

test("a group's rules for one port: group peers become its NICs' addresses, an empty group allows nothing", () => {
  const members = new Map([['web', ['10.1.0.7', '10.1.0.3', '10.1.0.7']]]);
  assert.deepEqual(portRules(group, members), {
    inbound: 'deny',
    outbound: 'allow',
    rules: [
      {
        direction: 'in',
        protocol: 'tcp',
        ports: { from: 5432, to: 5432 },
        peers: ['10.1.0.3/32', '10.1.0.7/32'],
      },
      { direction: 'in', protocol: 'icmp', peers: ['10.0.0.0/8'] },
      { direction: 'in', protocol: 'tcp', ports: { from: 22, to: 22 } },
    ],
  });
});
