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
