/**
 * Maps every error a Fastify server (manager API or agent) meets to Tern's wire shape
 * `{error: {code, message, details}}`: validation problems are 4xx with the offending field,
 * unexpected failures are logged in full and shown to the caller as one line.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { TernError } from '../errors.ts';
import type { AllowedMethods } from './methods.ts';

export function installErrorHandling(app: FastifyInstance, allowed?: AllowedMethods): void {
  app.setErrorHandler((err: FastifyError | TernError | Error, req, reply) => {
    if (err instanceof TernError) {
      if (err.status >= 500) req.log.error({ err }, err.message);
      return reply.status(err.status).send(err.toBody());
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const first = fe.validation[0];
      const where = fe.validationContext ?? 'request';
      const field = `${where}${first?.instancePath ?? ''}`.replaceAll('/', '.');
      const unknown = (first?.params as { additionalProperty?: string } | undefined)?.additionalProperty;
      const message =
        first?.keyword === 'additionalProperties' && unknown !== undefined
          ? `${field} has no field ${JSON.stringify(unknown)} (additional properties are refused)`
          : `${field} ${first?.message ?? 'is invalid'}`;
      return reply
        .status(400)
        .send(
          new TernError('invalid_request', message, { field, problems: fe.validation.slice(0, 10) }).toBody(),
        );
    }
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      const code =
        fe.statusCode === 413
          ? 'payload_too_large'
          : fe.statusCode === 415
            ? 'unsupported_media_type'
            : fe.statusCode === 404
              ? 'not_found'
              : 'invalid_request';
      return reply.status(fe.statusCode).send(new TernError(code, fe.message).toBody());
    }
    req.log.error({ err }, 'unexpected error');
    return reply.status(500).send(new TernError('internal', `internal error: ${err.message}`).toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0];
    const methods = allowed?.(path) ?? [];
    if (methods.length)
      return reply
        .status(405)
        .header('allow', methods.join(', '))
        .send(
          new TernError('method_not_allowed', `${path} answers ${methods.join(', ')}, not ${req.method}`, {
            allow: methods,
          }).toBody(),
        );
    return reply
      .status(404)
      .send(new TernError('not_found', `no route ${req.method} ${req.url.split('?')[0]}`).toBody());
  });
}

/**
 * For routes whose body is optional: no body is validated as an empty object. A body of JSON
 * `null` is a body, of the wrong type.
 */
export async function emptyBodyAsObject(req: { body: unknown }): Promise<void> {
  if (req.body === undefined) req.body = {};
}
