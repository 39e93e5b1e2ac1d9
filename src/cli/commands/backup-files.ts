/**
 * `tern backup files VM/ID ls [PATH]` and `tern backup files VM/ID get PATH`: files out of a
 * backup without restoring it (an ext2/3/4 filesystem of one of its disks; docs/backup.md).
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import { backupFileRoutes } from '../../wire/api/backup-files.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { bytes, printable, printJson, printTable } from '../output.ts';
import type { Command } from '../registry.ts';
import { backupRef } from './backup.ts';

const usage = 'usage: tern backup files VM/ID ls [PATH] | get PATH [--out FILE] [--disk D] [--partition N]';

async function filesCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [ref, op, path] = args;
  if (!ref || (op !== 'ls' && op !== 'get') || (op === 'get' && !path) || args.length > 3)
    throw new TernError('invalid_request', usage);
  const params = backupRef(ref);
  const query = flags.datastore ? { datastore: flags.datastore } : {};
  const body = {
    path: path ?? '/',
    ...(flags.disk ? { disk: flags.disk } : {}),
    ...(flags.partition ? { partition: Number(flags.partition) } : {}),
  };
  if (op === 'ls') {
    const listing = await api.call(backupFileRoutes.listFiles, { params, query, body });
    if (flags.output === 'json') return printJson(listing);
    printTable(
      ['MODE', 'UID', 'GID', 'SIZE', 'NAME'],
      listing.entries.map((e) => [
        `${e.type === 'directory' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'file' ? '-' : '?'}${e.mode}`,
        e.uid,
        e.gid,
        e.type === 'file' ? bytes(e.size) : '',
        printable(e.type === 'directory' ? `${e.name}/` : e.name, true),
      ]),
    );
    const where = listing.partition === null ? 'the whole disk' : `partition ${listing.partition}`;
    process.stderr.write(`${listing.path} on ${where}${listing.truncated ? ' (first 10000 entries)' : ''}\n`);
    return;
  }
  if (flags.out && fs.existsSync(flags.out))
    throw new TernError('conflict', `${flags.out} exists; give a new file`);
  const content = await api.callBytes(backupFileRoutes.readFile, { params, query, body });
  if (!flags.out) {
    process.stdout.write(flags.raw || !process.stdout.isTTY ? content : printable(content.toString('utf8')));
    return;
  }
  fs.writeFileSync(flags.out, content, { flag: 'wx' });
  if (flags.output === 'json') printJson({ backup: ref, path, file: flags.out, bytes: content.length });
  else process.stderr.write(`wrote ${path} of ${ref} to ${flags.out} (${content.length} bytes)\n`);
}

export const backupFileCommands: Command[] = [
  {
    path: 'backup files',
    args: 'VM/ID ls [PATH] | VM/ID get PATH',
    summary: 'list or read files of a backup without restoring it',
    details:
      "Reads the ext2/3/4 filesystem of a backup's disk on a host that reaches its datastore; nothing is restored or mounted. The largest partition is read unless --partition names one.",
    flags: [
      ['disk', "the backup's disk (default disk0)"],
      'partition',
      ['out', 'the file `get` writes (default: stdout)'],
      'raw',
      'datastore',
    ],
    run: ({ api, args, flags }) => filesCommand(api(), args, flags),
  },
];
