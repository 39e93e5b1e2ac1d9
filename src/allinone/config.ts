/** Where Tern keeps its files on this machine, and the CLI's config (manager URL, token, CA). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function dataDir(): string {
  return (
    process.env.TERN_HOME ??
    path.join(process.env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local', 'share'), 'tern')
  );
}

export function cliConfigPath(): string {
  return (
    process.env.TERN_CONFIG ??
    path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), 'tern', 'config.json')
  );
}

export interface CliConfig {
  url: string;
  token: string;
  /** The CA (PEM) whose certificate the manager must present; absent: the system's CAs. */
  ca?: string;
}

export function writeCliConfig(config: CliConfig, file = cliConfigPath()): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
}
