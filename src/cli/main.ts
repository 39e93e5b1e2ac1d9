/**
 * `tern`: the command line of Tern. Tables for people, `-o json` for scripts; waits on tasks
 * with progress unless `--no-wait`; any failure is one line on stderr and a non-zero exit
 * (2 for a usage mistake). The commands are declared in src/cli/commands/ (see README.md).
 */
import fs from 'node:fs';
import { asTernError } from '../errors.ts';
import { ApiClient } from './client.ts';
import { helpFor } from './commands/help.ts';
import { registry } from './commands/index.ts';
import { printable } from './output.ts';
import { parseCommandLine } from './parse.ts';

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/**
 * Exits once stdout and stderr are written out. Into a pipe, what the pipe cannot take at once
 * is written later; process.exit before then cuts the output (JSON at 64 KiB) with exit 0.
 */
function exitWhenFlushed(code: number): void {
  const flushed = [process.stdout, process.stderr].map(
    (stream) =>
      new Promise<void>((resolve) => {
        // A reader that went away (`tern vm list | head -1`) takes nothing more: nothing to wait for.
        stream.once('error', () => resolve());
        stream.write('', () => resolve());
      }),
  );
  void Promise.all(flushed).then(() => process.exit(code));
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(registry, argv);
  if (parsed.kind === 'version') {
    process.stdout.write(`tern ${version()}\n`);
    return 0;
  }
  if (parsed.kind === 'help') {
    // A group alone (`tern vm`) is a usage mistake: its commands go to stderr.
    (parsed.error ? process.stderr : process.stdout).write(helpFor(registry, parsed.path));
    return parsed.error ? 2 : 0;
  }
  let api: ApiClient | undefined;
  const code = await parsed.command.run({
    path: parsed.command.path.split(' '),
    args: parsed.args,
    flags: parsed.flags,
    api: () => {
      api ??= ApiClient.fromEnvironment();
      return api;
    },
    registry,
  });
  return typeof code === 'number' ? code : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) exitWhenFlushed(code);
  },
  (err) => {
    const e = asTernError(err);
    process.stderr.write(`tern: ${printable(e.message, true)}\n`);
    if (process.env.TERN_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    exitWhenFlushed(e.code === 'invalid_request' ? 2 : 1);
  },
);
