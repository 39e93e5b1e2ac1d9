import assert from 'node:assert/strict';
import { test } from 'node:test';
import { groupCn, normaliseDn, parseDn, rolesFromGroups } from './ldap-groups.ts';

const ops = 'cn=tern-operators,ou=groups,dc=tern,dc=test';

test('a full DN matches whatever its spelling: case, spaces, escapes', () => {
  const mapping = [{ ldapGroup: 'CN=Tern-Operators, OU=Groups, DC=tern, DC=test', role: 'operator' }];
  assert.deepEqual(rolesFromGroups([ops], mapping), ['operator']);
  assert.deepEqual(rolesFromGroups(['cn = tern-operators ,ou=groups,dc=tern,dc=test'], mapping), [
    'operator',
  ]);
  assert.deepEqual(rolesFromGroups(['cn=tern\\2Doperators,ou=groups,dc=tern,dc=test'], mapping), [
    'operator',
  ]);
  // Same cn somewhere else is another group.
  assert.deepEqual(rolesFromGroups(['cn=tern-operators,ou=elsewhere,dc=tern,dc=test'], mapping), []);
});

test('a bare name matches the cn of any group, case- and whitespace-insensitively', () => {
  const mapping = [{ ldapGroup: '  Tern  Auditors ', role: 'auditor' }];
  assert.deepEqual(rolesFromGroups(['CN=Tern Auditors,OU=Groups,DC=example,DC=org'], mapping), ['auditor']);
  assert.deepEqual(rolesFromGroups(['cn=tern   auditors,dc=x'], mapping), ['auditor']);
  assert.deepEqual(rolesFromGroups(['ou=tern auditors,dc=x'], mapping), [], 'an ou is not a cn');
  assert.deepEqual(rolesFromGroups(['tern auditors'], mapping), ['auditor'], 'a plain group name');
});

test('each role once, in the order of the mapping; unmapped groups give nothing', () => {
  const mapping = [
    { ldapGroup: 'tern-admins', role: 'admin' },
    { ldapGroup: ops, role: 'operator' },
    { ldapGroup: 'tern-operators', role: 'operator' },
    { ldapGroup: '', role: 'everyone' },
  ];
  assert.deepEqual(rolesFromGroups([ops, 'cn=tern-admins,ou=groups,dc=tern,dc=test'], mapping), [
    'admin',
    'operator',
  ]);
  assert.deepEqual(rolesFromGroups(['cn=something-else,dc=x'], mapping), []);
  assert.deepEqual(rolesFromGroups([], mapping), []);
});

test('escaped separators stay inside the value', () => {
  const dn = 'cn=Ops\\, Night (L2),ou=groups,dc=x';
  assert.deepEqual(parseDn(dn), [[['cn', 'Ops, Night (L2)']], [['ou', 'groups']], [['dc', 'x']]]);
  assert.equal(groupCn(dn), 'ops, night (l2)');
  assert.deepEqual(rolesFromGroups([dn], [{ ldapGroup: 'ops, night (l2)', role: 'r' }]), ['r']);
  assert.deepEqual(rolesFromGroups([dn], [{ ldapGroup: 'ops', role: 'r' }]), []);
  assert.equal(normaliseDn('CN=Caf\\C3\\A9,DC=x'), normaliseDn('cn=café,dc=x'));
  assert.equal(normaliseDn('cn=a+sn=b,dc=x'), normaliseDn('SN=b + CN=a,dc=x'));
});

test('malformed DNs match nothing and never throw', () => {
  for (const bad of ['=x', 'cn=x,', 'cn=x\\', ',,', '', '   ', 'cn=a,=b']) {
    assert.equal(normaliseDn(bad), null, bad);
    assert.deepEqual(rolesFromGroups([bad], [{ ldapGroup: 'cn=x', role: 'r' }]), []);
  }
});
