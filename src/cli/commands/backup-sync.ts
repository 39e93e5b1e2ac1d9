/** `tern backup sync SOURCE TARGET`: an offsite copy of a datastore's backups (docs/backup.md). */
import { TernError } from '../../errors.ts';
import { backupSyncRoutes } from '../../wire/api/backup-sync.ts';
import { followTask } from '../progress.ts';
import type { Command } from '../registry.ts';

export const backupSyncCommands: Command[] = [
  {
    path: 'backup sync',
    args: 'SOURCE TARGET',
    summary: 'copy the backups of a datastore that another lacks there (offsite)',
    details:
      "A host that reaches both directories copies each missing backup chunk by chunk, storing it under the target's own key; a second sync copies only what is new. --encrypted-only refuses a target that is not encrypted.",
    flags: [['vm', "only this VM's backups"], 'encrypted-only', 'no-wait'],
    run: async ({ api, args, flags }) => {
      const [source, target] = args;
      if (!source || !target || args.length !== 2)
        throw new TernError(
          'invalid_request',
          'usage: tern backup sync SOURCE TARGET [--vm VM] [--encrypted-only]',
        );
      if (flags.vm.length > 1) throw new TernError('invalid_request', 'tern backup sync takes one --vm');
      const body = {
        target,
        ...(flags.vm[0] ? { vm: flags.vm[0] } : {}),
        ...(flags['encrypted-only'] ? { encryptedOnly: true } : {}),
      };
      const client = api();
      const { task } = await client.call(backupSyncRoutes.sync, { params: { datastore: source }, body });
      return followTask(client, flags, task);
    },
  },
];
