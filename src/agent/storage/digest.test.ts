import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileSha256 } from './digest.ts';

test('fileSha256 is the digest of the whole file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-digest-'));
  try {
    const f = path.join(dir, 'x');
    const data = Buffer.alloc(3 * 1024 * 1024 + 7, 'tern');
    fs.writeFileSync(f, data);
    assert.equal(await fileSha256(f), createHash('sha256').update(data).digest('hex'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
