/**
 * A time series of 1-second buckets and its window averages, the way
 * Knative's timed float buckets compute them. Pure: time is an argument.
 *
 * - Several samples landing in the same bucket are averaged (one value per
 *   second however often the I/O loop samples).
 * - A window average runs over the buckets from the later of (window start,
 *   first write) to the last write: a series younger than the window averages
 *   over the seconds that exist, and seconds after the last write (no sample
 *   yet) are left out rather than counted as zero. Seconds *between* writes
 *   that have no sample count as zero.
 * - The first write is reset when a write follows a gap longer than the
 *   window, so a revision idle for a whole window starts a fresh partial window.
 * - When the last write is a whole window old, the average is 0.
 *
 * The I/O loop should therefore record every tick, 0 included: "no sample"
 * means "unknown", not "idle".
 */

export const BUCKET_MS = 1_000;

interface Bucket {
  /** floor(time / bucketMs). */
  idx: number;
  sum: number;
  count: number;
}

export interface MetricSeriesOptions {
  /** Bucket width (default 1 s). */
  bucketMs?: number;
  /** History kept; windows longer than this see only this much (default 1 h, Knative's longest window). */
  retainMs?: number;
}

export class MetricSeries {
  readonly bucketMs: number;
  #retainMs: number;
  /** Ascending by idx. */
  #buckets: Bucket[] = [];

  constructor(options: MetricSeriesOptions = {}) {
    this.bucketMs = options.bucketMs ?? BUCKET_MS;
    this.#retainMs = options.retainMs ?? 3_600_000;
    if (!(this.bucketMs > 0)) throw new RangeError(`bucketMs must be > 0 (got ${this.bucketMs})`);
  }

  /** Shrink or grow the history kept (e.g. to the current stable window). */
  retain(ms: number): void {
    this.#retainMs = Math.max(this.bucketMs, ms);
    const last = this.#buckets.at(-1);
    if (last) this.#prune(last.idx);
  }

  /** Add one sample taken at `nowMs`. Negative or non-finite values are a caller bug. */
  record(nowMs: number, value: number): void {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`metric sample must be a finite number >= 0 (got ${value})`);
    }
    const idx = Math.floor(nowMs / this.bucketMs);
    const b = this.#buckets;
    const last = b.at(-1);
    if (last === undefined || idx > last.idx) {
      b.push({ idx, sum: value, count: 1 });
      this.#prune(idx);
      return;
    }
    // Late sample: find its bucket (rare; the series is almost always appended to).
    let i = b.length - 1;
    while (i >= 0 && b[i]!.idx > idx) i--;
    const at = b[i];
    if (at !== undefined && at.idx === idx) {
      at.sum += value;
      at.count++;
    } else if (idx > last.idx - this.#retainBuckets()) {
      b.splice(i + 1, 0, { idx, sum: value, count: 1 });
    }
  }

  /** True when nothing was ever recorded (or all of it aged out). */
  get empty(): boolean {
    return this.#buckets.length === 0;
  }

  /** Average over the window ending at `nowMs` (see the module comment for partial windows). */
  average(nowMs: number, windowMs: number): number {
    const len = Math.max(1, Math.ceil(windowMs / this.bucketMs));
    const nowIdx = Math.floor(nowMs / this.bucketMs);
    const b = this.#buckets;
    // The last write at or before now (samples from the future are not counted yet).
    let lastPos = b.length - 1;
    while (lastPos >= 0 && b[lastPos]!.idx > nowIdx) lastPos--;
    if (lastPos < 0) return 0;
    const lastIdx = b[lastPos]!.idx;
    if (nowIdx - lastIdx >= len) return 0;

    const windowStart = nowIdx - len + 1;
    let sum = 0;
    let firstIdx = lastIdx;
    for (let i = lastPos; i >= 0; i--) {
      const cur = b[i]!;
      if (cur.idx < windowStart) break;
      // A gap longer than the window before this bucket restarts the series here.
      const prev = b[i - 1];
      sum += cur.sum / cur.count;
      firstIdx = cur.idx;
      if (prev !== undefined && (cur.idx - prev.idx) * this.bucketMs > windowMs) break;
      if (prev === undefined) break;
      if (prev.idx < windowStart) {
        firstIdx = windowStart;
        break;
      }
    }
    return sum / (lastIdx - firstIdx + 1);
  }

  #retainBuckets(): number {
    return Math.max(1, Math.ceil(this.#retainMs / this.bucketMs));
  }

  #prune(latestIdx: number): void {
    const keepFrom = latestIdx - this.#retainBuckets() + 1;
    let n = 0;
    while (n < this.#buckets.length && this.#buckets[n]!.idx < keepFrom) n++;
    if (n > 0) this.#buckets.splice(0, n);
  }
}

/**
 * The maximum of values recorded over a trailing window, in buckets of
 * `granularityMs` (Knative's max.TimeWindow, used for the scale-down delay).
 * The window trails the latest recorded bucket.
 */
export class MaxWindow {
  readonly #size: number;
  readonly #granularityMs: number;
  #entries: { idx: number; value: number }[] = [];

  constructor(windowMs: number, granularityMs: number) {
    if (!(granularityMs > 0))
      throw new RangeError(`granularityMs must be > 0 (got ${granularityMs})`);
    this.#granularityMs = granularityMs;
    this.#size = Math.max(1, Math.ceil(windowMs / granularityMs));
  }

  record(nowMs: number, value: number): void {
    const idx = Math.floor(nowMs / this.#granularityMs);
    const e = this.#entries;
    const last = e.at(-1);
    if (last !== undefined && last.idx === idx) last.value = Math.max(last.value, value);
    else if (last === undefined || idx > last.idx) e.push({ idx, value });
    const latest = e.at(-1)!.idx;
    while (e.length > 0 && e[0]!.idx <= latest - this.#size) e.shift();
  }

  /** The max over the window, or undefined when nothing was recorded. */
  current(): number | undefined {
    if (this.#entries.length === 0) return undefined;
    return Math.max(...this.#entries.map((x) => x.value));
  }
}
