/**
 * /api/v1/secrets: values kept encrypted (envelope encryption) that only their owner, or an
 * admin, may read back; /api/v1/keys: the key-encryption keys' status, rotation and backup.
 * The manager's own credentials (e.g. the directory's service password) are never revealed.
 */
import { Type } from 'typebox';
import { ErrorBody } from '../common.ts';
import { route } from '../route.ts';

/** What a person may store (the others are the manager's own: user-data, directory passwords). */
export const userKinds = new Set(['generic', 'password', 'ssh-key', 'token', 'certificate']);

import { KeyStatus, Rotation, Secret, SecretName } from '../secret.ts';

const SecretRef = Type.Object({ name: SecretName });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export const secretRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/secrets',
    summary: 'Secrets (never their values)',
    tags: ['secrets'],
    reply: { 200: Type.Object({ items: Type.Array(Secret) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/secrets',
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
    reply: { 201: Secret, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/secrets/:name',
    summary: 'Show a secret (not its value)',
    tags: ['secrets'],
    params: SecretRef,
    reply: { 200: Secret, ...errors },
  }),
  reveal: route({
    method: 'POST',
    path: '/api/v1/secrets/:name/reveal',
    summary: 'A secret’s value (its owner, or an admin; recorded in the audit log)',
    tags: ['secrets'],
    params: SecretRef,
    reply: { 200: Type.Object({ value: Type.String() }), ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/secrets/:name',
    summary: 'Remove a secret',
    tags: ['secrets'],
    params: SecretRef,
    reply: { 204: Type.Null(), ...errors },
  }),
  keys: route({
    method: 'GET',
    path: '/api/v1/keys',
    summary: 'The key store and its key-encryption keys',
    tags: ['keys'],
    reply: { 200: KeyStatus, ...errors },
  }),
  rotateKey: route({
    method: 'POST',
    path: '/api/v1/keys/rotate',
    summary: 'Make a new key-encryption key and re-wrap every data key with it (no downtime)',
    tags: ['keys'],
    reply: { 200: Rotation, ...errors },
  }),
  backupKey: route({
    method: 'POST',
    path: '/api/v1/keys/backup',
    summary: 'Every key-encryption key, sealed with a passphrase (restore: tern-manager keys restore)',
    tags: ['keys'],
    body: Type.Object(
      { passphrase: Type.String({ minLength: 1, maxLength: 1024 }) },
      { additionalProperties: false },
    ),
    reply: { 200: Type.Object({ backup: Type.String() }), ...errors },
  }),
};
