/**
 * Where an import by path may read: only the directories the operator made import sources
 * (`--import-dir`). The agent runs as a user that can read much more (the manager's database in
 * all-in-one mode, keys, /etc): a path outside them is refused with one message, whether or not
 * anything is there, so a refusal tells nothing about the host's files.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';

export class ImportSources {
  /** As configured (absolute) and as their real paths, for paths given through either. */
  readonly #dirs: readonly string[];

  constructor(dirs: readonly string[]) {
    this.#dirs = dirs.map((d) => path.resolve(d));
  }

  get dirs(): readonly string[] {
    return this.#dirs;
  }

  #realDirs(): string[] {
    return this.#dirs.flatMap((d) => {
      try {
        return [fs.realpathSync(d)];
      } catch {
        return [];
      }
    });
  }

  /** The one refusal for anything outside the sources (or not there, seen from outside). */
  refusal(given: string): TernError {
    const where = this.#dirs.length > 0 ? this.#dirs.join(', ') : 'none configured';
    return new TernError(
      'forbidden',
      `${given} is not in an import directory of this host (${where}): put the file there, or upload it`,
    );
  }

  /** Whether `real` (a real path) lies below an import directory. */
  contains(real: string): boolean {
    return this.#realDirs().some((d) => real.startsWith(d.endsWith(path.sep) ? d : d + path.sep));
  }

  /**
   * The real path of an offered file inside the sources. `..` and symbolic links are resolved
   * before the check; a file that is missing is reported only when its place is inside.
   */
  resolve(given: string): string {
    const lexical = path.resolve(given);
    if (!inside(lexical, this.#dirs) && !inside(lexical, this.#realDirs())) throw this.refusal(given);
    try {
      const real = fs.realpathSync(lexical);
      if (!this.contains(real)) throw this.refusal(given);
      return real;
    } catch (err) {
      if (err instanceof TernError) throw err;
    }
    // Not there: say so only if the nearest thing that is there is inside, reached through no
    // link (a dangling link may name anything on the host).
    for (let p = lexical; ; p = path.dirname(p)) {
      let real: string | null = null;
      try {
        real = fs.realpathSync(p);
      } catch {
        if (exists(p)) throw this.refusal(given);
      }
      if (real !== null) {
        if (!this.contains(real) && !this.#realDirs().includes(real)) throw this.refusal(given);
        throw new TernError('not_found', `${given} does not exist`);
      }
      if (p === path.dirname(p)) throw this.refusal(given);
    }
  }
}

function inside(file: string, dirs: readonly string[]): boolean {
  return dirs.some((d) => file.startsWith(d.endsWith(path.sep) ? d : d + path.sep));
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
