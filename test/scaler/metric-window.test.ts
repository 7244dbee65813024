import { describe, expect, it } from "vitest";
import { MaxWindow, MetricSeries } from "../../scaler/metric-window.ts";

const T0 = 5_000_000;
const at = (s: number) => T0 + s * 1000;

describe("MetricSeries window averages", () => {
  it("averages a full window over all its seconds", () => {
    const m = new MetricSeries();
    for (let s = 0; s < 120; s++) m.record(at(s), s < 60 ? 0 : 6);
    expect(m.average(at(119), 60_000)).toBe(6);
    expect(m.average(at(89), 60_000)).toBe(3);
  });

  it("averages a partial window over the seconds that exist", () => {
    const m = new MetricSeries();
    m.record(at(0), 4);
    m.record(at(1), 8);
    expect(m.average(at(1), 60_000)).toBe(6);
  });

  it("counts seconds without a sample between two samples as zero", () => {
    const m = new MetricSeries();
    m.record(at(0), 9);
    m.record(at(2), 9);
    expect(m.average(at(2), 60_000)).toBe(6);
  });

  it("leaves out the seconds after the last sample", () => {
    const m = new MetricSeries();
    for (let s = 0; s < 10; s++) m.record(at(s), 5);
    expect(m.average(at(20), 60_000)).toBe(5);
  });

  it("is 0 once the last sample is a whole window old", () => {
    const m = new MetricSeries();
    m.record(at(0), 5);
    expect(m.average(at(59), 60_000)).toBe(5);
    expect(m.average(at(60), 60_000)).toBe(0);
  });

  it("restarts the partial window after a gap longer than the window", () => {
    const m = new MetricSeries();
    m.record(at(0), 100);
    m.record(at(10), 4);
    // The 6 s window: the gap of 10 s resets it, so only the last second counts.
    expect(m.average(at(10), 6_000)).toBe(4);
    // The 60 s window spans the gap: 11 seconds, 104 in total.
    expect(m.average(at(10), 60_000)).toBeCloseTo(104 / 11);
  });

  it("rejects negative and non-finite samples", () => {
    const m = new MetricSeries();
    expect(() => m.record(T0, -1)).toThrow(RangeError);
    expect(() => m.record(T0, Number.NaN)).toThrow(RangeError);
  });

  it("keeps only the retained history", () => {
    const m = new MetricSeries({ retainMs: 10_000 });
    m.record(at(0), 50);
    for (let s = 20; s < 30; s++) m.record(at(s), 0);
    expect(m.average(at(29), 60_000)).toBe(0);
  });
});

describe("MaxWindow", () => {
  it("returns the maximum over the trailing window and forgets older values", () => {
    const w = new MaxWindow(6_000, 2_000);
    w.record(0, 5);
    w.record(2_000, 1);
    w.record(4_000, 2);
    expect(w.current()).toBe(5);
    w.record(6_000, 1);
    expect(w.current()).toBe(2);
  });

  it("keeps the larger of two values in the same bucket", () => {
    const w = new MaxWindow(4_000, 2_000);
    w.record(0, 3);
    w.record(500, 1);
    expect(w.current()).toBe(3);
  });
});
