/**
 * Go's time.ParseDuration, which is what Knative uses for every duration
 * annotation and setting ("60s", "1m30s", "1.5h", "500ms"). Plain numbers are
 * rejected (except "0"), as in Go; the message suggests the seconds spelling.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const WHOLE = /^[-+]?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/;
const PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;

export const DURATION_FORMAT = 'a Go duration such as "60s", "1m30s", "1h" or "500ms"';

/** Milliseconds, or undefined when `text` is not a Go duration. */
export function parseGoDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === "0" || s === "+0" || s === "-0") return 0;
  if (!WHOLE.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return s.startsWith("-") ? -ms : ms;
}

/** The problem with `text` as a duration, with a hint when it is a bare number. */
export function durationProblem(text: string): string {
  const bare = /^\s*\d+(\.\d+)?\s*$/.test(text);
  return (
    `"${text}" is not a duration; use ${DURATION_FORMAT}` +
    (bare ? ` (did you mean "${text.trim()}s"?)` : "")
  );
}

/** `90000` -> "1m30s" (for messages). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s ? `${s}s` : ""}`;
}
