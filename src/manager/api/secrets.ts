/**
 * /api/v1/secrets: values kept encrypted (envelope encryption) that only their owner, or an
 * admin, may read back; /api/v1/keys: the key-encryption keys' status, rotation and backup.
 * The manager's own credentials (e.g. the directory's service password) are never revealed.
 */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody } from '../../wire/common.ts';
import { KeyStatus, Rotation, Secret, SecretName } from '../../wire/secret.ts';
import type { Principal } from '../auth/principal.ts';
import { principalOf } from '../auth/principal.ts';
import { passwordSecret } from '../identity/directory.ts';
import type { SecretMeta } from '../secrets/store.ts';
import type { ApiServices, App } from './context.ts';

const SecretRef = Type.Object({ name: SecretName });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const userKinds = new Set(['generic', 'password', 'ssh-key', 'token', 'certificate']);

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

  app.get(
    '/api/v1/secrets',
    {
      config: { access: 'secret.read' },
      schema: {
        summary: 'Secrets (never their values)',
        tags: ['secrets'],
        response: { 200: Type.Object({ items: Type.Array(Secret) }), ...errors },
      },
    },
    async (req) => {
      const p = principalOf(req);
      const all = await s.secrets.list(p.permissions.has('key.admin') ? {} : { ownerId: p.userId ?? '-' });
      const names = await s.users.names();
      return { items: all.map((m) => toWire(m, names)) };
    },
  );

  app.post(
    '/api/v1/secrets',
    {
      config: { access: 'secret.write' },
      schema: {
        summary: 'Store a secret, encrypted; replaces the value of one of one’s own',
        tags: ['secrets'],
        body: Type.Object(
          {
            name: SecretName,
            value: Type.String({ minLength: 1, maxLength: 64 * 1024 }),
            kind: Type.Optional(Type.String({ enum: [...userKinds], default: 'generic' })),
            object: Type.Optional(
              Type.String({ maxLength: 200, description: 'what it belongs to, e.g. vm:web-1' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: Secret, ...errors },
      },
    },
    async (req, reply) => {
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
    },
  );

  app.get(
    '/api/v1/secrets/:name',
    {
      config: { access: 'secret.read' },
      schema: {
        summary: 'Show a secret (not its value)',
        tags: ['secrets'],
        params: SecretRef,
        response: { 200: Secret, ...errors },
      },
    },
    async (req) => toWire(await visible(principalOf(req), req.params.name), await s.users.names()),
  );

  app.post(
    '/api/v1/secrets/:name/reveal',
    {
      config: { access: 'secret.read' },
      schema: {
        summary: 'A secret’s value (its owner, or an admin; recorded in the audit log)',
        tags: ['secrets'],
        params: SecretRef,
        response: { 200: Type.Object({ value: Type.String() }), ...errors },
      },
    },
    async (req) => {
      const m = await visible(principalOf(req), req.params.name);
      if (!userKinds.has(m.kind))
        throw new TernError(
          'forbidden',
          `secret ${m.name} is the manager’s own ${m.kind}; it is never shown`,
        );
      return { value: await s.secrets.reveal(m.name) };
    },
  );

  app.delete(
    '/api/v1/secrets/:name',
    {
      config: { access: 'secret.write' },
      schema: {
        summary: 'Remove a secret',
        tags: ['secrets'],
        params: SecretRef,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      const m = await visible(principalOf(req), req.params.name);
      if (!userKinds.has(m.kind))
        throw new TernError(
          'forbidden',
          `secret ${m.name} belongs to the manager; change the setting that uses it`,
        );
      await s.secrets.remove(m.name);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/keys',
    {
      config: { access: 'key.admin' },
      schema: {
        summary: 'The key store and its key-encryption keys',
        tags: ['keys'],
        response: { 200: KeyStatus, ...errors },
      },
    },
    async () => s.secrets.status(),
  );

  app.post(
    '/api/v1/keys/rotate',
    {
      config: { access: 'key.admin' },
      schema: {
        summary: 'Make a new key-encryption key and re-wrap every data key with it (no downtime)',
        tags: ['keys'],
        response: { 200: Rotation, ...errors },
      },
    },
    async () => s.secrets.rotate(),
  );

  app.post(
    '/api/v1/keys/backup',
    {
      config: { access: 'key.admin' },
      schema: {
        summary: 'Every key-encryption key, sealed with a passphrase (restore: tern-manager keys restore)',
        tags: ['keys'],
        body: Type.Object(
          { passphrase: Type.String({ minLength: 1, maxLength: 1024 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ backup: Type.String() }), ...errors },
      },
    },
    async (req) => ({ backup: await s.secrets.exportKeys(req.body.passphrase) }),
  );
}
