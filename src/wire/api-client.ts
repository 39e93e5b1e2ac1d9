/**
 * The typed API client: a declared route and what it takes, in; its answer, typed, out. Any
 * transport will do (the CLI's HTTPS client, the web UI's fetch); nobody writes a path or casts
 * an answer by hand.
 */
import { type CallOf, pathOf, type ReplyOf, type Route } from './route.ts';

/** Sends one JSON request and gives the parsed answer (or throws the API's error). */
export type Send = (method: string, path: string, body?: unknown) => Promise<unknown>;

/** The arguments of a call: none when the route takes nothing, else what it declares. */
export type CallArgs<R extends Route> =
  unknown extends CallOf<R> ? [] : Record<string, never> extends CallOf<R> ? [CallOf<R>?] : [CallOf<R>];

export async function callRoute<const R extends Route>(
  send: Send,
  r: R,
  ...[input]: CallArgs<R>
): Promise<ReplyOf<R>> {
  const body = (input as { body?: unknown } | undefined)?.body;
  return (await send(r.method, pathOfCall(r, input), body)) as ReplyOf<R>;
}

/** The path a call goes to: the route's, with the parameters and query the call gives. */
export function pathOfCall<R extends Route>(r: R, input: CallOf<R> | undefined): string {
  const i = input as { params?: Record<string, unknown>; query?: Record<string, unknown> } | undefined;
  return pathOf(r, i?.params, i?.query);
}
