/** The Fastify instance type of Tern's HTTPS servers (the API for people, the cluster endpoint), with TypeBox schemas. */
import type https from 'node:https';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
} from 'fastify';

export type App = FastifyInstance<
  https.Server,
  RawRequestDefaultExpression<https.Server>,
  RawReplyDefaultExpression<https.Server>,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;
