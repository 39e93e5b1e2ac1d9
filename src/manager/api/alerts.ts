/** /api/v1/alerts: conditions that need a person (a VM paused on a full pool, a crash). */
import { alertRoutes as routes } from '../../wire/api/alerts.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function alertRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'alert.read', async (req) => ({
    items: await s.alerts.list(!req.query.all, req.query.limit ?? 100),
  }));
}
