/**
 * Registers a whole table of declared routes (src/wire/route.ts) on a Fastify server that has
 * no per-route access rules (the agent: only managers may call it at all): one handler per
 * declared route, each given the declaration's schemas to validate requests with. A route
 * declared without a handler, or a handler without a declaration, stops the server from
 * starting. Answers are not re-serialised through the reply schemas: clients check them.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { BodyOf, ParamsOf, QueryOf, RawBody, ReplyOf, Route } from '../wire/route.ts';

/** A request on a declared route, typed by its schemas (a byte-stream body is the raw stream). */
export type DeclaredRequest<R extends Route> = Omit<FastifyRequest, 'params' | 'query' | 'body'> & {
  params: ParamsOf<R>;
  query: QueryOf<R>;
  body: R['rawBody'] extends RawBody ? unknown : BodyOf<R>;
};

/**
 * What a handler gives: a JSON route's value; nothing for a 204 route, or for one answering a
 * stream or bytes (`rawReply`), which answers through `reply` itself.
 */
export type AnswerOf<R extends Route> = R['rawReply'] extends RawBody
  ? Nothing
  : 204 extends keyof R['reply']
    ? Nothing
    : ReplyOf<R>;
/** What a handler answering through `reply`, or answering 204, returns is not used. */
type Nothing = unknown;

export type Handler<R extends Route> = (req: DeclaredRequest<R>, reply: FastifyReply) => Promise<AnswerOf<R>>;

export type Handlers<Rs extends Record<string, Route>> = { [K in keyof Rs]: Handler<Rs[K]> };

/** The declared routes without a handler and the handlers without a declared route. */
export function unmatched(routes: object, handlers: object): { unhandled: string[]; undeclared: string[] } {
  return {
    unhandled: Object.keys(routes).filter((k) => !Object.hasOwn(handlers, k)),
    undeclared: Object.keys(handlers).filter((k) => !Object.hasOwn(routes, k)),
  };
}

export function registerRoutes<Rs extends Record<string, Route>>(
  app: FastifyInstance,
  routes: Rs,
  handlers: Handlers<Rs>,
): void {
  const { unhandled, undeclared } = unmatched(routes, handlers);
  if (unhandled.length || undeclared.length) {
    throw new Error(
      `routes and handlers do not match: no handler for [${unhandled.join(', ')}], no route for [${undeclared.join(', ')}]`,
    );
  }
  for (const [name, r] of Object.entries(routes)) {
    const handle = handlers[name] as unknown as (
      req: FastifyRequest,
      reply: FastifyReply,
    ) => Promise<unknown>;
    app.route({
      method: r.method,
      url: r.path,
      ...(r.bodyLimit ? { bodyLimit: r.bodyLimit } : {}),
      schema: {
        ...(r.params ? { params: r.params } : {}),
        ...(r.query ? { querystring: r.query } : {}),
        ...(r.body ? { body: r.body } : {}),
      },
      handler: async (req, reply) => {
        const out = await handle(req, reply);
        if (r.rawReply) return reply;
        if (204 in r.reply) return reply.status(204).send();
        return out;
      },
    });
  }
}
