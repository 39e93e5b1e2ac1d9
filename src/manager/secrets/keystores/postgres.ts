/**
 * Keys in a PostgreSQL table that only a separate role may read: the manager's own database
 * role (and so a stolen database dump or a leaked database password) never reaches them.
 * The store does not create its table: an administrator runs `postgresKeyTableSql` once with
 * rights the manager should not have. Each call opens a short connection with bounded
 * connect and statement times, so a hung server cannot hang the manager.
 */
import pg from 'pg';
import { TernError } from '../../../errors.ts';
import { KEK_ID } from '../envelope.ts';
import type { Kek, KeyStore } from '../keystore.ts';

export const DEFAULT_KEY_TABLE = 'tern_keys.keks';
const CONNECT_TIMEOUT_MS = 5000;
const STATEMENT_TIMEOUT_MS = 5000;
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/** `schema.table` (or `table`) checked and double-quoted, so it is safe to put in SQL. */
function quoteTable(table: string): { schema: string | null; qualified: string } {
  const parts = table.split('.');
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p)))
    throw new TernError(
      'invalid_request',
      `key table ${JSON.stringify(table)} is not a [schema.]table name in lower case`,
    );
  return {
    schema: parts.length === 2 ? `"${parts[0]}"` : null,
    qualified: parts.map((p) => `"${p}"`).join('.'),
  };
}

/** The statements an administrator runs once to make the key table readable by `role` alone. */
export function postgresKeyTableSql(table: string = DEFAULT_KEY_TABLE, role: string): string[] {
  const { schema, qualified } = quoteTable(table);
  if (!IDENT.test(role))
    throw new TernError('invalid_request', `role ${JSON.stringify(role)} is not a plain role name`);
  const r = `"${role}"`;
  return [
    ...(schema
      ? [`CREATE SCHEMA IF NOT EXISTS ${schema}`, `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC`]
      : []),
    `CREATE TABLE IF NOT EXISTS ${qualified} (
  id text PRIMARY KEY,
  key bytea NOT NULL CHECK (octet_length(key) = 32),
  created_at timestamptz NOT NULL DEFAULT now()
)`,
    `REVOKE ALL ON ${qualified} FROM PUBLIC`,
    ...(schema ? [`GRANT USAGE ON SCHEMA ${schema} TO ${r}`] : []),
    `GRANT SELECT, INSERT, DELETE ON ${qualified} TO ${r}`,
  ];
}

export class PostgresKeyStore implements KeyStore {
  readonly description: string;
  readonly #connectionString: string;
  readonly #table: string;
  readonly #user: string;

  constructor(cfg: { connectionString: string; table?: string }) {
    this.#connectionString = cfg.connectionString;
    this.#table = quoteTable(cfg.table ?? DEFAULT_KEY_TABLE).qualified;
    // A client that never connects parses the string (and PG* defaults) the way pg will.
    const parsed = new pg.Client({ connectionString: cfg.connectionString });
    this.#user = parsed.user ?? 'unknown';
    this.description = `postgres postgres://${this.#user}@${parsed.host}:${parsed.port}/${parsed.database} table ${cfg.table ?? DEFAULT_KEY_TABLE}`;
  }

  async list(): Promise<Kek[]> {
    const rows = await this.#query<{ id: string; key: Buffer; created_at: Date }>(
      `SELECT id, key, created_at FROM ${this.#table} ORDER BY created_at, id`,
    );
    return rows.map((r) => {
      if (!KEK_ID.test(r.id) || !Buffer.isBuffer(r.key) || r.key.length !== 32)
        throw this.#unavailable(`the key table holds a malformed key ${JSON.stringify(String(r.id))}`);
      return { id: r.id, key: r.key, createdAt: new Date(r.created_at).toISOString() };
    });
  }

  async add(kek: Kek): Promise<void> {
    if (!KEK_ID.test(kek.id) || kek.key.length !== 32)
      throw new TernError('invalid_request', `key ${kek.id} is not a valid 32-byte key`);
    await this.#query(`INSERT INTO ${this.#table} (id, key, created_at) VALUES ($1, $2, $3)`, [
      kek.id,
      kek.key,
      kek.createdAt,
    ]);
  }

  async remove(id: string): Promise<void> {
    const rows = await this.#query(`DELETE FROM ${this.#table} WHERE id = $1 RETURNING id`, [id]);
    if (rows.length === 0)
      throw new TernError('not_found', `key store ${this.description} holds no key ${id}`);
  }

  async close(): Promise<void> {}

  #unavailable(why: string): TernError {
    return new TernError('unavailable', `key store ${this.description}: ${why}`);
  }

  async #query<R extends object>(text: string, values: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({
      connectionString: this.#connectionString,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      query_timeout: STATEMENT_TIMEOUT_MS + 1000,
      application_name: 'tern-manager keys',
    });
    // A dropped connection is reported by the query; without a listener it would crash the process.
    client.on('error', () => undefined);
    try {
      await client.connect();
      return (await client.query<R>(text, values)).rows;
    } catch (err) {
      throw this.#translate(err);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  #translate(err: unknown): TernError {
    const e = err as { code?: string; message?: string };
    switch (e.code) {
      case '42501':
        return this.#unavailable(`the role ${this.#user} may not read the key table (permission denied)`);
      case '42P01':
      case '3F000':
        return this.#unavailable(
          `the key table does not exist: an administrator creates it once and grants the role ${this.#user} access to it`,
        );
      case '23505':
        return new TernError('conflict', `key store ${this.description} already holds a key with that id`);
      case '28P01':
      case '28000':
        return this.#unavailable(`the server refused the role ${this.#user}: ${e.message}`);
      case '57014':
        return this.#unavailable('the query took too long and was cancelled');
      default:
        return this.#unavailable(
          `cannot reach the server: ${e.message ?? String(err)}; check that it runs and that the connection string is right`,
        );
    }
  }
}
