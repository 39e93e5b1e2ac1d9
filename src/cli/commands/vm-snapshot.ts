/** `tern vm snapshot …`: a VM's snapshots. */
import { TernError } from '../../errors.ts';
import { vmStorageRoutes } from '../../wire/api/vm-storage.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printJson, printTable } from '../output.ts';
import { followTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';

async function snapshotCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [op, vm, name] = args;
  if (op === 'list' && vm) {
    const { items } = await api.call(vmStorageRoutes.snapshots, { params: { vm } });
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'CREATED'],
      items.map((x) => [x.name, x.createdAt]),
    );
  }
  if (op === 'create' && vm && name) {
    const { task } = await api.call(vmStorageRoutes.createSnapshot, { params: { vm }, body: { name } });
    return followTask(api, flags, task);
  }
  if (op === 'revert' && vm && name)
    return followTask(
      api,
      flags,
      (await api.call(vmStorageRoutes.revertSnapshot, { params: { vm, name } })).task,
    );
  if (op === 'delete' && vm && name)
    return followTask(
      api,
      flags,
      (await api.call(vmStorageRoutes.removeSnapshot, { params: { vm, name } })).task,
    );
  throw new TernError('invalid_request', 'usage: tern vm snapshot list VM | create|revert|delete VM NAME');
}

const run = viaGroup((api, _sub, args, flags) => snapshotCommand(api, args, flags));

export const vmSnapshotCommands: Command[] = [
  { path: 'vm snapshot list', args: 'VM', summary: "the VM's snapshots", run },
  { path: 'vm snapshot create', args: 'VM NAME', summary: 'take a snapshot', flags: ['no-wait'], run },
  { path: 'vm snapshot revert', args: 'VM NAME', summary: 'go back to a snapshot', flags: ['no-wait'], run },
  { path: 'vm snapshot delete', args: 'VM NAME', summary: 'delete a snapshot', flags: ['no-wait'], run },
];
