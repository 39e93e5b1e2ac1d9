/** Starts an agent (driver + protocol server); used by the agent process and by all-in-one mode. */
import fs from 'node:fs';
import type { Logger } from '../log.ts';
import type { HypervisorDriver } from './driver.ts';
import { QemuDriver } from './qemu/driver.ts';
import { buildAgentServer } from './server.ts';

export interface AgentOptions {
  stateDir: string;
  host: string;
  port: number;
  token: string;
  pools: Record<string, string>;
  /** Names of the pools every host sees at the same path. */
  sharedPools?: string[];
  log: Logger;
  heartbeatMs?: number;
  driver?: HypervisorDriver;
}

export interface RunningAgent {
  url: string;
  driver: HypervisorDriver;
  close(): Promise<void>;
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  fs.mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  for (const dir of Object.values(opts.pools)) fs.mkdirSync(dir, { recursive: true });
  const driver =
    opts.driver ??
    new QemuDriver({
      stateDir: opts.stateDir,
      pools: opts.pools,
      sharedPools: opts.sharedPools ?? [],
      log: opts.log,
      heartbeatMs: opts.heartbeatMs,
    });
  await driver.init();
  const app = await buildAgentServer({ driver, pools: opts.pools, token: opts.token, log: opts.log });
  await app.listen({ host: opts.host, port: opts.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  opts.log.info({ port }, 'agent listening');
  return {
    url: `http://${opts.host}:${port}`,
    driver,
    async close() {
      await app.close();
      await driver.close();
    },
  };
}
