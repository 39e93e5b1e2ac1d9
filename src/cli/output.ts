/** How the CLI shows things: aligned tables for people, JSON for scripts, one-line errors. */

export type Format = 'table' | 'json';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printTable(headers: string[], rows: (string | number | null | undefined)[][]): void {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(headers)}\n`);
  for (const r of cells) process.stdout.write(`${line(r)}\n`);
}

export function printFields(fields: [string, string | number | null | undefined][]): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields)
    process.stdout.write(
      `${`${k}:`.padEnd(width + 2)}${v === null || v === undefined || v === '' ? '-' : v}\n`,
    );
}

export function mib(n: number): string {
  return n >= 1024 ? `${+(n / 1024).toFixed(1)} GiB` : `${n} MiB`;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${+v.toFixed(1)} ${units[i]}`;
}

export function ago(iso: string | null): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}
