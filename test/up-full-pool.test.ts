/**
 * `tern up` on a machine whose pool cannot hold the tiny template: the template is missing and
 * Tern says why, but the manager and its host stay up. The pool is a 1 MiB tmpfs.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { freePorts, repoRoot, tempDir } from './harness.ts';

const root = process.getuid?.() === 0;

/** bin/tern with only these TERN_ variables; resolves with its exit code and output. */
function tern(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(base)) if (k.startsWith('TERN_') && k !== 'TERN_GUEST_DIR') delete base[k];
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(repoRoot, 'bin', 'tern'), args, { env: { ...base, ...env } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

test('tern up keeps the manager up when the pool cannot hold the tiny template, and says why', {
  skip: !root && 'needs root to mount a tmpfs',
}, async () => {
  const home = tempDir('tern-up-full');
  const shared = path.join(home, 'data', 'pools', 'shared');
  fs.mkdirSync(shared, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', shared]);
  const env = { TERN_HOME: path.join(home, 'data'), TERN_CONFIG: path.join(home, 'config.json') };
  const [port, agentPort, clusterPort] = await freePorts(3);
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(base)) if (k.startsWith('TERN_') && k !== 'TERN_GUEST_DIR') delete base[k];
  const up = spawn(
    path.join(repoRoot, 'bin', 'tern'),
    ['up', '--port', String(port), '--agent-port', String(agentPort), '--cluster-port', String(clusterPort)],
    { env: { ...base, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise((resolve) => up.once('exit', resolve));
  let seen = '';
  up.stderr.setEncoding('utf8').on('data', (d: string) => {
    seen += d;
  });
  /** Resolves once tern up has written `text` (its log is written asynchronously). */
  const written = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!seen.includes(text)) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no "${text}" from tern up within 120 s: ${seen}`));
      }, 120_000);
      const exit = (code: number | null) => {
        done();
        reject(new Error(`tern up exited (${code}): ${seen}`));
      };
      const done = () => {
        clearTimeout(timer);
        up.stderr.off('data', check);
        up.off('exit', exit);
      };
      up.stderr.on('data', check);
      up.once('exit', exit);
      check();
    });
  try {
    await written('Tern is running');
    await written('the tiny template could not be imported');
    assert.match(seen, /the tiny template could not be imported: pool shared has no room for templates\//);
    assert.doesNotMatch(seen, /internal error|ENOSPC/);
    const hosts = await tern(['host', 'list'], env);
    assert.equal(hosts.code, 0, hosts.out);
    assert.match(hosts.out, /^local\s/m);
    const templates = await tern(['template', 'list', '-o', 'json'], env);
    assert.equal(templates.code, 0, templates.out);
    assert.doesNotMatch(templates.out, /"tiny"/);
    // Nothing half-copied is left to pass for the template at the next start.
    assert.deepEqual(
      fs.readdirSync(shared, { recursive: true }).filter((f) => String(f).includes('.')),
      [],
    );
  } finally {
    up.kill('SIGTERM');
    await exited;
    execFileSync('umount', ['-l', shared]);
    fs.rmSync(home, { recursive: true, force: true });
  }
});
