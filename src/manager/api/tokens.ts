/** /api/v1/tokens: API tokens; a token never holds more, nor lives longer, than what made it. */
import { TernError } from '../../errors.ts';
import { tokenRoutes as routes } from '../../wire/api/tokens.ts';
import { principalOf } from '../auth/principal.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function tokenRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'authenticated', async (req) => {
    const p = principalOf(req);
    if (req.query.all) {
      if (!p.permissions.has('identity.read'))
        throw new TernError('forbidden', 'listing every token needs the permission identity.read');
      return { items: await s.tokens.list() };
    }
    return { items: p.userId ? await s.tokens.list(p.userId) : [] };
  });

  serve(app, routes.create, 'authenticated', async (req, reply) => {
    const p = principalOf(req);
    const forOther = req.body.user !== undefined && req.body.user !== p.name;
    if (forOther && !p.permissions.has('identity.write'))
      throw new TernError('forbidden', 'making a token for another user needs the permission identity.write');
    const userId = forOther ? (await s.users.get(req.body.user as string)).id : p.userId;
    if (!userId) throw new TernError('invalid_request', 'this token has no user; name one with "user"');
    // A token never holds more than what made it: its scopes are cut to the maker's rights.
    const scopes = forOther
      ? (req.body.scopes ?? null)
      : (req.body.scopes ?? (p.tokenId ? [...p.permissions] : null));
    if (!forOther && scopes) {
      const beyond = scopes.filter((x) => !p.permissions.has(x));
      if (beyond.length)
        throw new TernError('forbidden', `you cannot give a token what you lack: ${beyond.join(', ')}`);
    }
    let expiresAt = new Date(Date.now() + (req.body.expiresInDays ?? 90) * 86_400_000).toISOString();
    // A token never outlives the token that made it.
    if (!forOther && p.via === 'token' && p.expiresAt && p.expiresAt < expiresAt) expiresAt = p.expiresAt;
    const made = await s.tokens.create({ name: req.body.name, userId, scopes, expiresAt });
    return reply.status(201).send({ ...made, expiresAt });
  });

  serve(app, routes.revoke, 'authenticated', async (req, reply) => {
    const p = principalOf(req);
    const owner = await s.tokens.owner(req.params.id);
    if (owner !== p.userId && !p.permissions.has('identity.write'))
      throw new TernError('not_found', `token ${req.params.id} does not exist`);
    await s.tokens.revoke(req.params.id);
    return reply.code(204).send(null);
  });
}
