import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addPortRules, networkRules, type PortPlan, removeNetworkRules, tableName } from './nft-rules.ts';
import { testSpec } from './test-specs.ts';

const port: PortPlan = { tap: 'tt0011', mac: '02:aa:01:00:00:01', ip: '10.1.0.11', rules: null };

test('a table is replaced whole in one transaction: created if absent, deleted, defined', () => {
  const text = networkRules(testSpec('nat', 1), []);
  const t = tableName('tn00000001');
  const lines = text.split('\n');
  assert.deepEqual(lines.slice(0, 3), [`table inet ${t} {}`, `delete table inet ${t}`, `table inet ${t} {`]);
  assert.ok(text.includes(`table bridge ${t} {}\ndelete table bridge ${t}\ntable bridge ${t} {`));
  assert.equal(
    removeNetworkRules('tn00000001'),
    `table inet ${t} {}\ndelete table inet ${t}\ntable bridge ${t} {}\ndelete table bridge ${t}\n`,
  );
});

test('nat masquerades the subnet out of any other interface; isolated drops all forwarding and input but DHCP/DNS', () => {
  const nat = networkRules(testSpec('nat', 1), []);
  assert.match(
    nat,
    /oifname != "tn00000001" ip saddr 10\.1\.0\.0\/24 ip daddr != 10\.1\.0\.0\/24 masquerade/,
  );
  assert.match(nat, /oifname "tn00000001" iifname != "tn00000001" ct state established,related accept/);
  const iso = networkRules(testSpec('isolated', 2), []);
  assert.doesNotMatch(iso, /masquerade|accept\n.*forward/);
  assert.match(iso, /iifname "tn00000002" oifname != "tn00000002" counter drop/);
  assert.match(iso, /oifname "tn00000002" iifname != "tn00000002" counter drop/);
  assert.match(
    iso,
    /iifname "tn00000002" udp dport \{ 53, 67 \} accept\n\s+iifname "tn00000002" tcp dport 53 accept\n\s+iifname "tn00000002" counter drop/,
  );
  // A plain bridge network is not routed by the host: no inet rules at all.
  assert.doesNotMatch(
    networkRules(testSpec('bridge', 3), []),
    /chain (forward|postrouting|input) \{\n\s+type filter hook (forward|input) priority filter; policy accept;\n\s+iifname "tn00000003"/,
  );
});

test("an overlay's anycast gateway never crosses the tunnel", () => {
  const text = networkRules(testSpec('overlay', 4), []);
  for (const rule of [
    'oifname "vx1004" arp daddr ip 10.4.0.1 drop',
    'iifname "vx1004" arp saddr ip 10.4.0.1 drop',
    'oifname "vx1004" udp dport { 67, 68 } drop',
    'iifname "vx1004" ether saddr 02:00:0a:04:00:01 drop',
  ])
    assert.ok(text.includes(rule), rule);
  // Whatever the host itself sends stays on the host.
  assert.match(text, /hook output priority filter; policy accept;\n\s+oifname "vx1004" drop/);
});

test('a port only sends from its own MAC and address (DHCP from 0.0.0.0 aside), IPv4 only', () => {
  const text = networkRules(testSpec('nat', 1), [port]);
  const out = text.slice(text.indexOf('chain out_tt0011'), text.indexOf('chain in_tt0011'));
  assert.deepEqual(
    out
      .split('\n')
      .slice(1, 8)
      .map((l) => l.trim()),
    [
      'ether saddr != 02:aa:01:00:00:01 drop',
      'arp saddr ether != 02:aa:01:00:00:01 drop',
      'arp saddr ip != { 10.1.0.11, 0.0.0.0 } drop',
      'meta protocol arp return',
      'meta protocol != ip drop',
      'ip saddr 0.0.0.0 udp sport 68 udp dport 67 return',
      'ip saddr != 10.1.0.11 drop',
    ],
  );
  // Allowed traffic returns, never accepts: the receiving port's chain must still see it.
  assert.doesNotMatch(out, /accept/);
  assert.ok(text.includes('add element bridge tern_tn00000001 out_ports { "tt0011" : jump out_tt0011 }'));
});

test('security rules: allow rules by protocol, ports and peers, then the default of each direction', () => {
  const rules: PortPlan['rules'] = {
    inbound: 'deny',
    outbound: 'deny',
    rules: [
      { direction: 'in', protocol: 'tcp', ports: { from: 22, to: 22 }, peers: ['10.1.0.0/24'] },
      { direction: 'in', protocol: 'udp', ports: { from: 5000, to: 5100 } },
      { direction: 'out', protocol: 'icmp' },
      { direction: 'in', protocol: 'any', peers: [] },
    ],
  };
  const text = networkRules(testSpec('nat', 1), [{ ...port, rules }]);
  const inn = text.slice(text.indexOf('chain in_tt0011'));
  assert.match(inn, /ip saddr \{ 10\.1\.0\.0\/24 \} meta l4proto tcp tcp dport 22 return/);
  assert.match(inn, /meta l4proto udp udp dport 5000-5100 return/);
  // A group with no members allows nobody.
  assert.doesNotMatch(inn, /^\s+return$/m);
  assert.match(inn, /tcp flags & \(syn \| ack\) != syn return\n.*\n.*\n\s+counter drop/);
  const out = text.slice(text.indexOf('chain out_tt0011'), text.indexOf('chain in_tt0011'));
  assert.match(out, /meta l4proto icmp return\n.*tcp flags/);
  assert.match(out, /counter drop\n/);
  // Allow by default: no final drop.
  const open = networkRules(testSpec('nat', 1), [port]);
  assert.doesNotMatch(open.slice(open.indexOf('chain in_tt0011')), /counter drop/);
});

test('one port is added alone, or replaced in the same transaction', () => {
  const add = addPortRules(testSpec('nat', 1), port, false);
  assert.ok(
    add.startsWith(
      'add chain bridge tern_tn00000001 out_tt0011\nadd rule bridge tern_tn00000001 out_tt0011 ether saddr',
    ),
  );
  assert.doesNotMatch(add, /delete/);
  const again = addPortRules(testSpec('nat', 1), port, true);
  assert.ok(again.startsWith('delete element bridge tern_tn00000001 out_ports { "tt0011" }'));
});
