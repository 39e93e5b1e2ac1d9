/** `tern vm cdrom …`: the VM's CD-ROM. */
import { TernError } from '../../errors.ts';
import { vmCdromRoutes } from '../../wire/api/vm-cdrom.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { followTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';

/** `tern vm cdrom insert VM ISO` / `tern vm cdrom eject VM`, `--force` for a locked tray. */
async function cdromCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [op, vm, image] = args;
  if (op === 'insert' && vm && image && args.length === 3) {
    const body = { image, ...(flags.force ? { force: true } : {}) };
    return followTask(api, flags, (await api.call(vmCdromRoutes.insert, { params: { vm }, body })).task);
  }
  if (op === 'eject' && vm && args.length === 2) {
    const query = { force: flags.force };
    return followTask(api, flags, (await api.call(vmCdromRoutes.eject, { params: { vm }, query })).task);
  }
  throw new TernError('invalid_request', 'usage: tern vm cdrom insert VM ISO [--force] | eject VM [--force]');
}

const run = viaGroup((api, _sub, args, flags) => cdromCommand(api, args, flags));

export const vmCdromCommands: Command[] = [
  {
    path: 'vm cdrom insert',
    args: 'VM ISO',
    summary: "put a library ISO in the VM's CD-ROM",
    flags: [['force', 'a locked tray too'], 'no-wait'],
    run,
  },
  {
    path: 'vm cdrom eject',
    args: 'VM',
    summary: "empty the VM's CD-ROM",
    flags: [['force', 'a locked tray too'], 'no-wait'],
    run,
  },
];
