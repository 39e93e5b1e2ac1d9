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
