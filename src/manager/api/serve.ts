/**
 * Serves a declared route (wire/api/): its schemas validate the request and describe it in the
 * OpenAPI document, and its access rule sits here, beside its handler.
 */
import type { FastifyReply, FastifyRequest, preValidationHookHandler } from 'fastify';
import type { BodyOf, ParamsOf, QueryOf, RawBody, ReplyOf, Route } from '../../wire/route.ts';
import type { RouteRule } from '../auth/permissions.ts';
import type { App } from './context.ts';

export type RouteRequest<R extends Route> = FastifyRequest & {
  params: ParamsOf<R>;
  query: QueryOf<R>;
  /** A body that is not JSON (an upload) is the raw stream, for the handler to read. */
  body: R['rawBody'] extends RawBody ? unknown : BodyOf<R>;
};

export type Handler<R extends Route> = (
  req: RouteRequest<R>,
  reply: FastifyReply,
) => Promise<R['rawReply'] extends RawBody ? unknown : ReplyOf<R> | FastifyReply>;

/** What a few routes need beyond their declaration. */
export interface ServeOptions {
  preValidation?: preValidationHookHandler;
  bodyLimit?: number;
}

export function serve<const R extends Route>(
  app: App,
  r: R,
  access: RouteRule,
  handler: Handler<R>,
  options: ServeOptions = {},
): void {
  app.route({
    method: r.method,
    url: r.path,
    config: { access, route: r },
    ...options,
    schema: {
      summary: r.summary,
      tags: [...r.tags],
      ...(r.params ? { params: r.params } : {}),
      ...(r.query ? { querystring: r.query } : {}),
      ...(r.body ? { body: r.body } : {}),
      response: r.reply,
      ...(r.hide ? { hide: true } : {}),
    },
    handler: handler as never,
  });
}
