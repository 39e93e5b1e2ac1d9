/**
 * The CLI's flags: every flag any command takes, with its type and what it usually means. A
 * command declares which of them it takes (`flags: ['template', 'vcpus']`, src/cli/registry.ts),
 * with its own words where the meaning differs; the parser accepts only those, plus the globals.
 */
import { TernError } from '../errors.ts';
import type { Format } from './output.ts';

export interface FlagSpec {
  /** `integer` is kept as text, as the handlers convert it; the parser checks it is whole. */
  type: 'string' | 'boolean' | 'integer';
  /** What help shows for the value: `--memory SIZE`. */
  value?: string;
  short?: string;
  /** Given several times, it gathers a list (`--nic user --nic bridge:br0`). */
  multiple?: boolean;
  /** Taken when the flag is not given, as text (shown in help). */
  default?: string;
  /** `--vcpus none`: a word beside whole numbers (a quota lifted). */
  orNone?: boolean;
  /** Where the value lands in Flags, when not under its own name (`vm create --iso` → isoImage). */
  key?: keyof Flags;
  help: string;
}

const text = (value: string, help: string): FlagSpec => ({ type: 'string', value, help });
const whole = (value: string, help: string): FlagSpec => ({ type: 'integer', value, help });
const on = (help: string): FlagSpec => ({ type: 'boolean', help });
const list = (value: string, help: string): FlagSpec => ({ type: 'string', value, multiple: true, help });

/** Flags every command takes. */
export const globalFlags = {
  output: {
    type: 'string',
    short: 'o',
    value: 'table|json',
    default: 'table',
    help: 'json: machine-readable output',
  },
  help: { type: 'boolean', short: 'h', help: 'this help' },
  version: { type: 'boolean', help: 'the version of this tern' },
} satisfies Record<string, FlagSpec>;

export const flagCatalog = {
  'no-wait': on('return once the task is accepted'),
  datastore: text('DS', 'the backup datastore'),
  schedule: text('"daily 02:00"', 'when it runs: a calendar event, in the manager time zone'),
  vm: list('VM', 'a VM (repeatable)'),
  'keep-last': whole('N', 'keep the newest N backups'),
  'keep-hourly': whole('N', 'keep the newest backup of each of the last N hours that have one'),
  'keep-daily': whole('N', 'keep the newest backup of each of the last N days that have one'),
  'keep-weekly': whole('N', 'keep the newest backup of each of the last N ISO weeks that have one'),
  'keep-monthly': whole('N', 'keep the newest backup of each of the last N months that have one'),
  'keep-yearly': whole('N', 'keep the newest backup of each of the last N years that have one'),
  'per-host': whole('N', 'at most N backups at once on one host (default 1)'),
  'per-datastore': whole('N', 'at most N backups at once into the datastore (default 4)'),
  encrypt: on('encrypt with a key the manager keeps'),
  'in-place': on("overwrite the backed-up VM's disks (it must be stopped)"),
  live: on('run the new VM at once while its disks stream in from the backup'),
  yes: on('confirm what cannot be undone'),
  'older-than-days': whole('N', 'only those not done for N days'),
  force: on('go ahead even where it is refused by default'),
  'keep-disks': on('keep the disks'),
  start: on('start it once made'),
  template: text('T', 'the template'),
  vcpus: { ...whole('N', 'virtual CPUs'), orNone: true },
  memory: text('SIZE', 'memory, e.g. 512M'),
  disk: text('SIZE', 'disk size, e.g. 10G'),
  'extra-disk': list('SIZE', 'one more empty disk (repeatable)'),
  nic: list(
    'user|bridge:BR|NETWORK[,ip=IP][,mac=MAC][,group=G]',
    'a network card: user networking, a host bridge, or a managed network (repeatable)',
  ),
  timeout: whole('SECONDS', 'how long to wait'),
  state: text('S', 'only in this state'),
  host: text('H', 'only on this host'),
  name: text('PREFIX', 'only names starting so'),
  limit: whole('N', 'at most N entries'),
  cursor: text('C', 'the page after this cursor'),
  bytes: whole('N', 'the last N bytes'),
  'data-dir': text('DIR', 'where Tern keeps its state'),
  port: { ...whole('PORT', "the manager's port"), default: '7410' },
  'agent-port': { ...whole('PORT', "the local agent's port"), default: '7411' },
  'cluster-port': { ...whole('PORT', 'the port hosts join the cluster on'), default: '7412' },
  'import-dir': list(
    'DIR',
    'a directory image import --path reads from (repeatable; default DATA-DIR/import)',
  ),
  'audit-retention-days': whole('N', 'days audit records are kept (0: for ever)'),
  full: on('a full copy rather than a linked clone'),
  all: on('all of them, not only the current ones'),
  size: text('N', 'the size'),
  persistent: on('VMs keep their changes across restarts'),
  'max-unavailable': whole('PCT', 'at most this percentage of VMs down at once'),
  pool: text('P', 'the storage pool'),
  ip: text('CIDR', 'a static address'),
  gateway: text('IP', 'the gateway (with --ip)'),
  dns: list('IP', 'a DNS server (with --ip; repeatable)'),
  'user-data': text('FILE', 'cloud-init user data'),
  'from-vm': text('VM', 'the VM it is made from'),
  'from-image': text('IMG', 'the library disk image it is made from'),
  image: text('IMG', 'the library disk image the first disk is made from'),
  firmware: text('bios|uefi', 'the firmware'),
  boot: text('cd|disk', 'what boots first'),
  os: text('linux|windows|other', 'the guest OS'),
  description: text('TEXT', 'what it is for'),
  path: text('HOSTPATH', "a file in one of the host's import dirs"),
  iso: on('the file is an ISO'),
  compress: on('store the disk as compressed qcow2'),
  format: text('raw|qcow2|vmdk|vhd|vhdx', "the file's format"),
  to: text('HOST', 'the host to move to'),
  quick: on('stop, move and start rather than live'),
  'target-pool': text('P', 'the pool the disks go to'),
  downtime: whole('MS', 'the longest pause allowed'),
  bandwidth: whole('MIB/S', 'the bandwidth limit'),
  explain: on('say where it would go, and why; change nothing'),
  'stop-unmovable': on('stop the VMs that cannot be moved'),
  'cpu-mode': text('compat|host', 'the CPU model the guest sees'),
  group: list('G', 'a group (repeatable)'),
  tolerate: whole('K', 'host failures to survive'),
  'cpu-overcommit': text('N', 'vCPUs per core'),
  'memory-overcommit': text('N', 'memory allocated per memory present'),
  'storage-overcommit': text('N', 'disk allocated per disk present'),
  strategy: text('spread|pack', 'how VMs are placed'),
  affinity: on('its VMs go to one host'),
  'anti-affinity': on('its VMs go to different hosts'),
  enable: on('turn it on'),
  disable: on('turn it off'),
  strict: on('refuse what could not be restarted'),
  'statefile-pool': text('P', 'the shared pool holding the HA state file'),
  'storage-failover': whole('SECONDS', 'how long shared storage may be silent'),
  restart: text('restart|best-effort|none', 'what HA does when its host fails'),
  priority: text('high|medium|low', 'which VMs restart first'),
  order: whole('N', 'the restart order within a priority'),
  delay: whole('SECONDS', 'the wait after it started, before the next'),
  project: text('P', 'the project'),
  url: text('URL', "the manager's URL"),
  ca: text('FILE', "the CA that signed the manager's certificate"),
  fingerprint: text('SHA256', "the other site's CA fingerprint, as `tern site self` prints it there"),
  raw: on("the guest's bytes as they are, escape sequences too"),
  user: text('NAME', 'the user'),
  role: text('R', 'the role'),
  'no-role': on('take the role away'),
  'display-name': text('S', 'the name people see'),
  'password-stdin': on('read the password from stdin'),
  'ldap-group': text('DN_OR_CN', 'the directory group whose members get it'),
  'expires-in-days': whole('N', 'days until it expires'),
  scope: list('PERM', 'a permission it is limited to (repeatable)'),
  'bind-dn': text('DN', 'the DN Tern binds as'),
  'user-base': text('DN', 'where users are searched'),
  'user-filter': text('F', 'the filter that finds a user'),
  'group-base': text('DN', 'where groups are searched'),
  'group-filter': text('F', "the filter that finds a user's groups"),
  vms: text('N|none', 'the most VMs (none: no limit)'),
  actor: text('A', 'only by this actor'),
  action: text('"POST /vms"', 'only this action'),
  object: text('O', 'the object'),
  result: text('ok|denied|failed', 'only with this result'),
  since: text('ISO', 'only since this time'),
  kind: text('K', 'the kind'),
  out: text('FILE', 'the file written'),
  partition: whole('N', 'the partition of the disk (default: the largest)'),
  'encrypted-only': on('refuse a target that is not encrypted'),
  input: text('FILE|-', 'given to the command on its stdin'),
  'max-bytes': text('N', 'at most N bytes'),
  'grow-fs': on('grow the partition and filesystem inside the guest too'),
  type: text('bridge|nat|isolated|overlay', 'the kind of network'),
  subnet: text('CIDR', 'its IPv4 subnet, e.g. 10.1.0.0/24'),
  dhcp: text('START-END', 'the addresses DHCP hands to clients Tern does not know'),
  domain: text('DOMAIN', 'the DNS domain VM names resolve in'),
  uplink: text('IF', 'the host interface enslaved to the bridge'),
  vlan: whole('ID', 'the 802.1Q tag on the uplink'),
  vni: whole('N', 'the VXLAN network identifier (default: the next free one)'),
  mtu: whole('BYTES', 'the MTU'),
  inbound: text('allow|deny', 'what happens to inbound traffic no rule allows'),
  outbound: text('allow|deny', 'what happens to outbound traffic no rule allows'),
  rule: list('"in|out PROTO [PORTS] [CIDR|group:G]"', 'an allow rule (repeatable)'),
} satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof flagCatalog;

export interface Flags {
  output: Format;
  'no-wait': boolean;
  datastore?: string;
  /** `tern backup job create`: its calendar schedule, selection, retention and bounds. */
  schedule?: string;
  vm: string[];
  /** `--project P` of `tern backup job create`, repeatable. */
  projects: string[];
  'keep-last'?: string;
  'keep-hourly'?: string;
  'keep-daily'?: string;
  'keep-weekly'?: string;
  'keep-monthly'?: string;
  'keep-yearly'?: string;
  'per-host'?: string;
  'per-datastore'?: string;
  /** `tern backup job create --prove`: each backup is proven by booting it. */
  prove: boolean;
  'no-prove': boolean;
  /** `tern vm failover` and `tern replication test-failover`: planned, the point, the test's network. */
  planned: boolean;
  'no-reverse': boolean;
  point?: string;
  network?: string;
  /** `tern vm replicate`: the interval, the older points kept, the application-consistent period. */
  every?: string;
  points?: string;
  'app-consistent-every'?: string;
  encrypt: boolean;
  'in-place': boolean;
  /** `tern backup restore --live`: the VM runs while its disks stream in. */
  live: boolean;
  yes: boolean;
  'older-than-days'?: string;
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
  strict: boolean;
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
  fingerprint?: string;
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
  /** `tern backup files`: the partition read. */
  partition?: string;
  /** `tern backup sync`: only into an encrypted datastore. */
  'encrypted-only': boolean;
  /** `tern vm exec`: a file (or - for stdin) given to the command on its stdin. */
  input?: string;
  'max-bytes'?: string;
  /** `tern vm disk resize`: grow the partition and filesystem inside the guest too. */
  'grow-fs': boolean;
  /** `tern network create`: the network's type, subnet and what it serves. */
  type?: string;
  subnet?: string;
  dhcp?: string;
  domain?: string;
  uplink?: string;
  vlan?: string;
  vni?: string;
  mtu?: string;
  /** `tern security-group`: its defaults and allow rules. */
  inbound?: string;
  outbound?: string;
  rule: string[];
  help: boolean;
  version: boolean;
}

/** The words of a union of literals the wire declares (`Firmware` → bios, uefi), for oneOf. */
export function wordsOf<T extends string>(union: { anyOf: readonly { const: T }[] }): T[] {
  return union.anyOf.map((literal) => literal.const);
}

/** Whether `value` is one of the words `allowed` (and so of their type). */
export function isOneOf<T extends string>(value: string | undefined, allowed: readonly T[]): value is T {
  return (allowed as readonly (string | undefined)[]).includes(value);
}

/** A few words as a sentence says them: "tcp, udp, icmp or any"; many: "one of a, b, …". */
export function wordList(words: readonly string[]): string {
  return words.length <= 4
    ? `${words.slice(0, -1).join(', ')}${words.length > 1 ? ' or ' : ''}${words.at(-1)}`
    : `one of ${words.join(', ')}`;
}

/** A flag whose value is one of a few words (`--firmware bios|uefi`), as the type the API takes. */
export function oneOf<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if (!isOneOf(value, allowed)) throw new TernError('invalid_request', `${flag} is ${wordList(allowed)}`);
  return value;
}

/** A flag whose value is a number, whole or not (`--cpu-overcommit 1.5`). */
export function decimal(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new TernError('invalid_request', `${flag} is a number, e.g. 1.5; got "${value}"`);
  return n;
}
