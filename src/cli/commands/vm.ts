/** `tern vm …`: the VM lifecycle (disks, CD-ROM and snapshots beside it, in vm-disk.ts, vm-cdrom.ts, vm-snapshot.ts). */
import { TernError } from '../../errors.ts';
import { vmActionRoutes } from '../../wire/api/vm-actions.ts';
import { vmRoutes } from '../../wire/api/vms.ts';
import type { QueryOf, ReplyOf } from '../../wire/route.ts';
import type { Task } from '../../wire/task.ts';
import { PowerState, type Vm } from '../../wire/vm.ts';
import { forEachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf, wordsOf } from '../flags.ts';
import { byName, expandNames } from '../names.ts';
import {
  ago,
  bytes,
  type Format,
  mib,
  printFields,
  printJson,
  printRaw,
  printTable,
  printText,
} from '../output.ts';
import { waitForTask } from '../progress.ts';
import { type Command, type FlagUse, viaGroup } from '../registry.ts';
import { vmHaCommand } from './ha.ts';
import { migrateCommand } from './migration.ts';
import { vmCdromCommands } from './vm-cdrom.ts';
import { createBody, explainCreate } from './vm-create.ts';
import { vmDiskCommands } from './vm-disk.ts';
import { vmExecCommand, vmFileCommand } from './vm-guest.ts';
import { networkNames, nicText, vmNicCommands } from './vm-nic.ts';
import { vmSnapshotCommands } from './vm-snapshot.ts';

const powerStates = wordsOf(PowerState);

/** One VM's reboot, followed to its end: says how it rebooted and which boot was seen. */
async function rebootOne(api: ApiClient, flags: Flags, name: string): Promise<void> {
  const task = await powerOne(api, 'reboot', name, flags);
  const done = await waitForTask(api, task, flags.output === 'json');
  if (flags.output === 'json') return printJson(done);
  const r = done.result as { method?: string; guestAgent?: boolean; seconds?: number } | null;
  const how = r?.method === 'reset' ? 'by a hard reset' : 'through its guest agent';
  const seen = r?.guestAgent ? 'a new boot seen and its guest agent answering' : 'a new boot seen';
  printText(`${name} rebooted ${how}: ${seen} after ${r?.seconds ?? '?'} s\n`);
}

function one(args: string[], usage: string): string {
  if (args.length !== 1) throw new TernError('invalid_request', `usage: ${usage}`);
  return args[0];
}

type PowerVerb = 'start' | 'stop' | 'pause' | 'resume' | 'shutdown' | 'reboot';

/** Submits one power operation on one VM: --force where the verb takes it, --timeout for the guest. */
async function powerOne(api: ApiClient, verb: PowerVerb, vm: string, flags: Flags): Promise<Task> {
  const params = { vm };
  const timed = { force: flags.force, ...(flags.timeout ? { timeoutSeconds: Number(flags.timeout) } : {}) };
  switch (verb) {
    case 'start':
      return (await api.call(vmActionRoutes.start, { params, body: { force: flags.force } })).task;
    case 'stop':
      return (await api.call(vmActionRoutes.stop, { params, body: { force: flags.force } })).task;
    case 'pause':
      return (await api.call(vmActionRoutes.pause, { params })).task;
    case 'resume':
      return (await api.call(vmActionRoutes.resume, { params })).task;
    case 'shutdown':
      return (await api.call(vmActionRoutes.shutdown, { params, body: timed })).task;
    case 'reboot':
      return (await api.call(vmActionRoutes.reboot, { params, body: timed })).task;
  }
}

type VmPage = ReplyOf<typeof vmRoutes.list>;
type VmQuery = Partial<QueryOf<typeof vmRoutes.list>>;

/**
 * VMs in natural name order. Without --limit or --cursor, every page is read so that the order
 * holds for the whole list (the API pages in the database's byte order: t-10 before t-2).
 */
async function listVms(api: ApiClient, query: VmQuery, whole: boolean): Promise<VmPage> {
  if (!whole) {
    const page = await api.call(vmRoutes.list, { query });
    return { ...page, items: byName(page.items) };
  }
  const items: Vm[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await api.call(vmRoutes.list, { query: { ...query, limit: 1000, cursor } });
    items.push(...page.items);
    if (!page.nextCursor) return { items: byName(items), nextCursor: null, total: items.length };
    cursor = page.nextCursor;
  }
}

function showVm(vm: Vm, format: Format, networks: Map<string, string>): void {
  if (format === 'json') {
    printJson(vm);
    return;
  }
  printFields([
    ['name', vm.name],
    ['id', vm.id],
    ['state', vm.stateReason ? `${vm.state} (${vm.stateReason})` : vm.state],
    ['host', vm.host],
    ['template', vm.template ? `${vm.template}${vm.clone ? ` (${vm.clone} clone)` : ''}` : null],
    ['image', vm.image ? `${vm.image}${vm.clone ? ` (${vm.clone} clone)` : ''}` : null],
    ['firmware', vm.firmware],
    ['cd-rom', vm.cdrom ? (vm.cdrom.image ?? (vm.cdrom.medium ? vm.cdrom.medium.path : 'empty')) : null],
    ['client machine id', vm.clientMachineId],
    ['vcpus', vm.vcpus],
    ['memory', mib(vm.memoryMiB)],
    ['disks', vm.disks.map((d) => `${d.volume.pool}:${d.volume.path} (${bytes(d.sizeBytes)})`).join(', ')],
    ['nics', vm.nics.map((n) => nicText(n, networks)).join(', ')],
    ['guest agent', guestStatus(vm)],
    [
      'last heartbeat',
      vm.guest.lastHeartbeat ? `${vm.guest.lastHeartbeat} (${ago(vm.guest.lastHeartbeat)})` : null,
    ],
    ['guest hostname', vm.guest.hostname],
    ['guest machine id', vm.guest.machineId],
    ['guest boot id', vm.guest.bootId],
    ['boots seen', vm.guest.boots > 0 ? String(vm.guest.boots) : null],
    ['guest os', vm.guest.os ? (vm.guest.os.prettyName ?? vm.guest.os.name ?? vm.guest.os.id) : null],
    ['guest kernel', vm.guest.os?.kernelRelease],
    ['ip addresses', vm.ipAddresses.join(', ')],
    ['vnc', vm.vncPort ? `127.0.0.1:${vm.vncPort} on ${vm.host}` : null],
    ['created', vm.createdAt],
  ]);
}

/** The guest agent's status, and a freeze that holds the guest's writes, which must not go unseen. */
function guestStatus(vm: Vm): string {
  return vm.guest.frozen ? `${vm.guest.agent}, filesystems frozen` : vm.guest.agent;
}

export async function vmCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const format = flags.output;
  switch (sub) {
    case 'list': {
      const query: VmQuery = {
        state: flags.state ? oneOf(flags.state, powerStates, '--state') : undefined,
        host: flags.host,
        name: flags.name,
        limit: flags.limit ? Number(flags.limit) : undefined,
        cursor: flags.cursor,
      };
      const page = await listVms(api, query, !flags.limit && !flags.cursor);
      if (format === 'json') return printJson(page);
      printTable(
        ['NAME', 'STATE', 'HOST', 'VCPUS', 'MEMORY', 'GUEST AGENT', 'IP'],
        page.items.map((v) => [
          v.name,
          v.state,
          v.host,
          v.vcpus,
          mib(v.memoryMiB),
          guestStatus(v),
          v.ipAddresses[0],
        ]),
      );
      if (page.nextCursor)
        process.stderr.write(`(${page.total} in all; next page: --cursor ${page.nextCursor})\n`);
      return;
    }
    case 'show': {
      const vm = await api.call(vmRoutes.show, { params: { vm: one(args, 'tern vm show NAME') } });
      return showVm(vm, format, format === 'json' ? new Map() : await networkNames(api, vm.nics));
    }
    case 'create': {
      const body = createBody(flags);
      const usage =
        'usage: tern vm create NAME... [--template T | --image IMG [--full]] [--iso ISO [--boot cd|disk]] [--firmware bios|uefi] [--vcpus N] [--memory 512M] [--disk 10G] [--start]';
      if (flags.explain) return explainCreate(api, flags, body);
      if (body.ip && expandNames(args).length > 1)
        throw new TernError('invalid_request', 'one static --ip cannot serve several VMs');
      return forEachName(api, flags, args, {
        usage,
        noun: 'VMs',
        done: 'created',
        submit: async (name) => (await api.call(vmRoutes.create, { body: { ...body, name } })).task,
      });
    }
    case 'start':
    case 'stop':
    case 'pause':
    case 'resume':
    case 'shutdown':
    case 'reboot': {
      const forceable = sub !== 'pause' && sub !== 'resume';
      const timed = sub === 'shutdown' || sub === 'reboot';
      if (sub === 'reboot' && expandNames(args).length === 1 && !flags['no-wait'])
        return rebootOne(api, flags, expandNames(args)[0]);
      const past = {
        start: 'started',
        stop: 'stopped',
        pause: 'paused',
        resume: 'resumed',
        shutdown: 'shut down',
        reboot: 'rebooted',
      };
      return forEachName(api, flags, args, {
        usage: `usage: tern vm ${sub} NAME...${timed ? ' [--timeout SECONDS]' : ''}${forceable ? ' [--force]' : ''}`,
        noun: 'VMs',
        done: past[sub],
        submit: (name) => powerOne(api, sub, name, flags),
      });
    }
    case 'delete': {
      const query = { keepDisks: flags['keep-disks'], force: flags.force };
      return forEachName(api, flags, args, {
        usage: 'usage: tern vm delete NAME... [--keep-disks] [--force]',
        noun: 'VMs',
        done: 'deleted',
        submit: async (name) => (await api.call(vmRoutes.remove, { params: { vm: name }, query })).task,
      });
    }
    case 'migrate':
      return migrateCommand(api, args, flags);
    case 'ha':
      return vmHaCommand(api, args, flags);
    case 'file':
      return vmFileCommand(api, args, flags);
    case 'console': {
      const name = one(args, 'tern vm console NAME [--bytes N] [--raw]');
      const r = await api.call(vmRoutes.console, {
        params: { vm: name },
        query: { bytes: Number(flags.bytes ?? 16384) },
      });
      if (format === 'json') return printJson(r);
      const text = r.text.endsWith('\n') || r.text === '' ? r.text : `${r.text}\n`;
      // The guest's escape sequences reach the terminal only when asked for.
      if (flags.raw) printRaw(text);
      else printText(text);
      return;
    }
    default:
      throw new TernError(
        'invalid_request',
        'usage: tern vm list|show|create|start|shutdown|reboot|stop|pause|resume|delete|console|disk|cdrom|snapshot|exec|file',
      );
  }
}

const run = viaGroup(vmCommand);
const power = (verb: string, summary: string, flags: FlagUse[]): Command => ({
  path: `vm ${verb}`,
  args: 'NAME...',
  summary,
  flags: [...flags, 'no-wait'],
  run,
});

export const vmCommands: Command[] = [
  {
    path: 'vm list',
    summary: 'the VMs, in name order',
    flags: [
      ['state', 'only VMs in this state'],
      ['host', 'only VMs on this host'],
      ['name', 'only VMs whose name starts so'],
      'limit',
      'cursor',
    ],
    run,
  },
  { path: 'vm show', args: 'NAME', summary: 'one VM: its state, disks, NICs and guest', run },
  {
    path: 'vm create',
    args: 'NAME...',
    summary: 'create VMs (NAME may be a range: web-{1..20})',
    details:
      'from a template (--template) or a library disk image (--image), or empty to install from an ISO',
    flags: [
      ['template', 'the template the VM is cloned from'],
      'image',
      'full',
      [
        'iso',
        {
          type: 'string',
          value: 'ISO',
          key: 'isoImage',
          help: 'a library ISO in the CD-ROM, to install from',
        },
      ],
      ['boot', 'what boots first (with --iso)'],
      'firmware',
      ['vcpus', 'virtual CPUs'],
      ['memory', 'memory, e.g. 512M'],
      ['disk', 'the first disk, e.g. 10G'],
      'extra-disk',
      'nic',
      'ip',
      'gateway',
      'dns',
      'user-data',
      ['pool', 'the storage pool of its disks'],
      ['start', 'start it once created'],
      'cpu-mode',
      ['group', 'a placement group it joins (repeatable)'],
      'explain',
      ['project', 'the project whose quota it counts against'],
      'no-wait',
    ],
    run,
  },
  power('start', 'start VMs', [['force', 'start even where placement refuses']]),
  power('stop', 'stop VMs at once (power off)', [['force', 'stop even where it is refused']]),
  power('pause', 'pause VMs', []),
  power('resume', 'resume paused VMs', []),
  power('shutdown', 'shut VMs down through the guest', [
    ['timeout', 'seconds the guest has to shut down'],
    ['force', 'power off a guest that does not shut down in time'],
  ]),
  power('reboot', 'reboot VMs through the guest', [
    ['timeout', 'seconds the guest has to reboot'],
    ['force', 'reset a guest that does not reboot'],
  ]),
  power('delete', 'delete VMs', [
    ['keep-disks', 'keep their disks'],
    ['force', 'delete running VMs too'],
  ]),
  {
    path: 'vm console',
    args: 'NAME',
    summary: "the serial console's output",
    flags: [
      ['bytes', 'the last N bytes (default 16384)'],
      ['raw', 'escape sequences too'],
    ],
    run,
  },
  {
    path: 'vm exec',
    args: 'VM -- CMD ARGS...',
    summary: 'run a command in the guest (qemu-ga); its output, and its exit code as tern’s',
    details: '124: still running at the timeout',
    flags: [
      ['timeout', 'seconds the command may run'],
      'input',
      ['max-bytes', 'at most N bytes of output'],
      'raw',
    ],
    // The guest command's exit code is tern's.
    run: ({ api, args, flags }) => vmExecCommand(api(), args, flags),
  },
  {
    path: 'vm file get',
    args: 'VM PATH',
    summary: 'read a file of the guest (qemu-ga)',
    flags: [['out', 'the file it is written to'], 'max-bytes', 'raw'],
    run,
  },
  ...vmDiskCommands,
  ...vmNicCommands,
  ...vmCdromCommands,
  ...vmSnapshotCommands,
  {
    path: 'vm migrate',
    args: 'VM',
    summary: 'move a VM to another host (live unless --quick)',
    flags: [
      'to',
      'quick',
      'target-pool',
      'downtime',
      'bandwidth',
      ['timeout', 'seconds the migration may take'],
      'explain',
      'no-wait',
    ],
    run,
  },
  {
    path: 'vm ha',
    args: 'VM',
    summary: "the VM's HA restart policy",
    flags: ['restart', 'priority', 'order', 'delay'],
    run,
  },
];
