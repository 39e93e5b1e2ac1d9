/** `tern project …`: projects, their quotas and usage, and who may create VMs in them. */
import { TernError } from '../../errors.ts';
import { projectRoutes } from '../../wire/api/projects.ts';
import type { Project, Quota } from '../../wire/identity.ts';
import { eachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { byName } from '../names.ts';
import { bytes, mib, printFields, printJson, printTable, printText } from '../output.ts';
import { type Command, type FlagUse, viaGroup } from '../registry.ts';
import { parseSize } from '../sizes.ts';

const usage = `usage: tern project list | show NAME | delete NAME...
       tern project create NAME [--vms N] [--vcpus N] [--memory 8G] [--disk 100G] [--description S]
       tern project quota NAME [--vms N|none] [--vcpus N|none] [--memory SIZE|none] [--disk SIZE|none]
       tern project add|remove NAME user|group MEMBER`;

/** The quota the flags ask for; `none` lifts a limit, a flag not given leaves it as it is. */
function quotaFlags(flags: Flags): Partial<Quota> {
  const q: Partial<Quota> = {};
  const count = (flag: 'vms' | 'vcpus', v: string) => {
    if (!/^\d+$/.test(v)) throw new TernError('invalid_request', `--${flag} takes a whole number or none`);
    return Number(v);
  };
  const given = (v: string | undefined): v is string => v !== undefined;
  if (given(flags.vms)) q.vms = flags.vms === 'none' ? null : count('vms', flags.vms);
  if (given(flags.vcpus)) q.vcpus = flags.vcpus === 'none' ? null : count('vcpus', flags.vcpus);
  if (given(flags.memory))
    q.memoryMiB = flags.memory === 'none' ? null : Math.round(parseSize(flags.memory, 'M', '--memory'));
  if (given(flags.disk))
    q.diskBytes = flags.disk === 'none' ? null : Math.round(parseSize(flags.disk, 'G', '--disk') * 2 ** 20);
  return q;
}

/** "6 / 8", or "6 (no limit)". */
function used(n: number, limit: number | null, show: (x: number) => string | number = String): string {
  return limit === null ? `${show(n)} (no limit)` : `${show(n)} / ${show(limit)}`;
}

const members = (p: Project) => p.members.map((m) => `${m.kind} ${m.name}`).join(', ');

function showProject(p: Project, flags: Flags): void {
  if (flags.output === 'json') {
    printJson(p);
    return;
  }
  printFields([
    ['name', p.name],
    ['description', p.description],
    ['VMs', used(p.usage.vms, p.quota.vms)],
    ['vCPUs', used(p.usage.vcpus, p.quota.vcpus)],
    ['memory', used(p.usage.memoryMiB, p.quota.memoryMiB, mib)],
    ['disk', used(p.usage.diskBytes, p.quota.diskBytes, bytes)],
    ['members', members(p)],
    ['created', p.createdAt],
  ]);
}

export async function projectCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const [name, kind, member] = args;
  if ((sub === 'list' || sub === undefined) && args.length === 0) {
    const items = byName((await api.call(projectRoutes.list)).items);
    if (flags.output === 'json') return printJson(items);
    const cell = (n: number, limit: number | null, show: (x: number) => string | number = String) =>
      `${show(n)} / ${limit === null ? '-' : show(limit)}`;
    return printTable(
      ['NAME', 'VMS', 'VCPUS', 'MEMORY', 'DISK', 'MEMBERS', 'DESCRIPTION'],
      items.map((p) => [
        p.name,
        cell(p.usage.vms, p.quota.vms),
        cell(p.usage.vcpus, p.quota.vcpus),
        cell(p.usage.memoryMiB, p.quota.memoryMiB, mib),
        cell(p.usage.diskBytes, p.quota.diskBytes, bytes),
        members(p),
        p.description,
      ]),
    );
  }
  if (sub === 'show' && args.length === 1)
    return showProject(await api.call(projectRoutes.show, { params: { project: name } }), flags);
  if (sub === 'create' && args.length === 1) {
    // A new project has no limits but those given: `none` needs no saying.
    const quota: Partial<Quota> = Object.fromEntries(
      Object.entries(quotaFlags(flags)).filter(([, v]) => v !== null),
    );
    return showProject(
      await api.call(projectRoutes.create, {
        body: {
          name,
          ...(flags.description !== undefined ? { description: flags.description } : {}),
          ...(Object.keys(quota).length > 0 ? { quota } : {}),
        },
      }),
      flags,
    );
  }
  if (sub === 'quota' && args.length === 1) {
    const quota = quotaFlags(flags);
    if (Object.keys(quota).length === 0) throw new TernError('invalid_request', usage);
    return showProject(
      await api.call(projectRoutes.update, { params: { project: name }, body: { quota } }),
      flags,
    );
  }
  if (sub === 'delete' && args.length > 0) {
    return eachName(args, 'usage: tern project delete NAME...', async (project) => {
      await api.call(projectRoutes.remove, { params: { project } });
      if (flags.output !== 'json') printText(`project ${project} deleted\n`);
    });
  }
  if ((sub === 'add' || sub === 'remove') && args.length === 3 && (kind === 'user' || kind === 'group')) {
    return showProject(
      await api.call(sub === 'add' ? projectRoutes.addMember : projectRoutes.removeMember, {
        params: { project: name, kind, member },
      }),
      flags,
    );
  }
  throw new TernError('invalid_request', usage);
}

const project = viaGroup(projectCommand);
const quota: FlagUse[] = [
  'vms',
  ['vcpus', 'the most vCPUs (none: no limit)'],
  ['memory', 'the most memory, e.g. 8G (none: no limit)'],
  ['disk', 'the most disk, e.g. 100G (none: no limit)'],
];

export const projectCommands: Command[] = [
  { path: 'project list', summary: 'projects, their usage and quotas', groupDefault: true, run: project },
  { path: 'project show', args: 'NAME', summary: 'one project', run: project },
  {
    path: 'project create',
    args: 'NAME',
    summary: 'a project',
    flags: [...quota, 'description'],
    run: project,
  },
  { path: 'project quota', args: 'NAME', summary: "change a project's quota", flags: quota, run: project },
  { path: 'project delete', args: 'NAME...', summary: 'delete projects', run: project },
  { path: 'project add', args: 'NAME user|group MEMBER', summary: 'who may create VMs in it', run: project },
  { path: 'project remove', args: 'NAME user|group MEMBER', summary: 'take a member out', run: project },
];
