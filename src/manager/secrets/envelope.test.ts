import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { type Envelope, open, parseEnvelope, rewrap, seal } from './envelope.ts';
import type { Kek } from './keystore.ts';

const kek = (id: string): Kek => ({ id, key: randomBytes(32), createdAt: new Date().toISOString() });
const altered = (err: unknown) =>
  err instanceof TernError &&
  /cannot be decrypted: it was altered or sealed with another key/.test(err.message);

test('a sealed value opens with its key and its id, and the envelope holds no plaintext', () => {
  const k = kek('kek-1');
  const env = seal(Buffer.from('hunter2-correct-horse'), k, 'secret-1');
  assert.equal(env.v, 1);
  assert.equal(env.kek, 'kek-1');
  assert.ok(!JSON.stringify(env).includes('hunter2'));
  assert.equal(open(env, k, 'secret-1').toString(), 'hunter2-correct-horse');
  // Fresh data key and IVs every time.
  const again = seal(Buffer.from('hunter2-correct-horse'), k, 'secret-1');
  assert.notEqual(again.ct, env.ct);
  assert.notEqual(again.dek, env.dek);
});

test('an envelope moved to another secret, or opened with another key, does not open', () => {
  const k = kek('kek-1');
  const env = seal(Buffer.from('v'), k, 'secret-1');
  assert.throws(
    () => open(env, k, 'secret-2', 'db-password'),
    (e) => altered(e) && /db-password/.test(String(e)),
  );
  assert.throws(() => open(env, { ...kek('kek-1') }, 'secret-1'), altered);
  assert.throws(() => open(env, kek('kek-2'), 'secret-1'), /sealed with key kek-1, not kek-2/);
});

test('any altered byte is detected', () => {
  const k = kek('kek-1');
  const env = seal(Buffer.from('a value of some length'), k, 's');
  for (const f of ['dek', 'dekIv', 'dekTag', 'iv', 'ct', 'tag'] as const) {
    const b = Buffer.from(env[f], 'base64');
    b[0] ^= 1;
    assert.throws(() => open({ ...env, [f]: b.toString('base64') }, k, 's'), altered, f);
  }
});

test('rewrap changes only the wrapped data key', () => {
  const a = kek('kek-a');
  const b = kek('kek-b');
  const env = seal(Buffer.from('value'), a, 's');
  const next = rewrap(env, a, b);
  assert.equal(next.kek, 'kek-b');
  assert.equal(next.ct, env.ct);
  assert.equal(next.iv, env.iv);
  assert.equal(next.tag, env.tag);
  assert.notEqual(next.dek, env.dek);
  assert.equal(open(next, b, 's').toString(), 'value');
  assert.throws(() => open({ ...next, kek: 'kek-a' }, a, 's'), altered);
});

test('envelopes from the database are checked field by field', () => {
  const k = kek('kek-1');
  const good = JSON.stringify(seal(Buffer.from('x'), k, 's'));
  assert.deepEqual(parseEnvelope(good, 'n'), JSON.parse(good));
  const bad: [string, RegExp][] = [
    ['not json', /not a JSON object/],
    ['[]', /not a JSON object/],
    [JSON.stringify({ ...JSON.parse(good), v: 2 }), /unknown envelope version 2/],
    [JSON.stringify({ ...JSON.parse(good), extra: 1 }), /unexpected fields extra/],
    [JSON.stringify({ ...JSON.parse(good), kek: '../x' }), /key id is not valid/],
    [JSON.stringify({ ...JSON.parse(good), iv: 'AAAA' }), /field iv is not 12 bytes/],
    [JSON.stringify({ ...JSON.parse(good), tag: 'not base64!' }), /field tag is not valid base64/],
    [JSON.stringify({ ...JSON.parse(good), ct: 5 }), /field ct is not valid base64/],
  ];
  for (const [text, re] of bad) assert.throws(() => parseEnvelope(text, 'n'), re, text);
  assert.throws(() => open({ ...JSON.parse(good), dek: undefined } as Envelope, k, 's'), /field dek/);
});

test('oversized values and bad keys are refused', () => {
  assert.throws(() => seal(Buffer.alloc(65 * 1024), kek('k'), 's'), /at most/);
  assert.throws(
    () => seal(Buffer.from('x'), { id: 'k', key: Buffer.alloc(16), createdAt: '' }, 's'),
    /32-byte/,
  );
});
