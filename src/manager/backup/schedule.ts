/**
 * Calendar schedules of backup jobs: a small subset of the systemd calendar events Proxmox uses,
 * at minute resolution, read in the manager's time zone (calendar.ts). Pure: parse once when a
 * job is written (a clear error for what cannot be read or never happens), then `nextRun`.
 *
 *   minutely | hourly | daily | weekly | monthly | yearly
 *   daily 02:00           every day at 02:00 (also weekly/monthly/yearly with a time)
 *   mon..fri 22:30        weekdays at 22:30; `sat,sun 03:00`; `fri..mon` wraps
 *   every 15m | every 2h  at the same minutes of every hour (hours of every day): 00, 15, 30, 45
 *   *:0/15  8..18:00  02:30   a time: hours and minutes are `*`, `N`, `N..M`, `N/STEP`, lists with `,`
 *   *-*-01 03:00  12-24   a date (`[*-]MONTH-DAY`) with or without weekdays (both must match)
 */
import { TernError } from '../../errors.ts';
import { type CalendarFields, dateOf, fieldsOf, type Zone } from './calendar.ts';

export interface Schedule {
  /** The text it was read from, spaces normalised. */
  readonly text: string;
  /** 0 = Sunday … 6 = Saturday; null: any day of the week. */
  readonly weekdays: ReadonlySet<number> | null;
  /** 1..12; null: any. */
  readonly months: ReadonlySet<number> | null;
  /** 1..31; null: any. */
  readonly days: ReadonlySet<number> | null;
  /** Sorted ascending, never empty. */
  readonly hours: readonly number[];
  readonly minutes: readonly number[];
}

const shorthands: Record<string, string> = {
  minutely: '*:*',
  hourly: '*:00',
  daily: '00:00',
  weekly: 'mon 00:00',
  monthly: '*-01 00:00',
  yearly: '01-01 00:00',
  annually: '01-01 00:00',
};

const weekdayNames = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function invalid(text: string, why: string): TernError {
  return new TernError('invalid_request', `schedule "${text}": ${why}`, { schedule: text });
}

export function parseSchedule(input: string): Schedule {
  const text = input.trim().replace(/\s+/g, ' ');
  if (text === '') throw invalid(text, 'empty; try "daily 02:00", "mon..fri 22:30" or "every 15m"');
  if (text.length > 200) throw invalid(text.slice(0, 40), 'longer than 200 characters');
  const tokens = text.toLowerCase().split(' ');
  const schedule = fromTokens(text, tokens);
  // Read once from a fixed day so a schedule that can never happen (`02-30`, `02-29 mon` does
  // happen) is refused when written, not found out by a job that never runs.
  if (!nextRun(schedule, new Date(Date.UTC(2000, 0, 1)), 'utc')) throw invalid(text, 'never happens');
  return schedule;
}

function fromTokens(text: string, tokens: string[]): Schedule {
  const [first, ...rest] = tokens;
  if (first === 'every') return every(text, rest);
  if (first !== undefined && first in shorthands) {
    if (rest.length === 0) return fromTokens(text, shorthands[first].split(' '));
    if (first === 'minutely' || first === 'hourly' || rest.length > 1 || !rest[0].includes(':'))
      throw invalid(text, `"${first}" takes no more than a time, as in "daily 02:00"`);
    const dayPart = shorthands[first].split(' ').slice(0, -1);
    return fromTokens(text, [...dayPart, rest[0]]);
  }
  let weekdays: Set<number> | null = null;
  let months: Set<number> | null = null;
  let days: Set<number> | null = null;
  let time: { hours: number[]; minutes: number[] } | null = null;
  let i = 0;
  if (tokens[i] && /^[a-z]/.test(tokens[i])) weekdays = parseWeekdays(text, tokens[i++]);
  if (tokens[i]?.includes('-')) ({ months, days } = parseDate(text, tokens[i++]));
  if (tokens[i]?.includes(':')) time = parseTime(text, tokens[i++]);
  if (i < tokens.length)
    throw invalid(
      text,
      `cannot read "${tokens[i]}" (the order is: weekdays, date, time, e.g. "mon..fri 22:30")`,
    );
  return {
    text,
    weekdays,
    months,
    days,
    hours: time?.hours ?? [0],
    minutes: time?.minutes ?? [0],
  };
}

/** `every 15m`, `every 2h`: a step that divides the hour (or day), so every hour (day) looks the same. */
function every(text: string, rest: string[]): Schedule {
  const m = rest.length === 1 ? /^(\d{1,4})(m|min|h)$/.exec(rest[0]) : null;
  if (!m) throw invalid(text, 'write "every 15m" or "every 2h"');
  const n = Number(m[1]);
  const unit = m[2] === 'h' ? 'h' : 'm';
  const whole = unit === 'h' ? 24 : 60;
  if (n < 1 || whole % n !== 0)
    throw invalid(
      text,
      `every ${n}${unit} does not divide ${unit === 'h' ? 'a day' : 'an hour'}; use one of ${divisors(whole).join(', ')}${unit}`,
    );
  const steps = (max: number) => Array.from({ length: max / n }, (_, k) => k * n);
  return {
    text,
    weekdays: null,
    months: null,
    days: null,
    hours: unit === 'h' ? steps(24) : range(0, 23),
    minutes: unit === 'h' ? [0] : steps(60),
  };
}

function divisors(n: number): number[] {
  return range(1, n).filter((d) => n % d === 0);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, k) => from + k);
}

function weekdayOf(text: string, name: string): number {
  const i = weekdayNames.indexOf(name.slice(0, 3));
  const full = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'][i];
  if (i < 0 || !(name.length === 3 || name === full))
    throw invalid(text, `"${name}" is not a weekday (mon, tue, wed, thu, fri, sat, sun)`);
  return i;
}

function parseWeekdays(text: string, token: string): Set<number> {
  const out = new Set<number>();
  for (const item of token.split(',')) {
    const [from, to, more] = item.split('..');
    if (more !== undefined || from === '') throw invalid(text, `cannot read weekdays "${token}"`);
    const a = weekdayOf(text, from);
    if (to === undefined) {
      out.add(a);
      continue;
    }
    // fri..mon wraps over the weekend.
    const b = weekdayOf(text, to);
    for (let d = a; ; d = (d + 1) % 7) {
      out.add(d);
      if (d === b) break;
    }
  }
  return out;
}

function parseDate(text: string, token: string): { months: Set<number> | null; days: Set<number> | null } {
  const parts = token.split('-');
  if (parts.length === 3) {
    if (parts[0] !== '*')
      throw invalid(text, `a year cannot be chosen ("${token}"); write "*-${parts[1]}-${parts[2]}"`);
    parts.shift();
  }
  if (parts.length !== 2) throw invalid(text, `cannot read the date "${token}" (write MONTH-DAY, e.g. *-01)`);
  const months = parseField(text, parts[0], 1, 12, 'month');
  const days = parseField(text, parts[1], 1, 31, 'day');
  return {
    months: months.length === 12 ? null : new Set(months),
    days: days.length === 31 ? null : new Set(days),
  };
}

function parseTime(text: string, token: string): { hours: number[]; minutes: number[] } {
  const parts = token.split(':');
  if (parts.length === 3) {
    if (!/^0{1,2}$/.test(parts[2])) throw invalid(text, 'schedules run at whole minutes: seconds must be 00');
    parts.pop();
  }
  if (parts.length !== 2)
    throw invalid(text, `cannot read the time "${token}" (write HOUR:MINUTE, e.g. 02:30)`);
  return {
    hours: parseField(text, parts[0], 0, 23, 'hour'),
    minutes: parseField(text, parts[1], 0, 59, 'minute'),
  };
}

/** `*`, `N`, `N..M`, `N/STEP`, `*\/STEP`, `N..M/STEP`, and lists of them: the values, sorted. */
function parseField(text: string, spec: string, min: number, max: number, what: string): number[] {
  const out = new Set<number>();
  const num = (s: string): number => {
    if (!/^\d{1,2}$/.test(s)) throw invalid(text, `cannot read the ${what} "${spec}"`);
    const n = Number(s);
    if (n < min || n > max) throw invalid(text, `${what} ${n} is not within ${min}..${max}`);
    return n;
  };
  for (const item of spec.split(',')) {
    const [base, stepText, extra] = item.split('/');
    if (extra !== undefined) throw invalid(text, `cannot read the ${what} "${spec}"`);
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1 || !/^\d+$/.test(stepText ?? '1'))
      throw invalid(text, `cannot read the step of the ${what} "${spec}"`);
    let from: number;
    let to: number;
    if (base === '*') [from, to] = [min, max];
    else if (base.includes('..')) {
      const [a, b, more] = base.split('..');
      if (more !== undefined) throw invalid(text, `cannot read the ${what} "${spec}"`);
      [from, to] = [num(a), num(b)];
      if (from > to) throw invalid(text, `the ${what} range ${base} runs backwards`);
    } else {
      from = num(base);
      // `N/STEP` repeats up to the end of the field, as in systemd.
      to = stepText === undefined ? from : max;
    }
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return [...out].sort((a, b) => a - b);
}

function dayMatches(s: Schedule, f: CalendarFields): boolean {
  return (
    (s.months === null || s.months.has(f.month)) &&
    (s.days === null || s.days.has(f.day)) &&
    (s.weekdays === null || s.weekdays.has(f.weekday))
  );
}

/**
 * Days searched before a schedule is said never to happen: weekdays and dates line up again
 * within 28 years (the 400-year exceptions aside), so `02-29 mon` is found.
 */
const searchDays = 366 * 29;

/**
 * The first instant strictly after `after` the schedule names, or null if none within the
 * years searched. A wall-clock time a DST change skips runs as late after the change as it
 * would have after the gap's start; one it repeats runs once (the first).
 */
export function nextRun(s: Schedule, after: Date, zone: Zone = 'local'): Date | null {
  const start = fieldsOf(after, zone);
  for (let k = 0; k < searchDays; k++) {
    const day = fieldsOf(dateOf(zone, start.year, start.month, start.day + k, 12), zone);
    if (!dayMatches(s, day)) continue;
    for (const hour of s.hours) {
      if (k === 0 && hour < start.hour - 1) continue;
      for (const minute of s.minutes) {
        const at = dateOf(zone, day.year, day.month, day.day, hour, minute);
        if (at.getTime() <= after.getTime()) continue;
        // A time a DST change skips comes out as the same time after the gap (02:30 → 03:30): a
        // backup that day rather than none.
        if (fieldsOf(at, zone).day !== day.day) continue;
        return at;
      }
    }
  }
  return null;
}

/** The next `count` runs after `after`: what `tern backup job show` prints. */
export function nextRuns(s: Schedule, after: Date, count: number, zone: Zone = 'local'): Date[] {
  const out: Date[] = [];
  let from = after;
  while (out.length < count) {
    const at = nextRun(s, from, zone);
    if (!at) break;
    out.push(at);
    from = at;
  }
  return out;
}
