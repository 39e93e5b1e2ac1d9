/** `tern task …`, `tern host …`, `tern template …`. */
import { TernError } from '../../errors.ts';
import { alertRoutes } from '../../wire/api/alerts.ts';
import { taskRoutes } from '../../wire/api/tasks.ts';
import { templateRoutes } from '../../wire/api/templates.ts';
import { TaskState } from '../../wire/task.ts';
import { type CreateTemplateRequest, OsKind } from '../../wire/template.ts';
import { Firmware } from '../../wire/vm.ts';
import { forEachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf, wordsOf } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, bytes, mib, printFields, printJson, printTable, printText } from '../output.ts';
import { followTask, waitForTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';
import { parseSize } from '../sizes.ts';

export async function taskCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const json = flags.output === 'json';
  switch (sub) {
    case 'list': {
      const { items } = await api.call(taskRoutes.list, {
        query: {
          limit: Number(flags.limit ?? 20),
          state: flags.state ? oneOf(flags.state, wordsOf(TaskState), '--state') : undefined,
        },
      });
      if (json) return printJson(items);
      return printTable(
        ['ID', 'KIND', 'STATE', 'PROGRESS', 'STEP', 'CREATED'],
        items.map((t) => [t.id, t.kind, t.state, `${t.progress}%`, t.step, ago(t.createdAt)]),
      );
    }
    case 'show': {
      const t = await api.call(taskRoutes.show, { params: { id: args[0] ?? '' } });
      if (json) return printJson(t);
      printFields([
        ['id', t.id],
        ['kind', t.kind],
        ['objects', t.objects.join(', ')],
        ['state', t.state],
        ['progress', `${t.progress}%`],
        ['step', t.step],
        ['error', t.error ? `${t.error.code}: ${t.error.message}` : null],
        ['result', t.result === null ? null : JSON.stringify(t.result)],
        ['created', t.createdAt],
        ['finished', t.finishedAt],
      ]);
      for (const l of t.log ?? []) printText(`  ${l.time}  ${l.line}\n`);
      return;
    }
    case 'wait': {
      const t = await api.call(taskRoutes.show, { params: { id: args[0] ?? '' } });
      const done = await waitForTask(api, t, json);
      if (json) printJson(done);
      return;
    }
    case 'cancel': {
      const t = await api.call(taskRoutes.cancel, { params: { id: args[0] ?? '' } });
      if (json) return printJson(t);
      printText(`cancellation of ${t.id} requested\n`);
      return;
    }
    default:
      throw new TernError('invalid_request', 'usage: tern task list|show|wait|cancel [ID]');
  }
}

function fromImageBody(name: string, flags: Flags): CreateTemplateRequest {
  const body: CreateTemplateRequest = { name, fromImage: flags['from-image'] };
  if (flags.description) body.description = flags.description;
  if (flags.vcpus) body.vcpus = Number(flags.vcpus);
  if (flags.memory) body.memoryMiB = Math.round(parseSize(flags.memory, 'M', '--memory'));
  if (flags.disk) body.diskGiB = parseSize(flags.disk, 'G', '--disk') / 1024;
  if (flags.firmware) body.firmware = oneOf(flags.firmware, wordsOf(Firmware), '--firmware');
  if (flags.os) body.os = oneOf(flags.os, wordsOf(OsKind), '--os');
  return body;
}

export async function templateCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.call(templateRoutes.list)).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'VCPUS', 'MEMORY', 'DISK', 'FIRMWARE', 'OS', 'GENERALIZED', 'DESCRIPTION'],
      items.map((t) => [
        t.name,
        t.vcpus,
        mib(t.memoryMiB),
        bytes(t.diskSizeBytes),
        t.firmware,
        t.os ?? '-',
        t.generalization ?? '-',
        t.description,
      ]),
    );
  }
  if (sub === 'show') {
    const t = await api.call(templateRoutes.show, { params: { name: args[0] ?? '' } });
    return printJson(t);
  }
  if (sub === 'create' && args.length === 1 && flags['from-vm']) {
    const body = {
      name: args[0],
      fromVm: flags['from-vm'],
      ...(flags.description ? { description: flags.description } : {}),
      ...(flags.force ? { force: true } : {}),
    };
    return followTask(api, flags, (await api.call(templateRoutes.create, { body })).task);
  }
  if (sub === 'create' && args.length === 1 && flags['from-image']) {
    const body = fromImageBody(args[0], flags);
    return followTask(api, flags, (await api.call(templateRoutes.create, { body })).task);
  }
  if (sub === 'delete' && args.length > 0) {
    return forEachName(api, flags, args, {
      usage: 'usage: tern template delete NAME...',
      noun: 'templates',
      done: 'deleted',
      submit: async (name) => (await api.call(templateRoutes.remove, { params: { name } })).task,
    });
  }
  throw new TernError(
    'invalid_request',
    'usage: tern template list | show NAME | create NAME --from-vm VM [--description D] [--force] | create NAME --from-image IMG [--vcpus N --memory M --disk SIZE --firmware bios|uefi --os linux|windows|other] | delete NAME',
  );
}

export async function alertCommand(
  api: ApiClient,
  sub: string | undefined,
  _args: string[],
  flags: Flags,
): Promise<void> {
  if (sub !== 'list' && sub !== undefined)
    throw new TernError('invalid_request', 'usage: tern alert list [--all]');
  const { items } = await api.call(alertRoutes.list, { query: { all: flags.all } });
  if (flags.output === 'json') return printJson(items);
  printTable(
    ['SEVERITY', 'RAISED', 'CLEARED', 'MESSAGE'],
    items.map((a) => [a.severity, ago(a.raisedAt), a.clearedAt ? ago(a.clearedAt) : '', a.message]),
  );
}

const task = viaGroup(taskCommand);
const template = viaGroup(templateCommand);

export const inventoryCommands: Command[] = [
  {
    path: 'task list',
    summary: 'recent tasks',
    flags: [
      ['limit', 'at most N tasks (default 20)'],
      ['state', 'only tasks in this state'],
    ],
    run: task,
  },
  { path: 'task show', args: 'ID', summary: 'one task, with its log', run: task },
  { path: 'task wait', args: 'ID', summary: 'wait for a task to end', run: task },
  { path: 'task cancel', args: 'ID', summary: 'ask a task to stop', run: task },
  {
    path: 'alert list',
    summary: 'alerts raised and not cleared',
    flags: [['all', 'cleared ones too']],
    groupDefault: true,
    run: viaGroup(alertCommand),
  },
  { path: 'template list', summary: 'the templates', groupDefault: true, run: template },
  { path: 'template show', args: 'NAME', summary: 'one template', run: template },
  {
    path: 'template create',
    args: 'NAME',
    summary: 'a template from a VM (--from-vm) or a library disk image (--from-image)',
    details:
      'a running Linux VM is generalized through its guest agent, then shut down;\n--force seals one that cannot be, as it is',
    flags: [
      'from-vm',
      'from-image',
      'description',
      ['force', 'seal a VM that cannot be generalized, as it is'],
      ['vcpus', 'virtual CPUs (--from-image)'],
      ['memory', 'memory (--from-image)'],
      ['disk', 'disk size (--from-image)'],
      'firmware',
      'os',
      'no-wait',
    ],
    run: template,
  },
  {
    path: 'template delete',
    args: 'NAME...',
    summary: 'delete templates',
    flags: ['no-wait'],
    run: template,
  },
];
