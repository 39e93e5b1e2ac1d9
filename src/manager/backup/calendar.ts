/**
 * Calendar fields of an instant in the zone schedules and retention read it in: the manager's
 * local time (as cron and Proxmox do: "daily 02:00" is 02:00 where the operator is) or UTC.
 * One place, so a schedule and the retention that prunes its backups agree on what a day is.
 */
export type Zone = 'local' | 'utc';

export interface CalendarFields {
  year: number;
  /** 1..12 */
  month: number;
  /** 1..31 */
  day: number;
  /** 0 = Sunday … 6 = Saturday */
  weekday: number;
  hour: number;
  minute: number;
}

export function fieldsOf(at: Date, zone: Zone): CalendarFields {
  if (zone === 'utc') {
    return {
      year: at.getUTCFullYear(),
      month: at.getUTCMonth() + 1,
      day: at.getUTCDate(),
      weekday: at.getUTCDay(),
      hour: at.getUTCHours(),
      minute: at.getUTCMinutes(),
    };
  }
  return {
    year: at.getFullYear(),
    month: at.getMonth() + 1,
    day: at.getDate(),
    weekday: at.getDay(),
    hour: at.getHours(),
    minute: at.getMinutes(),
  };
}

/** The instant of a wall-clock time in the zone; a day or month past its end rolls over, as Date does. */
export function dateOf(zone: Zone, year: number, month: number, day: number, hour = 0, minute = 0): Date {
  return zone === 'utc'
    ? new Date(Date.UTC(year, month - 1, day, hour, minute))
    : new Date(year, month - 1, day, hour, minute);
}

/** ISO 8601 week-numbering year and week (weeks start on Monday; week 1 holds the year's first Thursday). */
export function isoWeek(f: Pick<CalendarFields, 'year' | 'month' | 'day'>): { year: number; week: number } {
  // Pure date arithmetic in UTC: the wall-clock date is all that matters here.
  const d = new Date(Date.UTC(f.year, f.month - 1, f.day));
  const weekday = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const year = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return { year, week };
}
