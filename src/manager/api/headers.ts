/**
 * Headers on every answer of the API, also errors and the hijacked event stream (set on the raw
 * response, which Node merges into whatever head is written). The content security policy suits
 * the web UI that will be served from this same origin: nothing from elsewhere, never framed.
 * No answer of the API is cached: many carry tokens or secrets (a login, a new token, a revealed
 * secret, a key backup), and all are one user's view.
 */
import type { App } from './context.ts';

export const securityHeaders: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000',
  'cache-control': 'no-store',
});

export function installSecurityHeaders(app: App): void {
  app.addHook('onRequest', (_req, reply, done) => {
    for (const [name, value] of Object.entries(securityHeaders)) reply.raw.setHeader(name, value);
    done();
  });
}
