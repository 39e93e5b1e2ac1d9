/** Help made from the registry: all commands, a group's, or one command with its flags. */
import type { FlagSpec } from './flags.ts';
import { type Command, commandFlags, commandsUnder, type Registry } from './registry.ts';

const column = 34;

function line(left: string, right: string): string {
  if (!right) return `  ${left}\n`;
  return left.length <= column - 4
    ? `  ${left.padEnd(column - 2)}${right}\n`
    : `  ${left}\n${' '.repeat(column)}${right}\n`;
}

function synopsis(c: Command): string {
  return [c.path, c.args].filter(Boolean).join(' ');
}

function flagLeft(name: string, spec: FlagSpec): string {
  const long = `--${name}${spec.type === 'boolean' ? '' : ` ${spec.value ?? 'VALUE'}`}`;
  return spec.short ? `-${spec.short}, ${long}` : long;
}

function flagRight(spec: FlagSpec): string {
  return spec.default !== undefined && spec.type !== 'boolean'
    ? `${spec.help} (default ${spec.default})`
    : spec.help;
}

const globalsText = () => {
  let out = '\nflags of every command:\n';
  for (const [name, spec] of commandFlags(undefined)) out += line(flagLeft(name, spec), flagRight(spec));
  return out;
};

/** `tern help`: every command, a group after another. */
export function allHelp(registry: Registry): string {
  let out = 'tern: manage VMs on KVM/QEMU hosts\n';
  let group = '';
  for (const c of registry.commands) {
    const g = registry.groups.find((x) => x.name === c.path.split(' ')[0]);
    // Commands of no group (up, login) stand together.
    if ((g?.name ?? '') !== group || out.endsWith('hosts\n')) {
      out += `\n${g ? `${g.name}: ${g.summary}\n` : ''}`;
      group = g?.name ?? '';
    }
    out += line(`tern ${synopsis(c)}`, c.summary);
  }
  out += globalsText();
  out += '\ntern help COMMAND (or tern COMMAND --help): a group, or a command and its flags\n';
  return out;
}

/** `tern help vm`, `tern vm --help`: the group's commands. */
export function groupHelp(registry: Registry, path: string[]): string {
  const g = path.length === 1 ? registry.groups.find((x) => x.name === path[0]) : undefined;
  let out = `tern ${path.join(' ')}${g ? `: ${g.summary}` : ''}\n\n`;
  for (const c of commandsUnder(registry, path)) out += line(`tern ${synopsis(c)}`, c.summary);
  out += `\ntern ${path.join(' ')} COMMAND --help: a command and its flags\n`;
  return out;
}

/** `tern vm create --help`: the command, its arguments and flags. */
export function commandHelp(c: Command): string {
  let out = `usage: tern ${synopsis(c)}${c.flags?.length ? ' [flags]' : ''}\n\n${c.summary}\n`;
  if (c.details) out += `${c.details.replace(/^/gm, '  ').replace(/^ +$/gm, '')}\n`;
  const own = [...commandFlags(c)].filter(([name]) =>
    c.flags?.some((u) => (typeof u === 'string' ? u : u[0]) === name),
  );
  if (own.length > 0) {
    out += '\nflags:\n';
    for (const [name, spec] of own) out += line(flagLeft(name, spec), flagRight(spec));
  }
  out += globalsText();
  return out;
}
