/**
 * `tern secret …`: values kept encrypted by the manager; `tern keys …`: the keys that encrypt
 * them. A secret's value never comes from the command line (it would stay in the shell's
 * history and in the process list): it is piped in or typed.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import { askSecret, readStdin } from '../../prompt.ts';
import { secretRoutes, userKinds } from '../../wire/api/secrets.ts';
import type { Secret } from '../../wire/secret.ts';
import { eachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, printFields, printJson, printRaw, printTable, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

const secretUsage = `usage: tern secret list | show NAME | reveal NAME | delete NAME...
       tern secret set NAME [--kind generic|password|ssh-key|token|certificate] [--object O]
                       (the value is piped in on stdin, or typed; never an argument)`;

/** The value of `tern secret set`: all of stdin as it is, or typed at the terminal. */
async function secretValue(): Promise<string> {
  if (process.stdin.isTTY) return askSecret('value');
  const raw = await readStdin();
  const text = raw.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(raw))
    throw new TernError(
      'invalid_request',
      'a secret’s value is text (UTF-8); encode binary data first (base64)',
    );
  if (text === '') throw new TernError('invalid_request', 'no value on stdin');
  return text;
}

export async function secretCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const name = args[0];
  const show = (s: Secret) => {
    if (flags.output === 'json') return printJson(s);
    printFields([
      ['name', s.name],
      ['kind', s.kind],
      ['object', s.object],
      ['owner', s.owner],
      ['key', s.kek],
      ['created', s.createdAt],
      ['updated', s.updatedAt],
    ]);
  };
  if ((sub === 'list' || sub === undefined) && args.length === 0) {
    const items = byName((await api.call(secretRoutes.list)).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'KIND', 'OBJECT', 'OWNER', 'KEY', 'UPDATED'],
      items.map((s) => [s.name, s.kind, s.object, s.owner, s.kek, ago(s.updatedAt)]),
    );
  }
  if (sub === 'show' && args.length === 1)
    return show(await api.call(secretRoutes.show, { params: { name } }));
  if (sub === 'set' && args.length === 1) {
    // A wrong --kind is said before the value is asked for.
    const kind = flags.kind ? oneOf(flags.kind, [...userKinds], '--kind') : undefined;
    const value = await secretValue();
    return show(
      await api.call(secretRoutes.create, {
        body: {
          name,
          value,
          ...(kind ? { kind } : {}),
          ...(flags.object ? { object: flags.object } : {}),
        },
      }),
    );
  }
  if (sub === 'reveal' && args.length === 1) {
    const { value } = await api.call(secretRoutes.reveal, { params: { name } });
    if (flags.output === 'json') return printJson({ value });
    // Exactly the bytes stored, so `tern secret reveal X > file` gives back what was set; on a
    // terminal, another user's escape sequences stay inert.
    if (process.stdout.isTTY) printText(value.endsWith('\n') ? value : `${value}\n`);
    else printRaw(value);
    return;
  }
  if (sub === 'delete' && args.length > 0) {
    return eachName(args, secretUsage, async (secret) => {
      await api.call(secretRoutes.remove, { params: { name: secret } });
      if (flags.output !== 'json') printText(`secret ${secret} deleted\n`);
    });
  }
  throw new TernError('invalid_request', secretUsage);
}

const keysUsage = `usage: tern keys status | rotate | backup --out FILE [--force]
       (the backup's passphrase is typed twice, or taken from TERN_KEY_PASSPHRASE)
       restore is offline, on the manager's machine (e.g. when it cannot start for a lost key):
         bin/tern-manager keys restore --from FILE [--key-file F | --key-store CONFIG.json]`;

export async function keysCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if ((sub === 'status' || sub === undefined) && args.length === 0) {
    const s = await api.call(secretRoutes.keys);
    if (flags.output === 'json') return printJson(s);
    printFields([
      ['store', s.storeError ? `${s.store} (error: ${s.storeError})` : s.store],
      ['active key', s.activeKek],
    ]);
    printText('\n');
    return printTable(
      ['KEY', 'ACTIVE', 'IN STORE', 'SECRETS', 'CREATED'],
      s.keys.map((k) => [
        k.id,
        k.active ? 'yes' : 'no',
        k.inStore ? 'yes' : 'MISSING',
        k.secrets,
        k.createdAt,
      ]),
    );
  }
  if (sub === 'rotate' && args.length === 0) {
    const r = await api.call(secretRoutes.rotateKey);
    if (flags.output === 'json') printJson(r);
    else
      printText(
        `new key ${r.kek} is active; ${r.rewrapped} data key(s) re-wrapped with it\nmake a new backup: tern keys backup --out FILE\n`,
      );
    if (r.failed.length > 0)
      throw new TernError(
        'storage_error',
        `${r.failed.length} secret(s) could not be re-wrapped and still use an older key: ${r.failed.join(', ')}`,
      );
    return;
  }
  if (sub === 'backup' && args.length === 0 && flags.out) {
    const file = flags.out;
    if (fs.existsSync(file) && !flags.force)
      throw new TernError('conflict', `${file} exists; give --force to replace it`);
    const passphrase = await askSecret('backup passphrase', { env: 'TERN_KEY_PASSPHRASE', confirm: true });
    if (!passphrase) throw new TernError('invalid_request', 'the passphrase is empty');
    const { backup } = await api.call(secretRoutes.backupKey, { body: { passphrase } });
    try {
      fs.writeFileSync(file, backup.endsWith('\n') ? backup : `${backup}\n`, { mode: 0o600 });
      fs.chmodSync(file, 0o600);
    } catch (err) {
      throw new TernError('storage_error', `cannot write ${file}: ${(err as Error).message}`);
    }
    if (flags.output === 'json') return printJson({ file });
    printText(
      `keys backed up to ${file} (mode 0600), sealed with the passphrase; keep the two apart.\n` +
        `restore (offline, on the manager's machine): bin/tern-manager keys restore --from ${file} [--key-file F | --key-store CONFIG.json]\n`,
    );
    return;
  }
  throw new TernError('invalid_request', keysUsage);
}

const secret = viaGroup(secretCommand);
const keys = viaGroup(keysCommand);

export const secretCommands: Command[] = [
  { path: 'secret list', summary: 'the secrets (never their values)', groupDefault: true, run: secret },
  { path: 'secret show', args: 'NAME', summary: 'one secret (not its value)', run: secret },
  {
    path: 'secret set',
    args: 'NAME',
    summary: 'set a secret: the value from stdin, or typed; never an argument',
    flags: [
      ['kind', 'what kind of secret'],
      ['object', 'the object it belongs to (vm:NAME)'],
    ],
    run: secret,
  },
  { path: 'secret reveal', args: 'NAME', summary: "a secret's value", run: secret },
  { path: 'secret delete', args: 'NAME...', summary: 'delete secrets', run: secret },
  { path: 'keys status', summary: 'the key that encrypts secrets', groupDefault: true, run: keys },
  { path: 'keys rotate', summary: 'a new key; secrets re-encrypted', run: keys },
  {
    path: 'keys backup',
    summary: 'back the key up (passphrase typed twice, or TERN_KEY_PASSPHRASE)',
    details: 'restore is offline: bin/tern-manager keys restore --from FILE [--key-file F]',
    flags: [
      ['out', 'the backup file'],
      ['force', 'overwrite the file'],
    ],
    run: keys,
  },
];
