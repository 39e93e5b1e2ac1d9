/**
 * What a person types or pipes in that must not show or stay anywhere: passwords and
 * passphrases, typed without echo, or from the environment or stdin for scripts.
 */
import { TernError } from './errors.ts';

/** A line typed at the terminal without echo. */
async function typeHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n' || ch === '\x04') {
            stdin.off('data', onData);
            return resolve(typed);
          }
          if (ch === '\x03') {
            stdin.off('data', onData);
            return reject(new TernError('cancelled', 'cancelled'));
          }
          if (ch === '\x7f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
          else if (ch >= ' ') typed += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}

/**
 * A secret the user gives: from the environment variable `env` when it is set (scripts), else
 * typed at the terminal without echo, twice when `confirm`. `otherwise` says what to do when
 * there is neither.
 */
export async function askSecret(
  what: string,
  opts: { env?: string; confirm?: boolean; otherwise?: string } = {},
): Promise<string> {
  const fromEnv = opts.env ? process.env[opts.env] : undefined;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (!process.stdin.isTTY) {
    const ways = [opts.env ? `set ${opts.env}` : null, opts.otherwise, 'run this in a terminal'].filter(
      Boolean,
    );
    throw new TernError('invalid_request', `${what} is needed: ${ways.join(', or ')}`);
  }
  const first = await typeHidden(`${what}: `);
  if (opts.confirm && first !== '' && (await typeHidden(`${what} (again): `)) !== first)
    throw new TernError('invalid_request', `the two ${what}s differ`);
  return first;
}

/** All of stdin, as bytes. */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
