/**
 * The primary's side of replication to a site: the calls this cluster's manager makes to the
 * site keeping a replica (`/site/v1/replicas/…`, endpoint.ts there), over mutual TLS with this
 * cluster's manager certificate. Every answer is checked against its schema: another site is
 * trusted to be who it is, not to answer well-formed.
 */
import type { Static, TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { TernError, unreachable } from '../../errors.ts';
import { type ReplicaStatus, ReplicaStatus as ReplicaStatusSchema } from '../../wire/replication.ts';
import {
  type SitePrepareBody,
  type SitePrepareReply,
  SitePrepareReply as SitePrepareReplySchema,
  type SitePrimaryFacts,
  SitePrimaryFacts as SitePrimaryFactsSchema,
  type SitePruneBody,
  type SiteReplica,
  type SiteReplicaCreate,
  SiteReplica as SiteReplicaSchema,
} from '../../wire/site.ts';
import type { SiteTable } from '../db/schema.ts';
import type { SiteStore } from '../sites/store.ts';

/** How long a call to another site may take (a prune merges files there). */
const CALL_TIMEOUT_MS = 10 * 60_000;
/** The largest answer read from another site. */
const MAX_ANSWER_BYTES = 1024 * 1024;

export class RemoteReplicas {
  readonly #sites: SiteStore;

  constructor(sites: SiteStore) {
    this.#sites = sites;
  }

  create(site: SiteTable, body: SiteReplicaCreate): Promise<SiteReplica> {
    return this.#call(site, '/site/v1/replicas', body, SiteReplicaSchema);
  }

  prepare(site: SiteTable, id: string, body: SitePrepareBody): Promise<SitePrepareReply> {
    return this.#call(site, `/site/v1/replicas/${id}/prepare`, body, SitePrepareReplySchema);
  }

  status(site: SiteTable, id: string): Promise<ReplicaStatus> {
    return this.#call(site, `/site/v1/replicas/${id}/status`, {}, ReplicaStatusSchema);
  }

  prune(site: SiteTable, id: string, body: SitePruneBody): Promise<ReplicaStatus> {
    return this.#call(site, `/site/v1/replicas/${id}/prune`, body, ReplicaStatusSchema);
  }

  /** What the primary's site says of the replicated VM (asked by the replica's site). */
  primaryFacts(site: SiteTable, id: string): Promise<SitePrimaryFacts> {
    return this.#call(site, `/site/v1/replicas/${id}/primary`, {}, SitePrimaryFactsSchema);
  }

  async remove(site: SiteTable, id: string): Promise<void> {
    await this.#call(site, `/site/v1/replicas/${id}/remove`, {}, null);
  }

  async #call<T extends TSchema>(
    site: SiteTable,
    path: string,
    body: unknown,
    schema: T | null,
  ): Promise<Static<T>> {
    const f = this.#sites.client(site);
    const says = (why: string) => `site ${site.name} at ${site.url} is unreachable: ${why}`;
    try {
      const res = await f(`${site.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      }).catch((err: Error) => {
        throw unreachable(err, says);
      });
      const text = await res.text();
      if (text.length > MAX_ANSWER_BYTES)
        throw new TernError('protocol_error', `site ${site.name} answered ${text.length} bytes`);
      const json = parse(text);
      if (!res.ok) {
        const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
        throw new TernError(
          res.status === 404 ? 'not_found' : res.status === 409 ? 'conflict' : 'unavailable',
          `site ${site.name}: ${typeof e?.message === 'string' ? e.message.slice(0, 500) : `answered ${res.status}`}`,
        );
      }
      if (schema === null) return undefined as Static<T>;
      if (!Value.Check(schema, json))
        throw new TernError('protocol_error', `site ${site.name} answered ${path} with something malformed`);
      return json as Static<T>;
    } finally {
      await f.close();
    }
  }
}

function parse(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
