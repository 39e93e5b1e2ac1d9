/** Templates: a VM spec plus a read-only base disk that clones are made from. */
import { type Static, Type } from 'typebox';
import { Name, Timestamp } from './common.ts';
import { BootSpec, Machine, VolumeRef } from './vm.ts';

export const Template = Type.Object({
  name: Name,
  description: Type.String({ maxLength: 500 }),
  machine: Machine,
  vcpus: Type.Integer({ minimum: 1 }),
  memoryMiB: Type.Integer({ minimum: 32 }),
  disk: VolumeRef,
  diskSizeBytes: Type.Integer(),
  boot: Type.Union([BootSpec, Type.Null()]),
  createdAt: Timestamp,
});
export type Template = Static<typeof Template>;

export const CreateTemplateRequest = Type.Object(
  {
    name: Name,
    fromVm: Type.String({ minLength: 1, maxLength: 63, description: 'a stopped VM (name or id) to seal' }),
    description: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);
export type CreateTemplateRequest = Static<typeof CreateTemplateRequest>;
