/**
 * An API route as the contract declares it: method, path, what it takes and what it answers.
 * The manager serves its handlers from these (manager/api/serve.ts), the OpenAPI document is
 * generated from them, and the API client (wire/api-client.ts) calls them, typed end to end.
 */
import type { Static, TSchema } from 'typebox';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A body that is not JSON, for the OpenAPI document: its media type and what it is. */
export interface RawBody {
  contentType: string;
  description: string;
}

export interface Route {
  method: Method;
  /** Fastify's spelling: `/api/v1/vms/:vm`. */
  path: string;
  summary: string;
  tags: readonly string[];
  params?: TSchema;
  query?: TSchema;
  body?: TSchema;
  /** The answer's schema by status. */
  reply: Readonly<Record<number, TSchema>>;
  /** The request body when it is not JSON (an upload). */
  rawBody?: RawBody;
  /** The successful answer when it is not JSON (a file, an event stream). */
  rawReply?: RawBody;
  /** Left out of the OpenAPI document (health, the document itself). */
  hide?: boolean;
  /** With a newline-delimited JSON answer (`rawReply`): the schema of each line. */
  lines?: TSchema;
  /** The largest body taken, when not the server's default. */
  bodyLimit?: number;
}

/** Declares a route, keeping every schema's type for the server and the client. */
export const route = <const R extends Route>(r: R): R => r;

type StaticOf<S> = S extends TSchema ? Static<S> : undefined;
export type ParamsOf<R extends Route> = StaticOf<R['params']>;
export type QueryOf<R extends Route> = StaticOf<R['query']>;
export type BodyOf<R extends Route> = StaticOf<R['body']>;

type Success = 200 | 201 | 202 | 204;
/** What a successful call answers (unknown when the route declares no successful answer). */
export type ReplyOf<R extends Route> = [keyof R['reply'] & Success] extends [never]
  ? unknown
  : { [K in keyof R['reply'] & Success]: StaticOf<R['reply'][K]> }[keyof R['reply'] & Success];

/** One line of a route answering newline-delimited JSON. */
export type LineOf<R extends Route> = StaticOf<R['lines']>;

/** What a call gives: the path's parameters, the query and the body, as the route declares them. */
export type CallOf<R extends Route> = (R['params'] extends TSchema ? { params: ParamsOf<R> } : unknown) &
  (R['query'] extends TSchema ? { query?: Partial<QueryOf<R>> } : unknown) &
  (R['body'] extends TSchema ? { body: BodyOf<R> } : unknown);

/** The path with its parameters filled in, each encoded: `/api/v1/vms/:vm` → `/api/v1/vms/web-1`. */
export function pathOf(r: Route, params?: Record<string, unknown>, query?: Record<string, unknown>): string {
  const path = r.path.replace(/:(\w+)/g, (_, k: string) => encodeURIComponent(String(params?.[k] ?? '')));
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) q.set(k, String(v));
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}
