/**
 * The CLI's commands, each declared once: its path (`vm create`), its arguments, the flags it
 * takes, its help and its handler. Parsing (parse.ts), help (help.ts) and shell completion
 * (completion.ts) are all made from these declarations; src/cli/commands/ declares them.
 */
import type { ApiClient } from './client.ts';
import { type FlagName, type FlagSpec, type Flags, flagCatalog, globalFlags } from './flags.ts';

/** A flag a command takes: a catalog flag, or one in its own words, or its own spec. */
export type FlagUse = FlagName | [FlagName, string] | [string, FlagSpec];

export interface CommandContext {
  /** The command's words as declared (`['vm', 'create']`). */
  path: string[];
  /** The positional arguments after the command's path. */
  args: string[];
  flags: Flags;
  /** The API client of the environment or the config (made only when a command asks). */
  api(): ApiClient;
  registry: Registry;
}

export interface Command {
  /** The words that name it: `vm create`. */
  path: string;
  /** Its arguments as help shows them: `NAME...`. */
  args?: string;
  /** One line: what it does. */
  summary: string;
  /** More, shown by its own help. */
  details?: string;
  flags?: FlagUse[];
  /** Run by the group's name alone (`tern cluster` is `tern cluster show`). */
  groupDefault?: boolean;
  /** Resolves to the exit code; anything else is 0; -1 keeps the process running (`tern up`). */
  run(ctx: CommandContext): Promise<unknown>;
}

/** A first word of commands (`vm`), for help and completion. */
export interface Group {
  name: string;
  summary: string;
}

export interface Registry {
  commands: Command[];
  groups: Group[];
}

/** The flags a command takes, by name, globals included. */
export function commandFlags(command: Command | undefined): Map<string, FlagSpec> {
  const out = new Map<string, FlagSpec>();
  for (const use of command?.flags ?? []) {
    if (typeof use === 'string') out.set(use, flagCatalog[use]);
    else if (typeof use[1] === 'string')
      out.set(use[0], { ...flagCatalog[use[0] as FlagName], help: use[1] });
    else out.set(use[0], use[1]);
  }
  for (const [name, spec] of Object.entries(globalFlags)) out.set(name, spec as FlagSpec);
  return out;
}

export function words(path: string): string[] {
  return path.split(' ');
}

/** The words that may follow `prefix` (commands or groups below it), in declaration order. */
export function children(registry: Registry, prefix: string[]): string[] {
  const next = new Set<string>();
  for (const c of registry.commands) {
    const w = words(c.path);
    if (w.length > prefix.length && prefix.every((p, i) => w[i] === p)) next.add(w[prefix.length]);
  }
  return [...next];
}

export function findCommand(registry: Registry, path: string[]): Command | undefined {
  const joined = path.join(' ');
  return registry.commands.find((c) => c.path === joined);
}

/** Commands at or below `prefix`. */
export function commandsUnder(registry: Registry, prefix: string[]): Command[] {
  return registry.commands.filter((c) => {
    const w = words(c.path);
    return w.length >= prefix.length && prefix.every((p, i) => w[i] === p);
  });
}

export type GroupHandler = (
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
) => Promise<void>;

/** The run of a command whose group's handler takes the words after the group's name. */
export function viaGroup(handler: GroupHandler): Command['run'] {
  return async (ctx) => handler(ctx.api(), ctx.path[1], [...ctx.path.slice(2), ...ctx.args], ctx.flags);
}
