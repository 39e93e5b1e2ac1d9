/**
 * A simulated host's view of the shared pool: a symlink in the host's own directory to the
 * pool every host shares, as a real host mounts the same export at its own mount point. A
 * storage cut points the link at nothing, so everything the host does on shared storage through
 * its pools (the HA lease renewal, volume operations, statefile reads for the manager) fails
 * as on a lost mount, while the other hosts carry on. A cut link dangles rather than vanishes:
 * the agent never creates a pool's root (a missing root is storage that is gone), and nothing
 * else recreates it as an empty local directory.
 */
import fs from 'node:fs';
import path from 'node:path';

export class SharedMount {
  /** The path the host's agent and driver use as the pool's root. */
  readonly path: string;
  readonly #target: string;
  #up = true;

  constructor(mountPoint: string, target: string) {
    this.path = mountPoint;
    this.#target = target;
    fs.mkdirSync(path.dirname(mountPoint), { recursive: true });
    this.#point(target);
  }

  get reachable(): boolean {
    return this.#up;
  }

  /** Cuts (false) or restores (true) the host's path to the shared pool. */
  set(reachable: boolean): void {
    if (reachable === this.#up) return;
    this.#up = reachable;
    this.#point(reachable ? this.#target : path.join(path.dirname(this.path), '.unreachable'));
  }

  /** Replaces the link in one rename, so no operation ever sees it missing. */
  #point(to: string): void {
    const tmp = `${this.path}.${process.pid}.tmp`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(to, tmp, 'dir');
    fs.renameSync(tmp, this.path);
  }
}
