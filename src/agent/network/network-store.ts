/**
 * What the host keeps of its networks, so it can realize them again at start: the last spec
 * of each network and its plugged ports, under `<stateDir>/networks/<id>/` (dnsmasq's files
 * live there too). A file that does not read as its schema is set aside, never guessed at.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { Mac, Uuid } from '../../wire/common.ts';
import { HostNetworkSpec, IfName, Ipv4, PortRules } from '../../wire/network.ts';

export const PortRecord = Type.Object({
  tap: IfName,
  network: Uuid,
  vm: Uuid,
  mac: Mac,
  ip: Type.Union([Ipv4, Type.Null()]),
  rules: Type.Union([PortRules, Type.Null()]),
});
export type PortRecord = Static<typeof PortRecord>;

const LinkGroup = Type.Integer({ minimum: 1, maximum: 0xfffffffe });

function writeAtomic(file: string, value: unknown): void {
  fs.writeFileSync(`${file}.new`, JSON.stringify(value), { mode: 0o600 });
  fs.renameSync(`${file}.new`, file);
}

export class NetworkStore {
  readonly #root: string;

  constructor(stateDir: string) {
    this.#root = path.join(stateDir, 'networks');
  }

  dir(id: string): string {
    return path.join(this.#root, id);
  }

  saveSpec(spec: HostNetworkSpec): void {
    fs.mkdirSync(path.join(this.dir(spec.id), 'ports'), { recursive: true, mode: 0o700 });
    writeAtomic(path.join(this.dir(spec.id), 'spec.json'), spec);
  }

  /** The network's link group on this host (its taps carry it), kept so it never changes. */
  saveGroup(id: string, group: number): void {
    writeAtomic(path.join(this.dir(id), 'group.json'), group);
  }

  drop(id: string): void {
    fs.rmSync(this.dir(id), { recursive: true, force: true });
  }

  savePort(port: PortRecord): void {
    writeAtomic(path.join(this.dir(port.network), 'ports', `${port.tap}.json`), port);
  }

  dropPort(network: string, tap: string): void {
    fs.rmSync(path.join(this.dir(network), 'ports', `${tap}.json`), { force: true });
  }

  /** Every kept network with its ports; `bad` hears of each file set aside. */
  load(bad: (file: string) => void): { spec: HostNetworkSpec; ports: PortRecord[]; group: number | null }[] {
    let ids: string[] = [];
    try {
      ids = fs.readdirSync(this.#root);
    } catch {
      return [];
    }
    const out: { spec: HostNetworkSpec; ports: PortRecord[]; group: number | null }[] = [];
    for (const id of ids) {
      const spec = readChecked(path.join(this.dir(id), 'spec.json'), HostNetworkSpec, bad);
      if (!spec || spec.id !== id) continue;
      const portsDir = path.join(this.dir(id), 'ports');
      const ports: PortRecord[] = [];
      for (const f of fs.existsSync(portsDir) ? fs.readdirSync(portsDir) : []) {
        if (!f.endsWith('.json')) continue;
        const port = readChecked(path.join(portsDir, f), PortRecord, bad);
        if (port && port.network === id) ports.push(port);
      }
      const groupFile = path.join(this.dir(id), 'group.json');
      const group = fs.existsSync(groupFile) ? readChecked(groupFile, LinkGroup, bad) : null;
      out.push({ spec, ports, group });
    }
    return out;
  }
}

function readChecked<T extends TSchema>(
  file: string,
  schema: T,
  bad: (file: string) => void,
): Static<T> | null {
  try {
    const value: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (Value.Check(schema, value)) return value as Static<T>;
  } catch {
    // Unreadable: set aside below.
  }
  bad(file);
  try {
    fs.renameSync(file, `${file}.bad`);
  } catch {
    // Gone already.
  }
  return null;
}
