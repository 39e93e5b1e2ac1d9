/**
 * The sites this cluster trusts (`sites` table), and the link to each: its CA fetched and
 * pinned by fingerprint when added, then every call to it over mutual TLS presenting this
 * manager's own certificate and accepting only a manager certificate of that site's CA.
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { TernError, unreachable } from '../../errors.ts';
import { type Identity, tlsFetch } from '../../pki/identity.ts';
import { fetchPinnedCa } from '../../pki/pinned-ca.ts';
import type { AddSiteBody, Site, SiteHello, SiteLink } from '../../wire/site.ts';
import { type Db, now } from '../db/database.ts';
import type { SiteTable } from '../db/schema.ts';
import { isUniqueViolation } from '../networks/store.ts';
import type { TrustedSite } from './trust.ts';

/** How long a link check waits for the other site. */
const HELLO_TIMEOUT_MS = 10_000;

export class SiteStore {
  readonly #db: Db;
  readonly #identity: Identity;
  #trusted: Promise<TrustedSite[]> | null = null;

  constructor(db: Db, identity: Identity) {
    this.#db = db;
    this.#identity = identity;
  }

  async list(): Promise<Site[]> {
    const rows = await this.#db.selectFrom('sites').selectAll().orderBy('name').execute();
    return rows.map(siteOf);
  }

  async row(name: string): Promise<SiteTable> {
    const row = await this.#db.selectFrom('sites').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) throw new TernError('not_found', `site ${name} does not exist`);
    return row;
  }

  async byId(id: string): Promise<SiteTable | undefined> {
    return this.#db.selectFrom('sites').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** A site with its link checked now. */
  async show(name: string): Promise<Site> {
    const row = await this.row(name);
    return { ...siteOf(row), link: await this.check(row) };
  }

  /** The sites whose certificates the cluster endpoint accepts (cached; changed by add and remove). */
  trusted(): Promise<TrustedSite[]> {
    this.#trusted ??= this.#db
      .selectFrom('sites')
      .select(['id', 'name', 'caPem'])
      .execute()
      .catch((err) => {
        this.#trusted = null;
        throw err;
      });
    return this.#trusted;
  }

  /** Trusts another cluster: its CA, fetched from `url` and checked against the fingerprint. */
  async add(body: AddSiteBody): Promise<Site> {
    const caPem = await fetchPinnedCa(
      body.url,
      body.fingerprint,
      `site ${body.name} at ${body.url}`,
      'trust it',
    );
    const row: SiteTable = {
      id: randomUUID(),
      name: body.name,
      url: body.url,
      caPem,
      fingerprint: new X509Certificate(caPem).fingerprint256,
      createdAt: now(),
    };
    try {
      await this.#db.insertInto('sites').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new TernError('conflict', `site ${body.name} exists already`);
      throw err;
    }
    this.#trusted = null;
    return { ...siteOf(row), link: await this.check(row) };
  }

  async remove(name: string): Promise<void> {
    const row = await this.row(name);
    const used = await this.#db
      .selectFrom('replications')
      .select('id')
      .where((eb) => eb.or([eb('targetSiteId', '=', row.id), eb('sourceSiteId', '=', row.id)]))
      .execute();
    if (used.length > 0)
      throw new TernError(
        'conflict',
        `site ${name} is used by ${used.length} replication(s): remove them first`,
        { replications: used.map((u) => u.id) },
      );
    await this.#db.deleteFrom('sites').where('id', '=', row.id).execute();
    this.#trusted = null;
  }

  /** A call to the site's managers over mutual TLS; the caller closes it. */
  client(site: SiteTable) {
    return tlsFetch(this.#identity, { ca: site.caPem, role: 'tern-manager' });
  }

  /** Whether the site answers and trusts this cluster back. */
  async check(site: SiteTable): Promise<SiteLink> {
    const f = this.client(site);
    try {
      const res = await f(`${site.url}/site/v1/hello`, { signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) });
      if (res.status === 401 || res.status === 403)
        return {
          state: 'one-way',
          message: `site ${site.name} does not trust this cluster yet: add it there (tern site add) with the URL and fingerprint \`tern site self\` prints here`,
        };
      if (!res.ok) return { state: 'refused', message: `site ${site.name} answered ${res.status}` };
      const hello = (await res.json()) as SiteHello;
      return {
        state: 'trusted',
        message: `trusted both ways; ${site.name} knows this cluster as ${hello.knownAs}`,
      };
    } catch (err) {
      const e = unreachable(err, (why) => `site ${site.name} at ${site.url} is unreachable: ${why}`);
      return { state: 'unreachable', message: e.message };
    } finally {
      await f.close();
    }
  }
}

function siteOf(row: SiteTable): Site {
  return { name: row.name, url: row.url, fingerprint: row.fingerprint, createdAt: row.createdAt };
}
