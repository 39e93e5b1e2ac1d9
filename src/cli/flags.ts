/** The CLI's options, parsed once for every command. */
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { TernError } from '../errors.ts';
import type { Format } from './output.ts';

const options = {
  output: { type: 'string', short: 'o', default: 'table' },
  'no-wait': { type: 'boolean', default: false },
  force: { type: 'boolean', default: false },
  'keep-disks': { type: 'boolean', default: false },
  start: { type: 'boolean', default: false },
  template: { type: 'string' },
  vcpus: { type: 'string' },
  memory: { type: 'string' },
  disk: { type: 'string' },
  'extra-disk': { type: 'string', multiple: true, default: [] as string[] },
  nic: { type: 'string', multiple: true, default: [] as string[] },
  timeout: { type: 'string' },
  state: { type: 'string' },
  host: { type: 'string' },
  name: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  bytes: { type: 'string' },
  'data-dir': { type: 'string' },
  port: { type: 'string' },
  'agent-port': { type: 'string' },
  'cluster-port': { type: 'string' },
  'import-dir': { type: 'string', multiple: true, default: [] as string[] },
  'audit-retention-days': { type: 'string' },
  full: { type: 'boolean', default: false },
  all: { type: 'boolean', default: false },
  size: { type: 'string' },
  persistent: { type: 'boolean', default: false },
  'max-unavailable': { type: 'string' },
  pool: { type: 'string' },
  ip: { type: 'string' },
  gateway: { type: 'string' },
  dns: { type: 'string', multiple: true, default: [] as string[] },
  'user-data': { type: 'string' },
  'from-vm': { type: 'string' },
  'from-image': { type: 'string' },
  image: { type: 'string' },
  firmware: { type: 'string' },
  boot: { type: 'string' },
  os: { type: 'string' },
  description: { type: 'string' },
  path: { type: 'string' },
  iso: { type: 'boolean', default: false },
  compress: { type: 'boolean', default: false },
  format: { type: 'string' },
  to: { type: 'string' },
  quick: { type: 'boolean', default: false },
  'target-pool': { type: 'string' },
  downtime: { type: 'string' },
  bandwidth: { type: 'string' },
  explain: { type: 'boolean', default: false },
  'stop-unmovable': { type: 'boolean', default: false },
  'cpu-mode': { type: 'string' },
  group: { type: 'string', multiple: true, default: [] as string[] },
  tolerate: { type: 'string' },
  'cpu-overcommit': { type: 'string' },
  'memory-overcommit': { type: 'string' },
  'storage-overcommit': { type: 'string' },
  strategy: { type: 'string' },
  affinity: { type: 'boolean', default: false },
  'anti-affinity': { type: 'boolean', default: false },
  enable: { type: 'boolean', default: false },
  disable: { type: 'boolean', default: false },
  strict: { type: 'boolean' },
  'statefile-pool': { type: 'string' },
  'storage-failover': { type: 'string' },
  restart: { type: 'string' },
  priority: { type: 'string' },
  order: { type: 'string' },
  delay: { type: 'string' },
  project: { type: 'string' },
  url: { type: 'string' },
  ca: { type: 'string' },
  raw: { type: 'boolean', default: false },
  user: { type: 'string' },
  role: { type: 'string' },
  'no-role': { type: 'boolean', default: false },
  'display-name': { type: 'string' },
  'password-stdin': { type: 'boolean', default: false },
  'ldap-group': { type: 'string' },
  'expires-in-days': { type: 'string' },
  scope: { type: 'string', multiple: true, default: [] as string[] },
  'bind-dn': { type: 'string' },
  'user-base': { type: 'string' },
  'user-filter': { type: 'string' },
  'group-base': { type: 'string' },
  'group-filter': { type: 'string' },
  vms: { type: 'string' },
  actor: { type: 'string' },
  action: { type: 'string' },
  object: { type: 'string' },
  result: { type: 'string' },
  since: { type: 'string' },
  kind: { type: 'string' },
  out: { type: 'string' },
  input: { type: 'string' },
  'max-bytes': { type: 'string' },
  'grow-fs': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  version: { type: 'boolean', default: false },
} satisfies ParseArgsOptionsConfig;

export interface Flags {
  output: Format;
  'no-wait': boolean;
  force: boolean;
  'keep-disks': boolean;
  start: boolean;
  template?: string;
  vcpus?: string;
  memory?: string;
  disk?: string;
  'extra-disk': string[];
  nic: string[];
  timeout?: string;
  state?: string;
  host?: string;
  name?: string;
  limit?: string;
  cursor?: string;
  bytes?: string;
  'data-dir'?: string;
  port?: string;
  'agent-port'?: string;
  'cluster-port'?: string;
  'import-dir': string[];
  /** `tern up`: days audit records are kept (0: for ever). */
  'audit-retention-days'?: string;
  full: boolean;
  all: boolean;
  size?: string;
  persistent: boolean;
  'max-unavailable'?: string;
  pool?: string;
  ip?: string;
  gateway?: string;
  dns: string[];
  'user-data'?: string;
  'from-vm'?: string;
  /** `tern template create --from-image`: the library disk image the template is made from. */
  'from-image'?: string;
  /** `tern vm create --image`: the library disk image the VM's first disk is made from. */
  image?: string;
  /** `tern vm create --iso IMG`: the library ISO in the VM's CD-ROM (`--iso` of `vm` commands). */
  isoImage?: string;
  firmware?: string;
  boot?: string;
  os?: string;
  description?: string;
  path?: string;
  /** `tern image import|upload --iso`: the file is an ISO. */
  iso: boolean;
  /** `tern image import|upload --compress`: store the disk as compressed qcow2. */
  compress: boolean;
  format?: string;
  to?: string;
  quick: boolean;
  'target-pool'?: string;
  downtime?: string;
  bandwidth?: string;
  explain: boolean;
  'stop-unmovable': boolean;
  'cpu-mode'?: string;
  group: string[];
  tolerate?: string;
  'cpu-overcommit'?: string;
  'memory-overcommit'?: string;
  'storage-overcommit'?: string;
  strategy?: string;
  affinity: boolean;
  'anti-affinity': boolean;
  enable: boolean;
  disable: boolean;
  strict?: boolean;
  'statefile-pool'?: string;
  'storage-failover'?: string;
  restart?: string;
  priority?: string;
  order?: string;
  delay?: string;
  project?: string;
  url?: string;
  /** A PEM file with the CA the manager's certificate must come from (tern login). */
  ca?: string;
  /** `tern vm console --raw`: the guest's bytes as they are, escape sequences included. */
  raw: boolean;
  user?: string;
  role?: string;
  'no-role': boolean;
  'display-name'?: string;
  'password-stdin': boolean;
  'ldap-group'?: string;
  'expires-in-days'?: string;
  scope: string[];
  'bind-dn'?: string;
  'user-base'?: string;
  'user-filter'?: string;
  'group-base'?: string;
  'group-filter'?: string;
  /** A project quota: a whole number, or none. */
  vms?: string;
  actor?: string;
  action?: string;
  object?: string;
  result?: string;
  since?: string;
  kind?: string;
  out?: string;
  /** `tern vm exec`: a file (or - for stdin) given to the command on its stdin. */
  input?: string;
  'max-bytes'?: string;
  /** `tern vm disk resize`: grow the partition and filesystem inside the guest too. */
  'grow-fs': boolean;
  help: boolean;
  version: boolean;
}

export function parseCommandLine(argv: string[]): { positionals: string[]; flags: Flags } {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  // `--iso` is a switch of `image import` and names a library ISO in `vm` commands.
  const group = parseArgs({ args: argv, options, allowPositionals: true, strict: false }).positionals[0];
  const isoNamed = group === 'vm';
  try {
    parsed = parseArgs({
      args: argv,
      options: isoNamed ? { ...options, iso: { type: 'string' } } : options,
      allowPositionals: true,
    });
  } catch (err) {
    throw new TernError('invalid_request', (err as Error).message);
  }
  if (isoNamed) {
    parsed.values.isoImage = parsed.values.iso;
    parsed.values.iso = false;
  }
  const v = parsed.values as unknown as Flags;
  if (v.output !== 'table' && v.output !== 'json')
    throw new TernError('invalid_request', '--output is table or json');
  for (const n of [
    'vcpus',
    'timeout',
    'limit',
    'bytes',
    'port',
    'agent-port',
    'cluster-port',
    'audit-retention-days',
    'downtime',
    'bandwidth',
    'tolerate',
    'storage-failover',
    'order',
    'delay',
    'max-unavailable',
    'expires-in-days',
  ] as const) {
    // `none` lifts a project's vCPU quota (tern project quota NAME --vcpus none).
    if (v[n] !== undefined && !/^\d+$/.test(v[n]) && !(n === 'vcpus' && v[n] === 'none'))
      throw new TernError('invalid_request', `--${n} takes a whole number`);
  }
  return { positionals: parsed.positionals, flags: v };
}
