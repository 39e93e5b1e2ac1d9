/**
 * A real, throwaway OpenLDAP server for tests: slapd in the foreground on a free loopback port,
 * its config and database in a fresh temporary directory, seeded with people, groups, two
 * service accounts and a key container that only the manager's account may see. The memberof
 * overlay keeps `memberOf` on people as Active Directory does, so both ways of finding a user's
 * groups are exercised. stop() (and, as a last resort, the test process exiting) ends slapd
 * and removes the directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Client } from 'ldapts';
import { freePorts, tempDir } from './harness.ts';

export const baseDn = 'dc=tern,dc=test';
const adminDn = `cn=admin,${baseDn}`;
const managerDn = `cn=tern-manager,ou=services,${baseDn}`;
const otherDn = `cn=other-app,ou=services,${baseDn}`;
const keysDn = `ou=tern-keys,${baseDn}`;

/** The people and the one groupOfNames each is in (none for dave); frank is in tern-qa too. */
const people = [
  { uid: 'alice', rdn: 'uid=alice', cn: 'Alice Archer', group: 'tern-operators' },
  { uid: 'bob', rdn: 'uid=bob', cn: 'Bob Baker', group: 'tern-users' },
  { uid: 'carol', rdn: 'uid=carol', cn: 'Carol Clerk', group: 'tern-auditors' },
  { uid: 'dave', rdn: 'uid=dave', cn: 'Dave Doe', group: null },
  { uid: 'erin', rdn: 'uid=erin', cn: 'Erin Eagle', group: 'tern-admins' },
  // A DN with characters that must be escaped in DNs and in filters.
  { uid: 'frank', rdn: 'cn=Frank (QA)\\, Jr.', cn: 'Frank (QA), Jr.', group: 'tern-users' },
] as const;
const groupNames = ['tern-operators', 'tern-users', 'tern-auditors', 'tern-admins'] as const;

export interface Slapd {
  url: string;
  baseDn: string;
  adminDn: string;
  adminPassword: string;
  /** The manager's service account, the only one the key container's ACL lets in. */
  managerDn: string;
  managerPassword: string;
  /** Another application's account: may read people and groups, not keys. */
  otherDn: string;
  otherPassword: string;
  keysDn: string;
  userBase: string;
  groupBase: string;
  /** uid → password, for alice, bob, carol, dave, erin and frank. */
  users: Record<string, string>;
  /** uid → DN. */
  userDns: Record<string, string>;
  /** group cn → DN: the groupOfNames tern-operators, -users, -auditors, -admins; the groupOfUniqueNames tern-qa. */
  groupDns: Record<string, string>;
  /** A client bound as the root DN, which the ACLs do not apply to. Unbind it. */
  admin(): Promise<Client>;
  stop(): Promise<void>;
}

const password = () => crypto.randomBytes(12).toString('base64url');

/** {SSHA} as slappasswd makes it: SHA-1 over password and salt, salt appended. */
function ssha(pw: string): string {
  const salt = crypto.randomBytes(8);
  const digest = crypto.createHash('sha1').update(pw).update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

function config(dir: string, adminPassword: string): string {
  const schema = (name: string) => `include /etc/ldap/schema/${name}.schema`;
  return [
    ...['core', 'cosine', 'inetorgperson', 'nis'].map(schema),
    `pidfile ${dir}/slapd.pid`,
    `argsfile ${dir}/slapd.args`,
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    'moduleload memberof',
    'database mdb',
    'maxsize 67108864',
    `suffix "${baseDn}"`,
    `rootdn "${adminDn}"`,
    `rootpw ${ssha(adminPassword)}`,
    `directory ${dir}/db`,
    'overlay memberof',
    // First match wins: the key container before anything broader.
    `access to dn.subtree="${keysDn}"`,
    `  by dn.exact="${managerDn}" write`,
    '  by * none',
    'access to attrs=userPassword',
    '  by self write',
    '  by anonymous auth',
    '  by * none',
    'access to *',
    '  by users read',
    '  by * none',
    '',
  ].join('\n');
}

export async function startSlapd(): Promise<Slapd> {
  const dir = tempDir('slapd');
  fs.mkdirSync(path.join(dir, 'db'));
  const adminPassword = password();
  const managerPassword = password();
  const otherPassword = password();
  const users = Object.fromEntries(people.map((p) => [p.uid, password()]));
  fs.writeFileSync(path.join(dir, 'slapd.conf'), config(dir, adminPassword), { mode: 0o600 });
  const [port] = await freePorts(1);
  const url = `ldap://127.0.0.1:${port}`;
  const logFile = path.join(dir, 'slapd.log');

  // `-d none` keeps slapd in the foreground (so it is our child to kill) and logs only its
  // start, stop and fatal errors.
  const child: ChildProcess = spawn(
    '/usr/sbin/slapd',
    ['-d', 'none', '-f', path.join(dir, 'slapd.conf'), '-h', `${url}/`],
    { stdio: ['ignore', 'ignore', fs.openSync(logFile, 'a')] },
  );
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(-1));
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const admin = async () => {
    const c = new Client({ url, timeout: 5000, connectTimeout: 5000 });
    await c.bind(adminDn, adminPassword);
    return c;
  };

  try {
    await waitUntilAnswering(url, adminDn, adminPassword, exited, logFile);
    const userDns = Object.fromEntries(people.map((p) => [p.uid, `${p.rdn},ou=people,${baseDn}`]));
    const groupDns = Object.fromEntries(
      [...groupNames, 'tern-qa'].map((g) => [g, `cn=${g},ou=groups,${baseDn}`]),
    );
    const c = await admin();
    try {
      await c.add(baseDn, { objectClass: ['dcObject', 'organization'], dc: 'tern', o: 'Tern tests' });
      for (const ou of ['people', 'groups', 'services', 'tern-keys'])
        await c.add(`ou=${ou},${baseDn}`, { objectClass: 'organizationalUnit', ou });
      for (const p of people)
        await c.add(userDns[p.uid], {
          objectClass: 'inetOrgPerson',
          uid: p.uid,
          cn: p.cn,
          sn: p.cn.split(' ')[1],
          displayName: p.cn,
          userPassword: ssha(users[p.uid]),
        });
      for (const [dn, pw] of [
        [managerDn, managerPassword],
        [otherDn, otherPassword],
      ])
        await c.add(dn, {
          objectClass: ['applicationProcess', 'simpleSecurityObject'],
          cn: dn.slice(3, dn.indexOf(',')),
          userPassword: ssha(pw),
        });
      // Groups after people: the memberof overlay writes memberOf onto members that exist.
      for (const g of groupNames)
        await c.add(groupDns[g], {
          objectClass: 'groupOfNames',
          cn: g,
          member: people.filter((p) => p.group === g).map((p) => userDns[p.uid]),
        });
      // Not a groupOfNames, so no memberOf: only a group search finds it.
      await c.add(groupDns['tern-qa'], {
        objectClass: 'groupOfUniqueNames',
        cn: 'tern-qa',
        uniqueMember: userDns.frank,
      });
    } finally {
      await c.unbind();
    }
    return {
      url,
      baseDn,
      adminDn,
      adminPassword,
      managerDn,
      managerPassword,
      otherDn,
      otherPassword,
      keysDn,
      userBase: `ou=people,${baseDn}`,
      groupBase: `ou=groups,${baseDn}`,
      users,
      userDns,
      groupDns,
      admin,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * slapd logs "slapd starting" before its listeners accept, so readiness is a successful bind.
 * Connection refusals are retried until a deadline; slapd exiting ends the wait at once.
 */
async function waitUntilAnswering(
  url: string,
  dn: string,
  pw: string,
  exited: Promise<number | null>,
  logFile: string,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  let gone: number | null | undefined;
  void exited.then((code) => {
    gone = code;
  });
  let last: unknown;
  while (Date.now() < deadline) {
    if (gone !== undefined)
      throw new Error(`slapd exited (${gone}) while starting:\n${fs.readFileSync(logFile, 'utf8')}`);
    const c = new Client({ url, timeout: 2000, connectTimeout: 2000 });
    try {
      await c.bind(dn, pw);
      return;
    } catch (err) {
      last = err;
    } finally {
      await c.unbind().catch(() => {});
    }
    await delay(20);
  }
  throw new Error(
    `slapd did not answer at ${url} within 15 s (${String(last)}):\n${fs.readFileSync(logFile, 'utf8')}`,
  );
}
