/** `tern help [COMMAND...]` and `tern completion bash|zsh`, made from the registry. */
import { TernError } from '../../errors.ts';
import { completionScript } from '../completion.ts';
import { allHelp, commandHelp, groupHelp } from '../help.ts';
import { printText } from '../output.ts';
import { resolveCommand } from '../parse.ts';
import { type Command, findCommand, type Registry } from '../registry.ts';

/** The help on `path` (a command, a group, or all): unknown words are a usage error. */
export function helpFor(registry: Registry, path: string[]): string {
  if (path.length === 0) return allHelp(registry);
  const found = resolveCommand(registry, path, false);
  if ('group' in found) return groupHelp(registry, found.group);
  if (found.depth < path.length && !findCommand(registry, path))
    throw new TernError(
      'invalid_request',
      `unknown command ${path.join(' ')} (tern help ${found.command.path} tells it)`,
    );
  return commandHelp(found.command);
}

export const helpCommands: Command[] = [
  {
    path: 'help',
    args: '[COMMAND...]',
    summary: 'all commands, a group (tern help vm) or one command and its flags',
    run: async ({ registry, args }) => printText(helpFor(registry, args)),
  },
  {
    path: 'completion',
    args: 'bash|zsh',
    summary: 'a shell completion script: source <(tern completion bash)',
    run: async ({ registry, args }) => {
      if (args.length !== 1) throw new TernError('invalid_request', 'usage: tern completion bash|zsh');
      process.stdout.write(completionScript(registry, args[0]));
    },
  },
];
