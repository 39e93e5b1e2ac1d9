/**
 * The host's network commands (ip, nft, dnsmasq), run where the host's network is: the agent's
 * own network namespace, or, in tests, a namespace standing in for a host (`netns`). Nothing in
 * this folder runs a network command any other way, so a test can never touch the machine's
 * real interfaces or ruleset.
 */
import { execFile } from 'node:child_process';
import { TernError } from '../../errors.ts';

export interface HostShell {
  /** The network namespace the commands run in; undefined: the agent's own. */
  readonly netns: string | undefined;
  /** Runs a command, answering its standard output; fails with its standard error. */
  run(argv: readonly string[], input?: string): Promise<string>;
  /** The command line that runs `argv` on this host (for a process the agent spawns). */
  argv(argv: readonly string[]): string[];
}

export function hostShell(netns?: string): HostShell {
  const wrap = (argv: readonly string[]) => (netns ? ['ip', 'netns', 'exec', netns, ...argv] : [...argv]);
  return {
    netns,
    argv: wrap,
    run(argv, input) {
      const full = wrap(argv);
      return new Promise((resolve, reject) => {
        const child = execFile(
          full[0],
          full.slice(1),
          { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 60_000 },
          (err, stdout, stderr) => {
            if (!err) return resolve(stdout);
            const text = (stderr || err.message).trim().split('\n').slice(0, 12).join('\n');
            reject(
              new TernError('hypervisor_error', `${argv.slice(0, 3).join(' ')}: ${text}`, undefined, {
                cause: err,
              }),
            );
          },
        );
        if (input !== undefined) child.stdin?.end(input);
      });
    },
  };
}
