/** Templates: a VM spec plus a read-only base disk that clones are made from. */
import { type Static, Type } from 'typebox';
import { Name, Timestamp } from './common.ts';
import { BootSpec, DiskGiB, Firmware, Machine, VolumeRef } from './vm.ts';

export const OsKind = Type.Union([Type.Literal('linux'), Type.Literal('windows'), Type.Literal('other')], {
  description: 'the kind of OS on the disk, as its maker said',
});
export type OsKind = Static<typeof OsKind>;

export const Generalization = Type.Union([Type.Literal('guest-agent'), Type.Literal('none')], {
  description:
    'guest-agent: the VM was generalized through its guest agent before it was sealed (machine-id emptied, SSH host keys removed, cloud-init cleaned); none: sealed as it was, with --force',
});
export type Generalization = Static<typeof Generalization>;

export const Template = Type.Object({
  name: Name,
  description: Type.String({ maxLength: 500 }),
  machine: Machine,
  vcpus: Type.Integer({ minimum: 1 }),
  memoryMiB: Type.Integer({ minimum: 32 }),
  disk: VolumeRef,
  diskSizeBytes: Type.Integer(),
  boot: Type.Union([BootSpec, Type.Null()]),
  generalization: Type.Union([Generalization, Type.Null()], {
    description: 'how the VM it was sealed from was generalized; null: not sealed from a VM by Tern',
  }),
  risk: Type.Union([Type.String(), Type.Null()], {
    description: 'what its clones share because it was not generalized',
  }),
  firmware: Firmware,
  os: Type.Union([OsKind, Type.Null()]),
  createdAt: Timestamp,
});
export type Template = Static<typeof Template>;

export const CreateTemplateRequest = Type.Object(
  {
    name: Name,
    fromVm: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 63,
        description:
          'the VM (name or id) to seal: a running Linux VM is generalized through its guest agent, then shut down',
      }),
    ),
    fromImage: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 63,
        description:
          'a library disk image whose flattened copy becomes the template disk (instead of fromVm)',
      }),
    ),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    force: Type.Optional(
      Type.Boolean({
        description:
          'seal a VM that cannot be generalized (stopped, no guest agent, Windows) as it is; the risk is recorded on the template',
      }),
    ),
    // Defaults recorded on a template made from an image (a sealed VM gives its own).
    vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
    memoryMiB: Type.Optional(Type.Integer({ minimum: 32, maximum: 4 * 1024 * 1024 })),
    diskGiB: Type.Optional(DiskGiB('size of the template disk (fromImage): the image grown to it')),
    firmware: Type.Optional(Firmware),
    os: Type.Optional(OsKind),
  },
  { additionalProperties: false },
);
export type CreateTemplateRequest = Static<typeof CreateTemplateRequest>;
