/** Starts a manager: database, task recovery, host links, REST API. */
import type { Logger } from '../log.ts';
import { AlertStore } from './alerts/store.ts';
import type { ApiServices } from './api/context.ts';
import { buildApi } from './api/server.ts';
import { TokenStore } from './auth/tokens.ts';
import { type Db, openDatabase } from './db/database.ts';
import { EventBus } from './events/bus.ts';
import { HostRegistry } from './hosts/registry.ts';
import { ImagePoolStore } from './imagepools/store.ts';
import { prepareStart } from './imagepools/tasks.ts';
import { ImageStore } from './library/images.ts';
import { TemplateStore } from './library/templates.ts';
import { TaskEngine } from './tasks/engine.ts';
import { VmStore } from './vms/store.ts';

export interface ManagerOptions {
  database: string;
  host: string;
  port: number;
  log: Logger;
}

export interface RunningManager {
  url: string;
  db: Db;
  services: ApiServices;
  close(): Promise<void>;
  /** Stops at once, leaving tasks as a crash would (for recovery tests). */
  crash(): Promise<void>;
}

export async function startManager(opts: ManagerOptions): Promise<RunningManager> {
  const db = await openDatabase(opts.database);
  const bus = new EventBus();
  const store = new VmStore(db, bus);
  const hosts = new HostRegistry(db, store, opts.log);
  const tasks = new TaskEngine(db, bus, opts.log);
  const services: ApiServices = {
    store,
    hosts,
    templates: new TemplateStore(db),
    bus,
    tasks,
    tokens: new TokenStore(db),
    images: new ImageStore(db),
    alerts: new AlertStore(db, bus),
    imagePools: new ImagePoolStore(db),
  };
  services.beforeStart = (vmId) => prepareStart(services, vmId);
  const stopAlerts = services.alerts.watch();
  const app = await buildApi(services, opts.log);
  await hosts.start();
  // Task kinds are registered by the routes; recovery needs them.
  await tasks.recover();
  await app.listen({ host: opts.host, port: opts.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  opts.log.info({ port }, 'manager listening');
  return {
    url: `http://${opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host}:${port}`,
    db,
    services,
    async close() {
      stopAlerts();
      await tasks.close();
      hosts.close();
      await app.close();
      await db.destroy();
    },
    async crash() {
      stopAlerts();
      tasks.abandon();
      hosts.close();
      await app.close();
      await db.destroy();
    },
  };
}
