/** What every benchmark prints with: an aligned table and the machine's load. */
import fs from 'node:fs';

/** Prints rows under headers, the first column left-aligned and the others right-aligned. */
export function table(headers: string[], rows: (string | number)[][]): void {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) =>
    r.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  console.log(line(headers));
  for (const r of rows) console.log(line(r));
}

/** The 1, 5 and 15 minute load averages: a benchmark's figures mean little on a busy machine. */
export const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' ');

const finiteSorted = (xs: readonly number[]) => xs.filter(Number.isFinite).sort((a, b) => a - b);

/** The middle of the finite values (the mean of the middle two for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const s = finiteSorted(xs);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest rank (0 < p ≤ 1) of the finite values: with few samples, the p95 is the max. NaN for none. */
export function percentile(xs: readonly number[], p: number): number {
  const s = finiteSorted(xs);
  return s.length ? s[Math.max(0, Math.ceil(p * s.length) - 1)]! : Number.NaN;
}
