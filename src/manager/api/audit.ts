/** /api/v1/audit: the audit log, for auditors. */
import { auditRoutes as routes } from '../../wire/api/audit.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function auditRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'audit.read', async (req) => {
    const { cursor, limit, ...filter } = req.query;
    return s.audit.query({ ...filter, limit: limit ?? 100, before: cursor ? Number(cursor) : undefined });
  });
}
