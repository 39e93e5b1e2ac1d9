/**
 * The command line, read against the registry: which command, its arguments, its flags. Flags
 * may stand anywhere (`tern -o json vm list`); each command accepts only its own and the globals.
 * Mistakes are usage errors (exit 2) that name the nearest command or flag.
 */
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { TernError } from '../errors.ts';
import { type FlagSpec, type Flags, flagCatalog, globalFlags } from './flags.ts';
import {
  type Command,
  children,
  commandFlags,
  commandsUnder,
  findCommand,
  type Registry,
} from './registry.ts';
import { didYouMean, nearest } from './suggest.ts';

export type Parsed =
  | { kind: 'run'; command: Command; args: string[]; flags: Flags }
  /** Help on a command or group (`[]`: all); `error`: asked for by a usage mistake (`tern vm`). */
  | { kind: 'help'; path: string[]; error?: boolean }
  | { kind: 'version' };

function parseArgsOptions(specs: Map<string, FlagSpec>): ParseArgsOptionsConfig {
  const out: ParseArgsOptionsConfig = {};
  for (const [name, spec] of specs)
    out[name] = {
      type: spec.type === 'boolean' ? 'boolean' : 'string',
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.multiple ? { multiple: true } : {}),
    };
  return out;
}

/** Every flag of every command, to find the command's words before its flags are known. */
function anyFlag(registry: Registry): Map<string, FlagSpec> {
  const all = new Map<string, FlagSpec>();
  // A name that is a switch somewhere and takes a value elsewhere (`--iso`) is read as a
  // switch here: at worst its value is taken for a word, after the command's own words.
  for (const c of registry.commands)
    for (const [name, spec] of commandFlags(c))
      if (!all.has(name) || spec.type === 'boolean') all.set(name, spec);
  return all;
}

/**
 * The command `words` name: the longest run of known words, then the group's default for a
 * group alone. Throws on an unknown word.
 */
export function resolveCommand(
  registry: Registry,
  positionals: string[],
  groupDefault = true,
): { command: Command; depth: number } | { group: string[] } {
  let depth = 0;
  while (
    depth < positionals.length &&
    children(registry, positionals.slice(0, depth)).includes(positionals[depth])
  )
    depth++;
  const prefix = positionals.slice(0, depth);
  const command = findCommand(registry, prefix);
  if (command) return { command, depth };
  const next = positionals[depth];
  if (next !== undefined) {
    const known = children(registry, prefix);
    const said = [...prefix, next].join(' ');
    const hint = didYouMean(nearest(next, known).map((w) => ['tern', ...prefix, w].join(' ')));
    throw new TernError(
      'invalid_request',
      `unknown command ${said}${hint}${hint ? '' : ` (tern help${prefix.length ? ` ${prefix.join(' ')}` : ''} lists them)`}`,
    );
  }
  const fallback = commandsUnder(registry, prefix).find(
    (c) => c.groupDefault && c.path.split(' ').length === depth + 1,
  );
  if (fallback && depth > 0 && groupDefault) return { command: fallback, depth };
  return { group: prefix };
}

/** What a flag holds when it is not given: off, an empty list, or nothing. */
function unset(spec: FlagSpec): unknown {
  if (spec.type === 'boolean') return false;
  if (spec.multiple) return [];
  return undefined;
}

function flagValues(values: Record<string, unknown>, specs: Map<string, FlagSpec>): Flags {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of [...Object.entries(flagCatalog), ...Object.entries(globalFlags)] as [
    string,
    FlagSpec,
  ][])
    out[name] = unset(spec);
  for (const [name, spec] of specs) {
    const value = values[name] ?? (spec.default !== undefined ? spec.default : unset(spec));
    if (
      spec.type === 'integer' &&
      typeof value === 'string' &&
      !/^\d+$/.test(value) &&
      !(spec.orNone && value === 'none')
    )
      throw new TernError('invalid_request', `--${name} takes a whole number`);
    out[spec.key ?? name] = value;
  }
  if (out.output !== 'table' && out.output !== 'json')
    throw new TernError('invalid_request', '--output is table or json');
  return out as unknown as Flags;
}

export function parseCommandLine(registry: Registry, argv: string[]): Parsed {
  const loose = parseArgs({
    args: argv,
    options: parseArgsOptions(anyFlag(registry)),
    allowPositionals: true,
    strict: false,
  });
  if (loose.values.version === true) return { kind: 'version' };
  const helpAsked = loose.values.help === true;
  // `tern cluster --help` is the group's help, `tern cluster` its default command.
  const found = resolveCommand(registry, loose.positionals, !helpAsked);
  if ('group' in found)
    return { kind: 'help', path: found.group, error: found.group.length > 0 && !helpAsked };
  const { command, depth } = found;
  const specs = commandFlags(command);
  const options = parseArgsOptions(specs);
  const { tokens } = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
  for (const t of tokens) {
    if (t.kind !== 'option' || options[t.name]) continue;
    const hint = didYouMean(nearest(t.name, specs.keys()).map((n) => `--${n}`));
    throw new TernError(
      'invalid_request',
      `unknown flag ${t.rawName} for tern ${command.path}${hint || ` (tern ${command.path} --help lists its flags)`}`,
    );
  }
  if (helpAsked) return { kind: 'help', path: command.path.split(' ') };
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true });
  } catch (err) {
    throw new TernError('invalid_request', (err as Error).message);
  }
  return {
    kind: 'run',
    command,
    args: parsed.positionals.slice(depth),
    flags: flagValues(parsed.values, specs),
  };
}
