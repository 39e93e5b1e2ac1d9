/** Hosts as the manager inventories them. */
import { type Static, Type } from 'typebox';
import { Name, Timestamp, Uuid } from './common.ts';

export const Accelerator = Type.Union([Type.Literal('kvm'), Type.Literal('tcg'), Type.Literal('sim')]);
export type Accelerator = Static<typeof Accelerator>;

export const HostFacts = Type.Object({
  hostname: Type.String({ maxLength: 255 }),
  driver: Type.Union([Type.Literal('qemu'), Type.Literal('sim')]),
  accelerator: Accelerator,
  acceleratorReason: Type.String({ maxLength: 500 }),
  cpuModel: Type.String({ maxLength: 200 }),
  cpuVendor: Type.String({ maxLength: 64, description: 'GenuineIntel, AuthenticAMD, …' }),
  cpuFlags: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 1024 }),
  cores: Type.Integer({ minimum: 1 }),
  memoryMiB: Type.Integer({ minimum: 1 }),
  pools: Type.Array(
    Type.Object({
      name: Name,
      path: Type.String(),
      shared: Type.Boolean({ description: 'every host sees the same directory at the same path' }),
      totalBytes: Type.Integer(),
      freeBytes: Type.Integer(),
    }),
  ),
  versions: Type.Record(Type.String(), Type.String()),
});
export type HostFacts = Static<typeof HostFacts>;

export const HostState = Type.Union([
  Type.Literal('online'),
  Type.Literal('offline'),
  Type.Literal('maintenance'),
]);
export type HostState = Static<typeof HostState>;

export const Host = Type.Object({
  id: Uuid,
  name: Name,
  address: Type.String(),
  state: HostState,
  lastSeen: Type.Union([Timestamp, Type.Null()]),
  facts: Type.Union([HostFacts, Type.Null()]),
  vmCount: Type.Integer(),
});
export type Host = Static<typeof Host>;
