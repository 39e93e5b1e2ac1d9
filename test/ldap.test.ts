/**
 * LDAP sign-in and the LDAP key store against a real slapd (see slapd.ts): right and wrong
 * passwords, names that try to inject filter syntax, a directory that is down or never answers,
 * and a key container that only the manager's account may read or write.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { TernError } from '../src/errors.ts';
import { type LdapAuthConfig, ldapAuthenticate, rolesFromGroups } from '../src/manager/identity/ldap.ts';
import type { Kek } from '../src/manager/secrets/keystore.ts';
import { LdapKeyStore } from '../src/manager/secrets/keystores/ldap.ts';
import { freePorts } from './harness.ts';
import { type Slapd, startSlapd } from './slapd.ts';

let s: Slapd;
before(async () => {
  s = await startSlapd();
});
after(async () => {
  await s?.stop();
});

const auth = (over: Partial<LdapAuthConfig> = {}): LdapAuthConfig => ({
  url: s.url,
  bindDn: s.otherDn,
  bindPassword: s.otherPassword,
  userBase: s.userBase,
  userFilter: '(&(objectClass=inetOrgPerson)(uid={user}))',
  groupBase: s.groupBase,
  timeoutMs: 3000,
  ...over,
});

const refused = (code: string, message: RegExp) => (err: unknown) => {
  assert.ok(err instanceof TernError, String(err));
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  return true;
};
const badLogin = refused('unauthorized', /^invalid user name or password$/);

describe('ldapAuthenticate', () => {
  test('the right password gives the DN, display name and groups', async () => {
    const alice = await ldapAuthenticate(auth(), 'alice', s.users.alice);
    assert.deepEqual(alice, {
      dn: s.userDns.alice,
      username: 'alice',
      displayName: 'Alice Archer',
      groups: [s.groupDns['tern-operators']],
    });
    const mapping = [
      { ldapGroup: 'tern-operators', role: 'operator' },
      { ldapGroup: s.groupDns['tern-auditors'].toUpperCase(), role: 'auditor' },
    ];
    assert.deepEqual(rolesFromGroups(alice.groups, mapping), ['operator']);
    const carol = await ldapAuthenticate(auth(), 'carol', s.users.carol);
    assert.deepEqual(rolesFromGroups(carol.groups, mapping), ['auditor']);
    const dave = await ldapAuthenticate(auth(), 'dave', s.users.dave);
    assert.deepEqual(dave.groups, []);
  });

  test('the name comes back as the directory spells it', async () => {
    const alice = await ldapAuthenticate(auth(), 'ALICE', s.users.alice);
    assert.equal(alice.username, 'alice');
  });

  test('without a group base, memberOf on the user (as in AD) gives the groups', async () => {
    const bob = await ldapAuthenticate(auth({ groupBase: undefined }), 'bob', s.users.bob);
    assert.deepEqual(bob.groups, [s.groupDns['tern-users']]);
  });

  test('a DN with filter metacharacters still finds its groups, by memberOf and by search', async () => {
    const frank = await ldapAuthenticate(auth(), 'frank', s.users.frank);
    assert.equal(frank.displayName, 'Frank (QA), Jr.');
    // tern-qa is a groupOfUniqueNames that only the search finds: `{dn}` in the filter was escaped.
    assert.deepEqual(
      rolesFromGroups(frank.groups, [
        { ldapGroup: 'tern-users', role: 'user' },
        { ldapGroup: s.groupDns['tern-qa'], role: 'qa' },
      ]),
      ['user', 'qa'],
    );
    assert.equal(frank.groups.length, 2);
    const memberOfOnly = await ldapAuthenticate(auth({ groupBase: undefined }), 'frank', s.users.frank);
    assert.deepEqual(memberOfOnly.groups, [s.groupDns['tern-users']]);
  });

  test('a wrong password, an unknown user and an empty password all get the same answer', async () => {
    await assert.rejects(ldapAuthenticate(auth(), 'alice', s.users.bob), badLogin);
    await assert.rejects(ldapAuthenticate(auth(), 'alice', `${s.users.alice}x`), badLogin);
    await assert.rejects(ldapAuthenticate(auth(), 'nobody', s.users.alice), badLogin);
    await assert.rejects(ldapAuthenticate(auth(), 'alice', ''), badLogin);
    await assert.rejects(ldapAuthenticate(auth(), '', 'whatever'), badLogin);
  });

  test('an empty password is refused before anything reaches the directory', async () => {
    // An anonymous bind would succeed; a directory that does not exist proves none was tried.
    const [port] = await freePorts(1);
    await assert.rejects(ldapAuthenticate(auth({ url: `ldap://127.0.0.1:${port}` }), 'alice', ''), badLogin);
  });

  test('filter metacharacters in the name are escaped, never interpreted', async () => {
    // Each of these, put into the filter unescaped, would match exactly alice and sign in.
    for (const name of ['al*', 'a*e', '*)(uid=alice', 'alice)(uid=alice', 'alice)(|(uid=*']) {
      await assert.rejects(ldapAuthenticate(auth(), name, s.users.alice), badLogin, name);
    }
    for (const name of ['*', ')(uid=*', 'alice\\', 'al\0ice', 'x'.repeat(300)]) {
      await assert.rejects(ldapAuthenticate(auth(), name, s.users.alice), badLogin, name);
    }
  });

  test('a service account the directory refuses is the directory being unavailable', async () => {
    await assert.rejects(
      ldapAuthenticate(auth({ bindPassword: 'wrong' }), 'alice', s.users.alice),
      refused('unavailable', /refused the service account cn=other-app/),
    );
  });

  test('a user filter without {user} is a configuration error', async () => {
    await assert.rejects(
      ldapAuthenticate(auth({ userFilter: '(uid=alice)' }), 'alice', s.users.alice),
      refused('invalid_request', /has no \{user\}/),
    );
  });

  test('a directory that is down is unavailable at once', async () => {
    const [port] = await freePorts(1);
    const url = `ldap://127.0.0.1:${port}`;
    const t = Date.now();
    await assert.rejects(
      ldapAuthenticate(auth({ url }), 'alice', s.users.alice),
      refused('unavailable', new RegExp(`^the directory ${url} did not answer: .*ECONNREFUSED`)),
    );
    assert.ok(Date.now() - t < 3000);
  });

  test('a directory that accepts but never answers is unavailable within the timeout', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((sock) => sockets.add(sock));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const url = `ldap://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const t = Date.now();
      await assert.rejects(
        ldapAuthenticate(auth({ url, timeoutMs: 300 }), 'alice', s.users.alice),
        refused('unavailable', /did not answer: .*timed out/),
      );
      const took = Date.now() - t;
      assert.ok(took >= 250 && took < 2000, `${took} ms`);
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe('LdapKeyStore', () => {
  const store = (account: 'manager' | 'other') =>
    new LdapKeyStore({
      kind: 'ldap',
      url: s.url,
      bindDn: account === 'manager' ? s.managerDn : s.otherDn,
      bindPassword: account === 'manager' ? s.managerPassword : s.otherPassword,
      baseDn: s.keysDn,
    });
  const kek = (id: string, createdAt: string): Kek => ({ id, key: crypto.randomBytes(32), createdAt });

  test('the manager adds, lists (oldest first, exact bytes) and removes keys', async () => {
    const ks = store('manager');
    assert.equal(ks.description, `ldap ${s.url} ${s.keysDn}`);
    assert.deepEqual(await ks.list(), [], 'a visible, empty container is an empty list');
    const newer = kek('kek-2', '2025-03-01T10:00:00.000Z');
    const older = kek('kek-1', '2024-12-31T23:59:59.999Z');
    await ks.add(newer);
    await ks.add(older);
    const listed = await ks.list();
    assert.deepEqual(
      listed.map((k) => [k.id, k.createdAt]),
      [
        ['kek-1', older.createdAt],
        ['kek-2', newer.createdAt],
      ],
    );
    assert.ok(listed[0].key.equals(older.key));
    assert.ok(listed[1].key.equals(newer.key));

    await assert.rejects(
      ks.add({ ...older, key: crypto.randomBytes(32) }),
      refused('conflict', /a key kek-1 is already there/),
    );
    assert.ok((await ks.list())[0].key.equals(older.key), 'never replaced');

    await ks.remove('kek-1');
    assert.deepEqual(
      (await ks.list()).map((k) => k.id),
      ['kek-2'],
    );
    await assert.rejects(ks.remove('kek-1'), refused('not_found', /no key kek-1/));
    await ks.remove('kek-2');
    assert.deepEqual(await ks.list(), []);
    await ks.close();
  });

  test('keys that cannot be stored faithfully are refused before the directory sees them', async () => {
    const ks = store('manager');
    for (const bad of [
      { ...kek('x,ou=evil', '2025-01-01T00:00:00.000Z') },
      { ...kek('ok', '2025-01-01T00:00:00.000Z'), key: crypto.randomBytes(16) },
      { ...kek('ok', 'yesterday') },
    ])
      await assert.rejects(ks.add(bad), refused('invalid_request', /key store/));
  });

  test('another account may neither list nor add keys', async () => {
    const ks = store('other');
    const notAllowed = refused(
      'unavailable',
      new RegExp(
        `^key store ldap ${s.url} ${s.keysDn}: the account ${s.otherDn} may not read the keys \\(.+\\)$`,
      ),
    );
    await assert.rejects(ks.list(), notAllowed);
    await assert.rejects(ks.add(kek('sneaky', '2025-01-01T00:00:00.000Z')), notAllowed);
    await assert.rejects(ks.remove('sneaky'), notAllowed);
  });

  test('a wrong service password is a refusal that names the account', async () => {
    const ks = new LdapKeyStore({
      kind: 'ldap',
      url: s.url,
      bindDn: s.managerDn,
      bindPassword: 'not-the-password',
      baseDn: s.keysDn,
    });
    await assert.rejects(
      ks.list(),
      refused('unavailable', /the account cn=tern-manager.* may not read the keys \(bind refused: /),
    );
  });

  test('a directory that is down is unavailable', async () => {
    const [port] = await freePorts(1);
    const ks = new LdapKeyStore(
      {
        kind: 'ldap',
        url: `ldap://127.0.0.1:${port}`,
        bindDn: s.managerDn,
        bindPassword: 'x',
        baseDn: s.keysDn,
      },
      { timeoutMs: 1000 },
    );
    await assert.rejects(ks.list(), refused('unavailable', /did not answer: .*ECONNREFUSED/));
  });

  test('an entry that is not a well-formed Tern key is an error naming it', async () => {
    const ks = store('manager');
    const admin = await s.admin();
    const good = kek('good', '2025-01-01T00:00:00.000Z');
    try {
      await ks.add(good);
      const cases: [string, Record<string, string | string[]>, RegExp][] = [
        ['garbage', { description: 'not a key' }, /description does not start with tern-kek:v1:/],
        [
          'short',
          { description: `tern-kek:v1:2025-01-01T00:00:00.000Z:${Buffer.alloc(16).toString('base64')}` },
          /32 bytes/,
        ],
        [
          'nodate',
          { description: `tern-kek:v1:soon:${Buffer.alloc(32).toString('base64')}` },
          /no creation time/,
        ],
        ['twice', { description: ['tern-kek:v1:a', 'tern-kek:v1:b'] }, /2 description values/],
        ['none', {}, /0 description values/],
      ];
      for (const [id, attrs, why] of cases) {
        const dn = `cn=${id},${s.keysDn}`;
        await admin.add(dn, { objectClass: 'applicationProcess', cn: id, ...attrs });
        try {
          await assert.rejects(
            ks.list(),
            refused(
              'protocol_error',
              new RegExp(`^key store ldap .*: ${dn} is not a Tern key \\(.*${why.source}`),
            ),
          );
        } finally {
          await admin.del(dn);
        }
      }
      await admin.add(`ou=stray,${s.keysDn}`, { objectClass: 'organizationalUnit', ou: 'stray' });
      await assert.rejects(
        ks.list(),
        refused('protocol_error', /ou=stray,.* is not a Tern key \(not an applicationProcess\)/),
      );
      await admin.del(`ou=stray,${s.keysDn}`);
      assert.deepEqual(
        (await ks.list()).map((k) => k.id),
        ['good'],
      );
    } finally {
      await admin.unbind();
      await ks.remove('good').catch(() => {});
    }
  });
});
