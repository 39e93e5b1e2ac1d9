/**
 * How the CLI shows things: aligned tables for people, JSON for scripts, one-line errors.
 * Everything here is untrusted text (names chosen by self-service users, a guest's console,
 * log lines): control characters never reach a terminal as such. People see them written out
 * (`\x1b`); JSON carries them escaped, so scripts get the same string back.
 */

export type Format = 'table' | 'json';

/**
 * C0 and C1 controls and DEL (escape sequences, bells, carriage returns that overwrite a line),
 * and the bidirectional overrides that make text read differently from what it is.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const controls = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const controlsInLine = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const visible = (c: string) => {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
};

/**
 * `text` with its control characters written out visibly. Line breaks and tabs stay, unless
 * `oneLine` (a table cell or a field, whose layout a line break would break).
 */
export function printable(text: string, oneLine = false): string {
  if (oneLine) return text.replace(controlsInLine, visible);
  // A line ending from a serial console or another system is still just a line ending.
  return text.replace(/\r\n/g, '\n').replace(controls, visible);
}

/** Text for people on stdout, its control characters neutralised. */
export function printText(text: string): void {
  process.stdout.write(printable(text));
}

/** Bytes exactly as they are (`tern vm console --raw`), for whoever asked for them. */
export function printRaw(text: string): void {
  process.stdout.write(text);
}

export function printJson(value: unknown): void {
  // JSON already escapes C0 controls; DEL, C1 and the overrides are escaped the same way.
  const json = JSON.stringify(value, null, 2).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  process.stdout.write(`${json}\n`);
}

type Cell = string | number | null | undefined;

export function printTable(headers: string[], rows: Cell[][]): void {
  const cells = rows.map((r) =>
    r.map((c) => (c === null || c === undefined || c === '' ? '-' : printable(String(c), true))),
  );
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(headers)}\n`);
  for (const r of cells) process.stdout.write(`${line(r)}\n`);
}

export function printFields(fields: [string, Cell][]): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields)
    process.stdout.write(
      `${`${k}:`.padEnd(width + 2)}${v === null || v === undefined || v === '' ? '-' : printable(String(v), true)}\n`,
    );
}

/** Objects as a table for people, or as they are (`--output json`) for scripts. */
export function printList<T>(
  format: Format,
  items: readonly T[],
  headers: string[],
  row: (item: T) => Cell[],
): void {
  if (format === 'json') printJson(items);
  else printTable(headers, items.map(row));
}

/** One object as fields for people, or as it is (`--output json`) for scripts. */
export function printObject<T>(format: Format, value: T, fields: (v: T) => [string, Cell][]): void {
  if (format === 'json') printJson(value);
  else printFields(fields(value));
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
