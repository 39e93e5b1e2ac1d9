import type { Kysely } from 'kysely';

/** The database as migrations see it: untyped, since they run before the typed schema exists. */
// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists
export type Db = Kysely<any>;
