/** Opens the manager's database (embedded SQLite by default) and brings its schema up to date. */
import fs from 'node:fs';
import path from 'node:path';
import { CamelCasePlugin, Kysely, Migrator } from 'kysely';
import { TernError } from '../../errors.ts';
import { migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';
import { openSqlite } from './sqlite-dialect.ts';

export type Db = Kysely<Database>;

export async function openDatabase(file: string): Promise<Db> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const { dialect } = openSqlite(file);
  const db = new Kysely<Database>({ dialect, plugins: [new CamelCasePlugin()] });
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new TernError('internal', `database migration ${failed} failed: ${(error as Error).message}`);
  }
  return db;
}

export const now = (): string => new Date().toISOString();
