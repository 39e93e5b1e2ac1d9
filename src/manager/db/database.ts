/** Opens the manager's database (embedded SQLite by default) and brings its schema up to date. */
import fs from 'node:fs';
import path from 'node:path';
import { CamelCasePlugin, Kysely, Migrator } from 'kysely';
import { TernError } from '../../errors.ts';
import type { DiskSpace } from './disk-space.ts';
import { migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';
import { openSqlite } from './sqlite-dialect.ts';

export type Db = Kysely<Database>;

/** `space`, when given, learns of a full disk (and writes then fail as `manager_disk_full`). */
export async function openDatabase(file: string, space?: DiskSpace): Promise<Db> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const { dialect } = openSqlite(file, space);
  const db = new Kysely<Database>({ dialect, plugins: [new CamelCasePlugin()] });
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new TernError('internal', `database migration ${failed} failed: ${(error as Error).message}`);
  }
  return db;
}

export const now = (): string => new Date().toISOString();
