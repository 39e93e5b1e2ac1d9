/** VM wire objects: the spec a host runs, the inventory record the API shows, and API requests. */
import { type Static, Type } from 'typebox';
import { Mac, Name, Timestamp, Uuid } from './common.ts';
import { VmHaPolicy } from './ha-policy.ts';
import { IfName, Ipv4, PortRules } from './network.ts';

/** A file inside a storage pool. The path is relative and may not climb out of the pool. */
export const VolumeRef = Type.Object(
  {
    pool: Name,
    path: Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^(?!/)(?!.*(^|/)\\.\\.?(/|$))[A-Za-z0-9._/-]+$',
      description: 'relative path inside the pool, without . or .. segments',
    }),
  },
  { additionalProperties: false },
);
export type VolumeRef = Static<typeof VolumeRef>;

export const DiskSpec = Type.Object(
  {
    volume: VolumeRef,
    format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
    readonly: Type.Boolean(),
    slot: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 15,
        description:
          "the disk's place on the VM's bus, stable while disks come and go; its index when absent",
      }),
    ),
  },
  { additionalProperties: false },
);
export type DiskSpec = Static<typeof DiskSpec>;

/** Disk slots with a hot-pluggable port from boot, so disks can be added to a running VM. */
export const hotplugSlots = 8;

/**
 * A disk size people give in GiB: at least 1 MiB (a smaller one would silently become 1 MiB),
 * at most 64 TiB; whether its pool can take it is decided against the pool's free space.
 */
export const DiskGiB = (description = 'GiB') =>
  Type.Number({
    minimum: 1 / 1024,
    maximum: 65536,
    description: `${description} (from 1/1024 = 1 MiB to 65536; rounded up to a whole MiB)`,
  });

/** Disk sizes people give in GiB, as bytes: rounded up to whole MiB, which qemu-img accepts. */
export function gibToBytes(gib: number): number {
  const MiB = 1024 * 1024;
  return Math.ceil((gib * 1024 * MiB) / MiB) * MiB;
}

export function diskSlot(disk: DiskSpec, index: number): number {
  return disk.slot ?? index;
}

/** The disks without disk `index`, each of the others kept on the slot it has now. */
export function withoutDisk(spec: { disks: DiskSpec[] }, index: number): DiskSpec[] {
  return spec.disks.map((d, i) => ({ ...d, slot: diskSlot(d, i) })).filter((_, i) => i !== index);
}

export const NicSpec = Type.Object(
  {
    mac: Mac,
    network: Type.Union([
      Type.Object({ mode: Type.Literal('user') }, { additionalProperties: false }),
      Type.Object({ mode: Type.Literal('bridge'), bridge: Name }, { additionalProperties: false }),
      // A managed network: the host plugs a tap of its own into the bridge, with the NIC's
      // rules applied before the link comes up.
      Type.Object(
        {
          mode: Type.Literal('network'),
          network: Uuid,
          bridge: IfName,
          ip: Type.Union([Ipv4, Type.Null()]),
          rules: Type.Union([PortRules, Type.Null()], { description: 'none: anti-spoofing only' }),
        },
        { additionalProperties: false },
      ),
    ]),
    link: Type.Optional(
      Type.Union([Type.Literal('up'), Type.Literal('down')], { description: 'up when absent' }),
    ),
    slot: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 7,
        description:
          "the NIC's place on the VM's bus, stable while NICs come and go on the running VM; its index when absent",
      }),
    ),
  },
  { additionalProperties: false },
);
export type NicSpec = Static<typeof NicSpec>;

export function nicSlot(nic: NicSpec, index: number): number {
  return nic.slot ?? index;
}

/** The lowest slot no NIC of the VM is on: where a NIC plugged into it while it runs goes. */
export function freeNicSlot(spec: { nics: readonly NicSpec[] }): number | null {
  const used = new Set(spec.nics.map(nicSlot));
  for (let slot = 0; slot < 8; slot++) if (!used.has(slot)) return slot;
  return null;
}

/** The NICs without the one of MAC `mac`, each of the others kept on the slot it has now. */
export function withoutNic(spec: { nics: readonly NicSpec[] }, mac: string): NicSpec[] {
  return spec.nics.map((n, i) => ({ ...n, slot: nicSlot(n, i) })).filter((n) => n.mac !== mac);
}

/** A NIC as a create request or a NIC add asks for it; the manager decides the rest. */
export const NicRequest = Type.Union([
  Type.Object({ mode: Type.Literal('user') }, { additionalProperties: false }),
  Type.Object({ mode: Type.Literal('bridge'), bridge: Name }, { additionalProperties: false }),
  Type.Object(
    {
      mode: Type.Literal('network'),
      network: Name,
      ip: Type.Optional(Type.String({ ...Ipv4, description: 'its address; the next free one when absent' })),
      mac: Type.Optional(Type.String({ pattern: '^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$' })),
      group: Type.Optional(Type.String({ ...Name, description: 'a security group for its port' })),
    },
    { additionalProperties: false },
  ),
]);
export type NicRequest = Static<typeof NicRequest>;

export const BootSpec = Type.Object(
  {
    kernel: VolumeRef,
    initrd: Type.Optional(VolumeRef),
    cmdline: Type.String({ maxLength: 2048 }),
  },
  {
    additionalProperties: false,
    description: 'direct kernel boot; without it the VM boots from its first disk',
  },
);
export type BootSpec = Static<typeof BootSpec>;

export const Machine = Type.Union([Type.Literal('q35'), Type.Literal('pc')]);

export const Firmware = Type.Union([Type.Literal('bios'), Type.Literal('uefi')], {
  description: 'bios: SeaBIOS; uefi: OVMF (the host needs the ovmf package)',
});
export type Firmware = Static<typeof Firmware>;

export const BootOrder = Type.Union([Type.Literal('cd'), Type.Literal('disk')], {
  description:
    'cd: the CD-ROM first (to install from it), then the disk; disk: the disk first, then the CD-ROM',
});
export type BootOrder = Static<typeof BootOrder>;

/** A CD-ROM drive and the medium in it (an ISO volume), or none when it is empty. */
export const CdromSpec = Type.Object(
  { medium: Type.Union([VolumeRef, Type.Null()]) },
  { additionalProperties: false },
);
export type CdromSpec = Static<typeof CdromSpec>;

/** Everything a host needs to run a VM; the manager resolves templates and defaults before sending it. */
export const VmSpec = Type.Object(
  {
    id: Uuid,
    name: Name,
    machine: Machine,
    cpuModel: Type.String({
      pattern: '^[A-Za-z0-9._-]{1,64}$',
      description: '"host" (passthrough; "max" when only TCG is available) or a QEMU CPU model',
    }),
    vcpus: Type.Integer({ minimum: 1, maximum: 256 }),
    memoryMiB: Type.Integer({ minimum: 32, maximum: 4 * 1024 * 1024 }),
    disks: Type.Array(DiskSpec, { maxItems: 16 }),
    nics: Type.Array(NicSpec, { maxItems: 8 }),
    boot: Type.Optional(BootSpec),
    seed: Type.Optional(VolumeRef),
    firmware: Type.Optional(Firmware),
    /** UEFI only: the VM's own copy of the firmware's variable store (a writable pflash). */
    efiVars: Type.Optional(VolumeRef),
    cdrom: Type.Optional(CdromSpec),
    bootOrder: Type.Optional(BootOrder),
  },
  { additionalProperties: false },
);
export type VmSpec = Static<typeof VmSpec>;

export const CpuMode = Type.Union([Type.Literal('compat'), Type.Literal('host')], {
  description:
    "compat: the cluster's CPU baseline, so the VM can move between CPU generations; host: this host's exact CPU, movable only to an identical one",
});
export type CpuMode = Static<typeof CpuMode>;

export const PowerState = Type.Union(
  [
    Type.Literal('creating'),
    Type.Literal('stopped'),
    Type.Literal('running'),
    Type.Literal('paused'),
    Type.Literal('crashed'),
    Type.Literal('unreachable'),
    Type.Literal('missing'),
    Type.Literal('unknown'),
  ],
  {
    description:
      'creating: its disks are being made; stopped: not running; crashed: its QEMU ended without being asked to; unreachable: its QEMU runs but its monitor does not answer (its guest may be alive: nothing destructive happens to it without force); missing: expected on its host but the host does not know it; unknown: its host cannot be reached',
  },
);
export type PowerState = Static<typeof PowerState>;

export const GuestOs = Type.Object({
  id: Type.Optional(Type.String()),
  name: Type.Optional(Type.String()),
  prettyName: Type.Optional(Type.String()),
  version: Type.Optional(Type.String()),
  kernelRelease: Type.Optional(Type.String()),
  machine: Type.Optional(Type.String()),
});
export type GuestOs = Static<typeof GuestOs>;

export const GuestInterface = Type.Object({
  name: Type.String(),
  mac: Type.Optional(Type.String()),
  addresses: Type.Array(Type.String()),
});
export type GuestInterface = Static<typeof GuestInterface>;

export const GuestAgentStatus = Type.Union([
  Type.Literal('unknown'),
  Type.Literal('responding'),
  Type.Literal('not-responding'),
]);
export type GuestAgentStatus = Static<typeof GuestAgentStatus>;

/**
 * What the guest agent reported; untrusted, so bounded and sanitized by the host before it travels.
 * `boots` alone is the host's own count, from QEMU's events, which the guest cannot forge.
 */
export const GuestInfo = Type.Object({
  agent: GuestAgentStatus,
  boots: Type.Integer({
    minimum: 0,
    description:
      "boots of the guest its host has seen begin since its QEMU started: 1 at power-on, one more at each reset QEMU reports (a reboot of a BIOS guest begins two: its own reset, then its firmware's); 0 when it does not run",
  }),
  lastHeartbeat: Type.Union([Timestamp, Type.Null()]),
  hostname: Type.Union([Type.String(), Type.Null()]),
  machineId: Type.Union([Type.String(), Type.Null()], { description: "the guest's /etc/machine-id" }),
  bootId: Type.Union([Type.String(), Type.Null()], {
    description:
      "the guest kernel's id of its current boot (/proc/sys/kernel/random/boot_id): a new one is a new boot",
  }),
  disks: Type.Array(Type.String(), { description: 'block devices the guest sees, e.g. /dev/vdb' }),
  os: Type.Union([GuestOs, Type.Null()]),
  interfaces: Type.Array(GuestInterface),
  frozen: Type.Boolean({
    description:
      'its filesystems are frozen (writes wait): a snapshot in progress, or a freeze left behind that Tern could not thaw yet',
  }),
});
export type GuestInfo = Static<typeof GuestInfo>;

export const emptyGuestInfo = (): GuestInfo => ({
  agent: 'unknown',
  boots: 0,
  lastHeartbeat: null,
  hostname: null,
  machineId: null,
  bootId: null,
  disks: [],
  os: null,
  interfaces: [],
  frozen: false,
});

export const Vm = Type.Object({
  id: Uuid,
  name: Name,
  host: Type.Union([Name, Type.Null()]),
  state: PowerState,
  stateReason: Type.Union([Type.String(), Type.Null()]),
  template: Type.Union([Name, Type.Null()]),
  clone: Type.Union([Type.Literal('linked'), Type.Literal('full'), Type.Null()], {
    description: 'linked: an overlay on the template disk; full: a standalone copy',
  }),
  clientMachineId: Type.Union([Uuid, Type.Null()], {
    description: 'identity given to this VM at creation, for activation and inventory',
  }),
  vcpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  cpuMode: CpuMode,
  cpuModel: Type.String({ description: 'the QEMU CPU model it runs (or last ran) with' }),
  ha: VmHaPolicy,
  disks: Type.Array(
    Type.Object({
      volume: VolumeRef,
      format: Type.String(),
      readonly: Type.Boolean(),
      sizeBytes: Type.Integer(),
    }),
  ),
  nics: Type.Array(NicSpec),
  image: Type.Union([Name, Type.Null()], { description: 'the library image its first disk was made from' }),
  firmware: Firmware,
  cdrom: Type.Union(
    [
      Type.Object({
        medium: Type.Union([VolumeRef, Type.Null()]),
        image: Type.Union([Name, Type.Null()], { description: 'the library ISO in the drive' }),
      }),
      Type.Null(),
    ],
    { description: 'its CD-ROM drive and the medium in it; null: it has none' },
  ),
  guest: GuestInfo,
  ipAddresses: Type.Array(Type.String()),
  vncPort: Type.Union([Type.Integer(), Type.Null()]),
  ownerId: Type.Union([Uuid, Type.Null()], { description: 'the user who created it' }),
  project: Type.Union([Name, Type.Null()], { description: 'the project whose quota it counts against' }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Vm = Static<typeof Vm>;

export const CreateVmRequest = Type.Object(
  {
    name: Name,
    project: Type.Optional(Name),
    template: Type.Optional(Name),
    image: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 63,
        description:
          'a library disk image the first disk is made from: a linked clone on it (or a copy with full), grown to diskGiB if asked',
      }),
    ),
    iso: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 63,
        description:
          'a library ISO in a CD-ROM drive (to install from; the disk is blank without image or template)',
      }),
    ),
    firmware: Type.Optional(Firmware),
    bootOrder: Type.Optional(BootOrder),
    vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
    memoryMiB: Type.Optional(Type.Integer({ minimum: 32, maximum: 4 * 1024 * 1024 })),
    diskGiB: Type.Optional(
      DiskGiB(
        'size of the boot disk; required without a template or image, grows the template or image disk with one',
      ),
    ),
    extraDisksGiB: Type.Optional(Type.Array(DiskGiB(), { maxItems: 8 })),
    nics: Type.Optional(Type.Array(NicRequest, { maxItems: 8 })),
    start: Type.Optional(Type.Boolean({ description: 'start the VM once created' })),
    pool: Type.Optional(Name),
    cpuMode: Type.Optional(CpuMode),
    groups: Type.Optional(
      Type.Array(Name, { maxItems: 16, description: 'placement (affinity) groups to join' }),
    ),
    full: Type.Optional(
      Type.Boolean({
        description: 'a full clone (standalone copy of the template or image disk) instead of a linked one',
      }),
    ),
    ip: Type.Optional(
      Type.Object(
        {
          address: Type.String({
            pattern: '^(\\d{1,3}\\.){3}\\d{1,3}/\\d{1,2}$',
            description: 'static IPv4 address in CIDR form',
          }),
          gateway: Type.Optional(Type.String({ format: 'ipv4' })),
          dns: Type.Optional(Type.Array(Type.String({ format: 'ipv4' }), { maxItems: 4 })),
        },
        { additionalProperties: false, description: 'static address of the first NIC; DHCP without it' },
      ),
    ),
    userData: Type.Optional(Type.String({ maxLength: 256 * 1024, description: 'cloud-init user-data' })),
  },
  { additionalProperties: false },
);
export type CreateVmRequest = Static<typeof CreateVmRequest>;
