/**
 * Sites: other Tern clusters this one trusts, each by its CA (docs/replication.md, Sites). An
 * operator adds a site with its cluster endpoint's URL and its CA's fingerprint, read at the
 * other site (`tern site self`); each side adds the other, and from then on their managers talk
 * over mutual TLS, each presenting a certificate of its own CA. No secret is shared.
 */
import { type Static, Type } from 'typebox';
import { Name, Timestamp } from './common.ts';
import {
  PrepareReceiveReply,
  PrepareReceiveRequest,
  PrunePointsRequest,
  ReplicationId,
} from './replication.ts';
import { VmSpec } from './vm.ts';

export const Fingerprint = Type.String({
  minLength: 64,
  maxLength: 110,
  description: 'SHA-256 of a CA certificate: 64 hex digits, colons allowed',
});

export const SiteUrl = Type.String({
  pattern: '^https://[^/\\s]+$',
  maxLength: 300,
  description: "the other cluster's cluster endpoint, https://HOST:PORT (its `tern site self`)",
});

export const SiteLink = Type.Object({
  state: Type.Union([
    Type.Literal('trusted'),
    Type.Literal('one-way'),
    Type.Literal('unreachable'),
    Type.Literal('refused'),
  ]),
  /** What the check found, and what to do about it. */
  message: Type.String(),
});
export type SiteLink = Static<typeof SiteLink>;

export const Site = Type.Object({
  name: Name,
  url: Type.String(),
  fingerprint: Type.String(),
  createdAt: Timestamp,
  /** Present when the link was checked for this answer. */
  link: Type.Optional(SiteLink),
});
export type Site = Static<typeof Site>;

export const AddSiteBody = Type.Object(
  { name: Name, url: SiteUrl, fingerprint: Fingerprint },
  { additionalProperties: false },
);
export type AddSiteBody = Static<typeof AddSiteBody>;

/** This cluster as another site must add it. */
export const SiteSelf = Type.Object({ url: Type.String(), fingerprint: Type.String() });
export type SiteSelf = Static<typeof SiteSelf>;

/** A site's answer to another's hello: its CA, and the name it knows the caller by. */
export const SiteHello = Type.Object({ fingerprint: Type.String(), knownAs: Type.String() });
export type SiteHello = Static<typeof SiteHello>;

// ---- replication to a site: what the primary's site asks the replica's site ----------------

/**
 * Keep a replica here of a VM of the calling site. The replica's spec is the primary's without
 * its NICs and read-only disks (they name the other site's networks and pools): at a failover
 * here the operator gives this site's networks.
 */
export const SiteReplicaCreate = Type.Object(
  {
    replication: ReplicationId,
    vm: Type.Object({ id: Type.String({ maxLength: 64 }), name: Name }, { additionalProperties: false }),
    spec: VmSpec,
    intervalS: Type.Integer({ minimum: 30, maximum: 86_400 }),
    points: Type.Integer({ minimum: 0, maximum: 24 }),
    /** A pool name hosts of this site have (default: the first pool of the chosen host). */
    pool: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type SiteReplicaCreate = Static<typeof SiteReplicaCreate>;

/** Where this site keeps the replica. */
export const SiteReplica = Type.Object({
  host: Type.String({ maxLength: 64 }),
  pool: Type.String({ maxLength: 64 }),
  replicaVm: Type.String({ maxLength: 64 }),
  replicaVmId: Type.String({ pattern: '^[0-9a-f-]{36}$' }),
});
export type SiteReplica = Static<typeof SiteReplica>;

export const SitePrepareBody = Type.Omit(PrepareReceiveRequest, ['pool']);
export type SitePrepareBody = Static<typeof SitePrepareBody>;

/** A prepared cycle: the ticket, and where the primary's host streams (this site's relay, its CA). */
export const SitePrepareReply = Type.Object({
  ...PrepareReceiveReply.properties,
  url: Type.String({ pattern: '^https://', maxLength: 512 }),
  ca: Type.String({ maxLength: 16384 }),
});
export type SitePrepareReply = Static<typeof SitePrepareReply>;

export const SitePruneBody = Type.Omit(PrunePointsRequest, ['pool']);
export type SitePruneBody = Static<typeof SitePruneBody>;

/**
 * What the primary's site says of a replicated VM, asked by the site keeping its replica before
 * an unplanned failover there (manager/replication/failover-guard.ts decides on it).
 */
export const SitePrimaryFacts = Type.Object({
  vmName: Type.String({ maxLength: 64 }),
  vm: Type.Union([
    Type.Literal('stopped'),
    Type.Literal('running'),
    Type.Literal('paused'),
    Type.Literal('unknown'),
  ]),
  host: Type.Union([Type.Literal('online'), Type.Literal('silent'), Type.Literal('fenced')]),
});
export type SitePrimaryFacts = Static<typeof SitePrimaryFacts>;
