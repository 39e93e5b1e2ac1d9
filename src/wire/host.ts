/** Hosts as the manager inventories them. */
import { type Static, Type } from 'typebox';
import { Name, Timestamp, Uuid } from './common.ts';
import { NetworkCapabilities } from './network.ts';

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
  uefi: Type.Optional(
    Type.Boolean({ description: 'the host has UEFI firmware (OVMF) for VMs; absent: an older agent, none' }),
  ),
  network: Type.Optional(NetworkCapabilities),
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
  certificate: Type.Union([Type.Object({ fingerprint: Type.String(), expiresAt: Timestamp }), Type.Null()]),
  joinedAt: Type.Union([Timestamp, Type.Null()]),
});
export type Host = Static<typeof Host>;

export const AddHostRequest = Type.Object({ name: Name }, { additionalProperties: false });

/** What `tern host add` hands the operator: everything an agent needs to join. */
export const JoinToken = Type.Object({
  host: Name,
  token: Type.String(),
  caFingerprint: Type.String({ description: 'SHA-256 of the cluster CA; the agent trusts only this CA' }),
  expiresAt: Timestamp,
  command: Type.String({ description: 'the agent command line that joins the host' }),
});
export type JoinToken = Static<typeof JoinToken>;

/** What a joining agent signs to prove it holds the key it asks a certificate for. */
export const joinProof = (token: string) => `tern-join:${token}`;

/** Agent → manager, on the cluster endpoint. */
export const JoinRequest = Type.Object(
  {
    token: Type.String({ maxLength: 200 }),
    /** The agent's public key (SPKI PEM, ECDSA P-256). */
    publicKey: Type.String({ maxLength: 4096 }),
    /** Signature (base64) over `tern-join:<token>` with the matching private key. */
    proof: Type.String({ maxLength: 1024 }),
    /** Where the manager reaches the agent: https://host:port. */
    address: Type.String({ maxLength: 300, pattern: '^https://[^/\\s]+:[0-9]{1,5}$' }),
  },
  { additionalProperties: false },
);
export type JoinRequest = Static<typeof JoinRequest>;

export const JoinResult = Type.Object({
  host: Name,
  certificate: Type.String(),
  ca: Type.String(),
});
export type JoinResult = Static<typeof JoinResult>;
