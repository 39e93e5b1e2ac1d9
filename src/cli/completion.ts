/**
 * Shell completion scripts made from the registry: command words and each command's flags.
 * `source <(tern completion bash)`, or in zsh `source <(tern completion zsh)`.
 */
import { TernError } from '../errors.ts';
import { children, commandFlags, type Registry, words } from './registry.ts';

/** Every prefix of a command path, the empty one included, with the words that may follow it. */
function prefixes(registry: Registry): [string, string[]][] {
  const seen = new Map<string, string[]>();
  for (const c of registry.commands) {
    const w = words(c.path);
    for (let i = 0; i < w.length; i++) {
      const p = w.slice(0, i).join(' ');
      if (!seen.has(p)) seen.set(p, children(registry, w.slice(0, i)));
    }
  }
  return [...seen];
}

/** Shell functions shared by both shells: the words after a prefix, the flags of a command. */
function tables(registry: Registry): string {
  const kids = prefixes(registry)
    .map(([p, next]) => `    '${p}') echo '${next.join(' ')}' ;;`)
    .join('\n');
  const flags = registry.commands
    .map((c) => {
      const names = [...commandFlags(c)].flatMap(([n, s]) => [`--${n}`, ...(s.short ? [`-${s.short}`] : [])]);
      return `    '${c.path}') echo '${names.join(' ')}' ;;`;
    })
    .join('\n');
  const global = [...commandFlags(undefined).keys()].map((n) => `--${n}`).join(' ');
  return `_tern_words() {
  case "$1" in
${kids}
  esac
}
_tern_flags() {
  case "$1" in
${flags}
    *) echo '${global}' ;;
  esac
}
`;
}

export function completionScript(registry: Registry, shell: string): string {
  // Words are matched against the table only, so a flag's value is never taken for a command.
  if (shell === 'bash')
    return `# tern completion for bash: source <(tern completion bash)
${tables(registry)}_tern() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" w i next
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    next=" $(_tern_words "$cmd") "
    [[ $w != -* && $next == *" $w "* ]] && cmd="\${cmd:+$cmd }$w"
  done
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_tern_flags "$cmd")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_tern_words "$cmd")" -- "$cur"))
  fi
}
complete -o default -F _tern tern
`;
  if (shell === 'zsh')
    return `#compdef tern
# tern completion for zsh: source <(tern completion zsh)
${tables(registry)}_tern() {
  local cmd="" w
  for w in \${words[2,CURRENT-1]}; do
    [[ $w != -* && " $(_tern_words "$cmd") " == *" $w "* ]] && cmd="\${cmd:+$cmd }$w"
  done
  if [[ $PREFIX == -* ]]; then
    compadd -- \${=$(_tern_flags "$cmd")}
  else
    local next="$(_tern_words "$cmd")"
    if [[ -n $next ]]; then compadd -- \${=next}; else _files; fi
  fi
}
compdef _tern tern
`;
  throw new TernError('invalid_request', `no completion for ${shell}: bash or zsh`);
}
