/**
 * Kysely's SQLite dialect on Node's built-in `node:sqlite`, so the manager needs no native
 * addon. Kysely expects a better-sqlite3-shaped database; this adapts the few calls it uses.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { type SqliteDatabase, SqliteDialect, type SqliteStatement } from 'kysely';
import type { DiskSpace } from './disk-space.ts';

function bind(params: readonly unknown[]): SQLInputValue[] {
  return params.map((p) => {
    if (typeof p === 'boolean') return p ? 1 : 0;
    if (p === undefined) return null;
    if (p instanceof Date) return p.toISOString();
    return p as SQLInputValue;
  });
}

/** SQLITE_FULL, also as an extended result code. */
const sqliteFull = 13;

class Statement implements SqliteStatement {
  readonly #stmt: StatementSync;
  readonly #space: DiskSpace | undefined;
  readonly reader: boolean;

  constructor(stmt: StatementSync, space: DiskSpace | undefined) {
    this.#stmt = stmt;
    this.#space = space;
    this.reader = stmt.columns().length > 0;
  }

  all(parameters: readonly unknown[]): unknown[] {
    return this.#checked(() => this.#stmt.all(...bind(parameters)));
  }

  run(parameters: readonly unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint } {
    return this.#checked(() => this.#stmt.run(...bind(parameters)));
  }

  iterate(parameters: readonly unknown[]): IterableIterator<unknown> {
    return this.#checked(() => this.#stmt.iterate(...bind(parameters)) as IterableIterator<unknown>);
  }

  /** A full disk is said as such, not as SQLite's "database or disk is full". */
  #checked<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      const code = (err as { errcode?: unknown }).errcode;
      if (this.#space && typeof code === 'number' && (code & 0xff) === sqliteFull) {
        this.#space.noteFull();
        throw this.#space.error();
      }
      throw err;
    }
  }
}

/**
 * SQLite rolls a transaction back by itself on some errors (a full disk among them); Kysely then
 * asks for a rollback of its own, whose "no transaction is active" would hide the real error.
 */
const noop: SqliteStatement = {
  reader: false,
  all: () => [],
  run: () => ({ changes: 0, lastInsertRowid: 0 }),
  iterate: () => [][Symbol.iterator](),
};

/**
 * Prepared statements by SQL text. Kysely sends the same parameterized text again and again;
 * preparing it costs several times what running it does (about 30 µs against 8 µs here).
 */
const statementCacheSize = 500;

export function openSqlite(file: string, space?: DiskSpace): { dialect: SqliteDialect; raw: DatabaseSync } {
  const raw = new DatabaseSync(file);
  raw.exec(
    'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;',
  );
  const statements = new Map<string, Statement>();
  const database: SqliteDatabase = {
    close: () => raw.close(),
    prepare: (sql: string) => {
      if (!raw.isTransaction && /^rollback$/i.test(sql)) return noop;
      let stmt = statements.get(sql);
      if (stmt) {
        // Most recently used last, so the oldest goes first when the cache is full.
        statements.delete(sql);
      } else {
        stmt = new Statement(raw.prepare(sql), space);
        if (statements.size >= statementCacheSize)
          statements.delete(statements.keys().next().value as string);
      }
      statements.set(sql, stmt);
      return stmt;
    },
  };
  return { dialect: new SqliteDialect({ database }), raw };
}
