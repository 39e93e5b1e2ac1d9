/** /api/v1/sites: other Tern clusters this one trusts by their CA (replication targets). */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { route } from '../route.ts';
import { AddSiteBody, Site, SiteSelf } from '../site.ts';

const SiteRef = Type.Object({ site: Name });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const tags = ['sites'];

export const siteRoutes = {
  self: route({
    method: 'GET',
    path: '/api/v1/site',
    summary: 'This cluster as another site adds it: its cluster endpoint and CA fingerprint',
    tags,
    reply: { 200: SiteSelf, ...errors },
  }),
  list: route({
    method: 'GET',
    path: '/api/v1/sites',
    summary: 'The sites this cluster trusts',
    tags,
    reply: { 200: Type.Object({ items: Type.Array(Site) }), ...errors },
  }),
  add: route({
    method: 'POST',
    path: '/api/v1/sites',
    summary:
      'Trust another cluster: its CA is fetched from its cluster endpoint and must have the fingerprint given; the answer says whether it trusts this one back',
    tags,
    body: AddSiteBody,
    reply: { 201: Site, 502: ErrorBody, 503: ErrorBody, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/sites/:site',
    summary: 'A site, with its link checked now (trusted both ways, one way, unreachable)',
    tags,
    params: SiteRef,
    reply: { 200: Site, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/sites/:site',
    summary: 'Stop trusting a site',
    tags,
    params: SiteRef,
    reply: { 204: Type.Null(), ...errors },
  }),
};
