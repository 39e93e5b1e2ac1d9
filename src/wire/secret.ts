/** Wire objects of secrets and of the keys that encrypt them (values never travel here). */
import { type Static, Type } from 'typebox';
import { Timestamp } from './common.ts';

export const SecretName = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[a-zA-Z0-9][a-zA-Z0-9._-]*$',
  description: 'letters, digits, dot, underscore and hyphen',
});

export const Secret = Type.Object({
  name: Type.String(),
  kind: Type.String(),
  object: Type.Union([Type.String(), Type.Null()]),
  owner: Type.Union([Type.String(), Type.Null()]),
  kek: Type.String({ description: 'the key-encryption key that wraps its data key' }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Secret = Static<typeof Secret>;

/** The key store and every key-encryption key, each with how many secrets it wraps. */
export const KeyStatus = Type.Object({
  store: Type.String(),
  /** Null when the store answered; otherwise why it did not. */
  storeError: Type.Union([Type.String(), Type.Null()]),
  activeKek: Type.String(),
  keys: Type.Array(
    Type.Object({
      id: Type.String(),
      createdAt: Type.Union([Type.String(), Type.Null()]),
      active: Type.Boolean(),
      inStore: Type.Boolean(),
      secrets: Type.Integer(),
    }),
  ),
});
export type KeyStatus = Static<typeof KeyStatus>;

export const Rotation = Type.Object({
  kek: Type.String(),
  rewrapped: Type.Integer(),
  failed: Type.Array(Type.String(), { description: 'secrets that could not be re-wrapped' }),
});
export type Rotation = Static<typeof Rotation>;
