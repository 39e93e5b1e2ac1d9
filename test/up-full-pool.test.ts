/**
 * `tern up` on a machine whose pool cannot hold the tiny template: the template is missing and
 * Tern says why, but the manager and its host stay up. The pool is a 1 MiB tmpfs.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { freePorts, repoRoot, runTern, tempDir, ternEnv } from './harness.ts';

const root = process.getuid?.() === 0;

test('tern up keeps the manager up when the pool cannot hold the tiny template, and says why', {
  skip: !root && 'needs root to mount a tmpfs',
}, async () => {
  const home = tempDir('tern-up-full');
  const shared = path.join(home, 'data', 'pools', 'shared');
  fs.mkdirSync(shared, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', shared]);
  const env = { TERN_HOME: path.join(home, 'data'), TERN_CONFIG: path.join(home, 'config.json') };
  const [port, agentPort, clusterPort] = await freePorts(3);
  const up = spawn(
    path.join(repoRoot, 'bin', 'tern'),
    ['up', '--port', String(port), '--agent-port', String(agentPort), '--cluster-port', String(clusterPort)],
    { env: ternEnv(env), stdio: ['ignore', 'ignore', 'pipe'] },
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
    const hosts = await runTern(['host', 'list'], { env });
    assert.equal(hosts.code, 0, hosts.stderr);
    assert.match(hosts.stdout, /^local\s/m);
    const templates = await runTern(['template', 'list', '-o', 'json'], { env });
    assert.equal(templates.code, 0, templates.stderr);
    assert.doesNotMatch(templates.stdout, /"tiny"/);
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
