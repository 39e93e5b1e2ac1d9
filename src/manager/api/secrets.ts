/**
 * /api/v1/secrets: values kept encrypted (envelope encryption) that only their owner, or an
 * admin, may read back; /api/v1/keys: the key-encryption keys' status, rotation and backup.
 * The manager's own credentials (e.g. the directory's service password) are never revealed.
 */
import { TernError } from '../../errors.ts';
import { secretRoutes as routes, userKinds } from '../../wire/api/secrets.ts';
import type { Secret } from '../../wire/secret.ts';
import type { Principal } from '../auth/principal.ts';
import { principalOf } from '../auth/principal.ts';
import { passwordSecret } from '../identity/directory.ts';
import type { SecretMeta } from '../secrets/store.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

const toWire = (m: SecretMeta, owners: Map<string, string>): Secret => ({
  name: m.name,
  kind: m.kind,
  object: m.object,
  owner: m.ownerId ? (owners.get(m.ownerId) ?? m.ownerId) : null,
  kek: m.kekId,
  createdAt: m.createdAt,
  updatedAt: m.updatedAt,
});

/** Admins see every secret; everyone else only its own. */
const mayRead = (p: Principal, m: SecretMeta) =>
  p.permissions.has('key.admin') || (m.ownerId !== null && m.ownerId === p.userId);

export function secretRoutes(app: App, s: ApiServices): void {
  const visible = async (p: Principal, name: string) => {
    const m = await s.secrets.get(name);
    if (!m || !mayRead(p, m)) throw new TernError('not_found', `secret ${name} does not exist`);
    return m;
  };

  serve(app, routes.list, 'secret.read', async (req) => {
    const p = principalOf(req);
    const all = await s.secrets.list(p.permissions.has('key.admin') ? {} : { ownerId: p.userId ?? '-' });
    const names = await s.users.names();
    return { items: all.map((m) => toWire(m, names)) };
  });

  serve(app, routes.create, 'secret.write', async (req, reply) => {
    const p = principalOf(req);
    if (req.body.name === passwordSecret || /^vm-.*-user-data$/.test(req.body.name))
      throw new TernError(
        'invalid_request',
        `the name ${req.body.name} is the manager's own; choose another`,
      );
    const old = await s.secrets.get(req.body.name);
    if (old && !(old.ownerId !== null && old.ownerId === p.userId && userKinds.has(old.kind)))
      throw new TernError('conflict', `secret ${req.body.name} already exists`);
    const meta = await s.secrets.put(req.body.name, req.body.value, {
      kind: req.body.kind ?? 'generic',
      object: req.body.object ?? null,
      ownerId: p.userId,
    });
    return reply.status(201).send(toWire(meta, await s.users.names()));
  });

  serve(app, routes.show, 'secret.read', async (req) =>
    toWire(await visible(principalOf(req), req.params.name), await s.users.names()),
  );

  serve(app, routes.reveal, 'secret.read', async (req) => {
    const m = await visible(principalOf(req), req.params.name);
    if (!userKinds.has(m.kind))
      throw new TernError('forbidden', `secret ${m.name} is the manager’s own ${m.kind}; it is never shown`);
    return { value: await s.secrets.reveal(m.name) };
  });

  serve(app, routes.remove, 'secret.write', async (req, reply) => {
    const m = await visible(principalOf(req), req.params.name);
    if (!userKinds.has(m.kind))
      throw new TernError(
        'forbidden',
        `secret ${m.name} belongs to the manager; change the setting that uses it`,
      );
    await s.secrets.remove(m.name);
    return reply.code(204).send(null);
  });

  serve(app, routes.keys, 'key.admin', async () => s.secrets.status());

  serve(app, routes.rotateKey, 'key.admin', async () => s.secrets.rotate());

  serve(app, routes.backupKey, 'key.admin', async (req) => ({
    backup: await s.secrets.exportKeys(req.body.passphrase),
  }));
}
