/** Image pools: one golden image in versions, many VMs with a write cache on its production version. */
import { type Static, Type } from 'typebox';
import { Name, Timestamp } from './common.ts';

export const CacheMode = Type.Union([Type.Literal('non-persistent'), Type.Literal('persistent')], {
  description:
    'non-persistent: the write cache is recreated at every start; persistent: kept until a version change',
});

export const ImagePoolVersion = Type.Object({
  number: Type.Integer(),
  parent: Type.Union([Type.Integer(), Type.Null()]),
  state: Type.Union([
    Type.Literal('maintenance'),
    Type.Literal('test'),
    Type.Literal('production'),
    Type.Literal('retired'),
  ]),
  maintenanceVm: Type.Union([Type.String(), Type.Null()]),
  createdAt: Timestamp,
});
export type ImagePoolVersion = Static<typeof ImagePoolVersion>;

export const ImagePool = Type.Object({
  name: Name,
  template: Name,
  cache: CacheMode,
  maxUnavailablePercent: Type.Integer(),
  chainLimit: Type.Integer(),
  production: Type.Integer(),
  previous: Type.Union([Type.Integer(), Type.Null()]),
  versions: Type.Array(ImagePoolVersion),
  vms: Type.Array(
    Type.Object({
      name: Type.String(),
      version: Type.Union([Type.Integer(), Type.Null()]),
      state: Type.String(),
    }),
  ),
  createdAt: Timestamp,
});
export type ImagePool = Static<typeof ImagePool>;

export const CreateImagePoolRequest = Type.Object(
  {
    name: Type.String({
      pattern: '^[a-zA-Z0-9][a-zA-Z0-9-]{0,40}$',
      description: 'VMs are named NAME-1 … NAME-N',
    }),
    template: Name,
    size: Type.Integer({ minimum: 1, maximum: 1000 }),
    cache: Type.Optional(CacheMode),
    maxUnavailablePercent: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    chainLimit: Type.Optional(Type.Integer({ minimum: 2, maximum: 64, default: 5 })),
    start: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CreateImagePoolRequest = Static<typeof CreateImagePoolRequest>;
