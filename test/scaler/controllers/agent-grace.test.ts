/**
 * The grace after a takeover or a Redis reconnect, on a simulated clock: how
 * long agents without a record are presumed alive, the pass it schedules for
 * its end, and one log line per grace however many passes it holds.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AgentGrace } from "../../../scaler/controllers/agent-grace.ts";
import { MAX_RECONNECT_DELAY_MS } from "../../../src/redis/connect.ts";

const T0 = 1_000_000_000;
const GRACE_MS = 5_000;
const TOTAL = GRACE_MS + MAX_RECONNECT_DELAY_MS;

function setup() {
  let now = T0;
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: "warn" },
    new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    }),
  );
  const onEnd = vi.fn();
  const grace = new AgentGrace({ agentGraceMs: GRACE_MS, logger, onEnd, now: () => now });
  return {
    grace,
    onEnd,
    lines,
    advance(ms: number) {
      now += ms;
      vi.advanceTimersByTime(ms);
    },
  };
}

describe("AgentGrace", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("presumes missing agents alive for agentGraceMs plus one reconnect step, then lets a pass prune", () => {
    const { grace, onEnd, advance } = setup();
    expect(grace.ended()).toBe(true); // never begun: nothing to wait for
    grace.begin("leadership starts");
    expect(grace.ended()).toBe(false);
    advance(TOTAL - 1);
    expect(grace.ended()).toBe(false);
    advance(1);
    expect(grace.ended()).toBe(true);
    // The pass that prunes runs just after the grace, not at the next tick.
    expect(onEnd).not.toHaveBeenCalled();
    advance(1);
    expect(onEnd).toHaveBeenCalledTimes(1);
  });

  it("a new grace (Redis back) restarts the wait and replaces the pending end", () => {
    const { grace, onEnd, advance } = setup();
    grace.begin("leadership starts");
    advance(TOTAL - 100);
    grace.begin("redis reconnected");
    advance(200);
    expect(grace.ended()).toBe(false);
    expect(onEnd).not.toHaveBeenCalled();
    advance(TOTAL);
    expect(grace.ended()).toBe(true);
    expect(onEnd).toHaveBeenCalledTimes(1);
  });

  it("says it holds the fleet once per grace, with the reason and the time left", () => {
    const { grace, lines, advance } = setup();
    grace.begin("leadership starts");
    advance(1_000);
    grace.holding(["a1"]);
    grace.holding(["a1"]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      missing: ["a1"],
      reason: "leadership starts",
      waitMs: TOTAL - 1_000,
    });
    grace.begin("redis reconnected");
    grace.holding(["a2"]);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ missing: ["a2"], reason: "redis reconnected", waitMs: TOTAL });
  });

  it("stop cancels the pass scheduled for the end", () => {
    const { grace, onEnd, advance } = setup();
    grace.begin("leadership starts");
    grace.stop();
    advance(2 * TOTAL);
    expect(onEnd).not.toHaveBeenCalled();
  });
});
