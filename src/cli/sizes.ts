/** Sizes as people type them: 512M, 2G, 1.5T; a bare number means the default unit. */
import { TernError } from '../errors.ts';

const factors: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 };

/** Returns MiB. */
export function parseSize(text: string, defaultUnit: 'M' | 'G', what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT])?(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new TernError('invalid_request', `${what} "${text}" is not a size (examples: 512M, 2G)`);
  const value = Number(m[1]) * factors[(m[2] ?? defaultUnit).toUpperCase()];
  if (!(value > 0)) throw new TernError('invalid_request', `${what} must be more than zero`);
  return value;
}
