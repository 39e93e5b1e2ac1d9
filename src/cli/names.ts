/** Bulk names as people type them: `web-{1..20}` or `db-{01..03}`, for shells that do not expand them. */
import { TernError } from '../errors.ts';

const range = /\{(\d+)\.\.(\d+)\}/;

export function expandNames(args: string[], max = 1000): string[] {
  const out: string[] = [];
  for (const arg of args) {
    const m = range.exec(arg);
    if (!m) {
      out.push(arg);
      continue;
    }
    const [from, to] = [Number(m[1]), Number(m[2])];
    if (to < from) throw new TernError('invalid_request', `${arg}: the range runs backwards`);
    if (to - from + 1 > max) throw new TernError('invalid_request', `${arg}: more than ${max} names`);
    // {01..10} keeps the width of its first bound, as bash does.
    const width = m[1].startsWith('0') ? m[1].length : 0;
    for (let i = from; i <= to; i++) {
      out.push(...expandNames([arg.replace(range, String(i).padStart(width, '0'))], max));
    }
  }
  if (out.length > max) throw new TernError('invalid_request', `more than ${max} names`);
  return out;
}

/**
 * Names in the order people count: `t-2` before `t-10`. Runs of digits compare as numbers,
 * everything else by code unit, so the order is the same on every machine and locale.
 */
export function compareNames(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [];
  const pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const [x, y] = [pa[i], pb[i]];
    if (x === y) continue;
    const digits = /^\d/.test(x) && /^\d/.test(y);
    if (digits) {
      // Compared as text once leading zeros are gone: no digit run is too long for a number.
      const [nx, ny] = [x.replace(/^0+/, ''), y.replace(/^0+/, '')];
      if (nx.length !== ny.length) return nx.length - ny.length;
      if (nx !== ny) return nx < ny ? -1 : 1;
      if (x.length !== y.length) return x.length - y.length;
      continue;
    }
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

/** A copy of `items` in natural order of their names. */
export function byName<T>(
  items: readonly T[],
  name: (item: T) => string = (i) => (i as { name: string }).name,
): T[] {
  return [...items].sort((a, b) => compareNames(name(a), name(b)));
}
