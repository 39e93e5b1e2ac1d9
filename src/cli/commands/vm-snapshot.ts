/** `tern vm snapshot …`: a VM's snapshots. */
import { TernError } from '../../errors.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printJson, printTable } from '../output.ts';
import { submitTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';

const enc = encodeURIComponent;

async function snapshotCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [op, vm, name] = args;
  const base = `/api/v1/vms/${enc(vm ?? '')}/snapshots`;
  if (op === 'list' && vm) {
    const { items } = await api.request<{ items: { name: string; createdAt: string }[] }>('GET', base);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'CREATED'],
      items.map((x) => [x.name, x.createdAt]),
    );
  }
  if (op === 'create' && vm && name) return submitTask(api, flags, 'POST', base, { name });
  if (op === 'revert' && vm && name) return submitTask(api, flags, 'POST', `${base}/${enc(name)}/revert`);
  if (op === 'delete' && vm && name) return submitTask(api, flags, 'DELETE', `${base}/${enc(name)}`);
  throw new TernError('invalid_request', 'usage: tern vm snapshot list VM | create|revert|delete VM NAME');
}

const run = viaGroup((api, _sub, args, flags) => snapshotCommand(api, args, flags));

export const vmSnapshotCommands: Command[] = [
  { path: 'vm snapshot list', args: 'VM', summary: "the VM's snapshots", run },
  { path: 'vm snapshot create', args: 'VM NAME', summary: 'take a snapshot', flags: ['no-wait'], run },
  { path: 'vm snapshot revert', args: 'VM NAME', summary: 'go back to a snapshot', flags: ['no-wait'], run },
  { path: 'vm snapshot delete', args: 'VM NAME', summary: 'delete a snapshot', flags: ['no-wait'], run },
];
