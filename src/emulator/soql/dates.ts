// Date literals (SOQL and SOSL Reference, "Date Formats and Date Literals"), evaluated in the org's
// time zone, which the emulator fixes to UTC. Each literal is a half-open range of whole days
// [startDay, endDay) counted from 1970-01-01; weeks start on Sunday (en_US locale).

const DAY_MS = 86_400_000;

export interface DayRange {
  startDay: number;
  endDay: number;
}

function dayOf(y: number, m0: number, d: number): number {
  return Math.floor(Date.UTC(y, m0, d) / DAY_MS);
}

export function dateLiteralRange(name: string, n: number | undefined, now: Date): DayRange {
  const today = Math.floor(now.getTime() / DAY_MS);
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  // 1970-01-01 was a Thursday: day 0 -> weekday 4 (Sunday = 0)
  const weekStart = today - ((today + 4) % 7);
  const k = n ?? 0;
  switch (name) {
    case 'YESTERDAY':
      return { startDay: today - 1, endDay: today };
    case 'TODAY':
      return { startDay: today, endDay: today + 1 };
    case 'TOMORROW':
      return { startDay: today + 1, endDay: today + 2 };
    case 'LAST_WEEK':
      return { startDay: weekStart - 7, endDay: weekStart };
    case 'THIS_WEEK':
      return { startDay: weekStart, endDay: weekStart + 7 };
    case 'NEXT_WEEK':
      return { startDay: weekStart + 7, endDay: weekStart + 14 };
    case 'LAST_MONTH':
      return { startDay: dayOf(y, m - 1, 1), endDay: dayOf(y, m, 1) };
    case 'THIS_MONTH':
      return { startDay: dayOf(y, m, 1), endDay: dayOf(y, m + 1, 1) };
    case 'NEXT_MONTH':
      return { startDay: dayOf(y, m + 1, 1), endDay: dayOf(y, m + 2, 1) };
    case 'THIS_YEAR':
      return { startDay: dayOf(y, 0, 1), endDay: dayOf(y + 1, 0, 1) };
    case 'LAST_YEAR':
      return { startDay: dayOf(y - 1, 0, 1), endDay: dayOf(y, 0, 1) };
    case 'NEXT_YEAR':
      return { startDay: dayOf(y + 1, 0, 1), endDay: dayOf(y + 2, 0, 1) };
    // "LAST_N_DAYS:n ... starts with the current day and continues for the past n days", so it
    // includes today: n + 1 days in all. LAST_90_DAYS is LAST_N_DAYS:90.
    case 'LAST_90_DAYS':
      return { startDay: today - 90, endDay: today + 1 };
    case 'LAST_N_DAYS':
      return { startDay: today - k, endDay: today + 1 };
    // "NEXT_N_DAYS:n ... starts 00:00:00 of the next day and continues for the next n days"
    case 'NEXT_90_DAYS':
      return { startDay: today + 1, endDay: today + 91 };
    case 'NEXT_N_DAYS':
      return { startDay: today + 1, endDay: today + 1 + k };
    // "N_DAYS_AGO:n starts at 00:00:00 of the day n days before the current day and continues for 24 hours"
    case 'N_DAYS_AGO':
      return { startDay: today - k, endDay: today - k + 1 };
    default:
      throw new Error(`unknown date literal ${name}`);
  }
}

export function dayToDate(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

export function dayToMs(day: number): number {
  return day * DAY_MS;
}

/** Salesforce's REST dateTime format: 2026-11-24T06:48:57.000+0000 */
export function formatDateTime(ms: number): string {
  // records come in bursts sharing a second: remember the last one formatted
  if (ms === lastMs) return lastText;
  lastText = new Date(ms).toISOString().replace('Z', '+0000');
  lastMs = ms;
  return lastText;
}
let lastMs = NaN;
let lastText = '';
