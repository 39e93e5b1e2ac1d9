/**
 * VMs this host stopped on purpose, remembered (one file each under `stopped/`) until they start
 * again or are forgotten, so a manager that was away when they stopped learns they stopped and
 * did not vanish.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AgentVm } from '../../wire/agent.ts';

export class StoppedVms {
  readonly #dir: string;
  readonly #vms = new Map<string, AgentVm>();

  constructor(stateDir: string) {
    this.#dir = path.join(stateDir, 'stopped');
  }

  /** Reads what an earlier agent remembered; an unreadable record is dropped. */
  load(): void {
    fs.mkdirSync(this.#dir, { recursive: true });
    for (const file of fs.readdirSync(this.#dir)) {
      try {
        const vm = JSON.parse(fs.readFileSync(path.join(this.#dir, file), 'utf8')) as AgentVm;
        this.#vms.set(vm.id, vm);
      } catch {
        fs.rmSync(path.join(this.#dir, file), { force: true });
      }
    }
  }

  get(id: string): AgentVm | undefined {
    return this.#vms.get(id);
  }

  values(): IterableIterator<AgentVm> {
    return this.#vms.values();
  }

  remember(vm: AgentVm): void {
    this.#vms.set(vm.id, vm);
    fs.mkdirSync(this.#dir, { recursive: true });
    fs.writeFileSync(this.#file(vm.id), JSON.stringify(vm));
  }

  drop(id: string): void {
    this.#vms.delete(id);
    fs.rmSync(this.#file(id), { force: true });
  }

  #file(id: string): string {
    return path.join(this.#dir, `${id}.json`);
  }
}
