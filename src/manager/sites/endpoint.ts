/**
 * Who another site is on this cluster's endpoint (`/site/v1/…`), and its hello. The endpoint asks
 * every caller for a certificate without requiring one (agents join without); here only a
 * certificate that a trusted site's CA issued gets in (./trust.ts). The replicas a site keeps
 * here have their routes in ../replication/site-endpoint.ts.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { TernError } from '../../errors.ts';
import type { App } from '../../http/app.ts';
import { ErrorBody } from '../../wire/common.ts';
import { SiteHello } from '../../wire/site.ts';
import type { SiteStore } from './store.ts';
import { type SitePeer, siteOfCertificate } from './trust.ts';

export interface SiteEndpointOptions {
  sites: SiteStore;
  caFingerprint: string;
}

/**
 * The trusted site whose manager is calling (or, with `role`, one of its hosts), or a refusal
 * saying why.
 */
export async function callingSite(
  req: FastifyRequest,
  sites: SiteStore,
  role: 'tern-manager' | 'tern-host' = 'tern-manager',
): Promise<SitePeer> {
  const cert = (req.raw.socket as TLSSocket).getPeerCertificate?.();
  if (!cert?.raw) throw new TernError('unauthorized', 'a site certificate is required');
  const peer = siteOfCertificate(cert.raw, await sites.trusted(), new Date());
  if ('refused' in peer) throw new TernError('unauthorized', peer.refused);
  if (peer.role !== role)
    throw new TernError('forbidden', `site ${peer.site.name}'s ${peer.role} certificate may not call this`);
  return peer;
}

export function registerSiteRoutes(app: App, opts: SiteEndpointOptions): void {
  app.get('/site/v1/hello', { schema: { response: { 200: SiteHello, '4xx': ErrorBody } } }, async (req) => {
    const peer = await callingSite(req, opts.sites);
    return { fingerprint: opts.caFingerprint, knownAs: peer.site.name };
  });
}
