/**
 * Local passwords: scrypt (memory-hard, in node:crypto), a random salt each, parameters kept
 * in the stored string so they can be raised later without breaking old hashes.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { TernError } from '../../errors.ts';

// 2^15 × 8 × 128 bytes = 32 MiB per hash: ~50 ms here, costly to guess in bulk.
const N = 1 << 15;
const r = 8;
const p = 1;
const keyLength = 32;

export const minPasswordLength = 10;

function derive(password: string, salt: Buffer, n: number, rr: number, pp: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, keyLength, { N: n, r: rr, p: pp, maxmem: 256 * n * rr }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

export function checkPasswordPolicy(password: string): void {
  if (password.length < minPasswordLength)
    throw new TernError('invalid_request', `a password needs at least ${minPasswordLength} characters`);
  if (password.length > 1024)
    throw new TernError('invalid_request', 'a password may have at most 1024 characters');
}

export async function hashPassword(password: string): Promise<string> {
  checkPasswordPolicy(password);
  const salt = randomBytes(16);
  const key = await derive(password, salt, N, r, p);
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Whether `password` matches `stored`; a malformed stored hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, rr, pp] = parts.slice(1, 4).map(Number);
  if (![n, rr, pp].every((x) => Number.isInteger(x) && x > 0) || n > 1 << 20 || rr > 32 || pp > 16)
    return false;
  const salt = Buffer.from(parts[4], 'base64');
  const want = Buffer.from(parts[5], 'base64');
  if (want.length !== keyLength || password.length > 1024) return false;
  return timingSafeEqual(await derive(password, salt, n, rr, pp), want);
}

/** A hash of nothing, checked when a user does not exist so the answer takes as long. */
let decoy: Promise<string> | undefined;
export async function spendPasswordTime(password: string): Promise<void> {
  decoy ??= hashPassword('decoy-password-never-used');
  await verifyPassword(password.slice(0, 1024), await decoy);
}
