/**
 * A throwaway PostgreSQL server for tests: its own data directory in a temporary folder, on a
 * free loopback port, with password (SCRAM) authentication over TCP so that role rights are
 * tested as they are in production. Tests run as root and postgres refuses root, so the
 * server runs as the `postgres` system user. `pg_ctl -w` waits for readiness, bounded by -t.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePorts, tempDir } from './harness.ts';

const run = promisify(execFile);
const BIN = process.env.TERN_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const SYSTEM_USER = 'postgres';
const WAIT_S = 60;

export interface TestPostgres {
  port: number;
  /** A connection string for `user` with `password`, to `database` (default `postgres`). */
  url(user: string, password: string, database?: string): string;
  /** The superuser's connection string. */
  adminUrl: string;
  /** Runs one statement as the superuser and returns its rows. */
  sql<R extends object = Record<string, unknown>>(statement: string, params?: unknown[]): Promise<R[]>;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<TestPostgres> {
  const dir = tempDir('tern-pg');
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const adminPassword = randomBytes(12).toString('hex');
  const uid = Number(execFileSync('id', ['-u', SYSTEM_USER], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', SYSTEM_USER], { encoding: 'utf8' }));
  fs.chownSync(dir, uid, gid);
  const pwfile = path.join(dir, 'pwfile');
  fs.writeFileSync(pwfile, `${adminPassword}\n`, { mode: 0o600 });
  fs.chownSync(pwfile, uid, gid);
  const asPostgres = (bin: string, args: string[]) =>
    run('runuser', ['-u', SYSTEM_USER, '--', path.join(BIN, bin), ...args], {
      cwd: dir,
      timeout: WAIT_S * 1000,
    });
  const [port] = await freePorts(1);
  const serverLog = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-4000) : '');

  let started = false;
  // If the test process dies without stop(), the server must not outlive it.
  const onExit = () => {
    if (started)
      try {
        execFileSync(
          'runuser',
          ['-u', SYSTEM_USER, '--', path.join(BIN, 'pg_ctl'), 'stop', '-D', data, '-m', 'immediate'],
          {
            stdio: 'ignore',
            timeout: 10_000,
          },
        );
      } catch {}
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  try {
    await asPostgres('initdb', [
      '-D',
      data,
      '-U',
      'postgres',
      `--pwfile=${pwfile}`,
      '--auth-host=scram-sha-256',
      '--auth-local=scram-sha-256',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    started = true;
    await asPostgres('pg_ctl', [
      'start',
      '-D',
      data,
      '-l',
      logFile,
      '-w',
      '-t',
      String(WAIT_S),
      '-o',
      `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c full_page_writes=off`,
    ]);
  } catch (err) {
    onExit();
    process.off('exit', onExit);
    throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${serverLog()}`);
  }

  const url = (user: string, password: string, database = 'postgres') =>
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  const adminUrl = url('postgres', adminPassword);
  return {
    port,
    url,
    adminUrl,
    async sql<R extends object>(statement: string, params: unknown[] = []) {
      const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
      await client.connect();
      try {
        return (await client.query<R>(statement, params)).rows;
      } finally {
        await client.end();
      }
    },
    async stop() {
      try {
        await asPostgres('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', String(WAIT_S)]);
        started = false;
      } finally {
        onExit();
        process.off('exit', onExit);
      }
    },
  };
}
