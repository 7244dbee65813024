/** parseRevisionCounters: the scaler's one reader of what gateways publish (src/traffic/counters.ts). */
import { describe, expect, test } from "vitest";
import { RevisionStats } from "../../../gateway/counters.ts";
import { parseRevisionCounters } from "../../../src/traffic/counters.ts";

describe("parseRevisionCounters", () => {
  test("reads back exactly what a gateway's sample publishes", () => {
    const stats = new RevisionStats();
    stats.begin();
    const sample = stats.sample({ "inst-1": 1 });
    expect(parseRevisionCounters(JSON.stringify(sample))).toEqual(sample);
  });

  test("refuses text that is not JSON, another format version, or a missing number", () => {
    const sample = new RevisionStats().sample({});
    const { concurrencyMs, ...missing } = sample;
    expect(parseRevisionCounters("{not json")).toBeUndefined();
    expect(parseRevisionCounters(JSON.stringify({ ...sample, v: 2 }))).toBeUndefined();
    expect(parseRevisionCounters(JSON.stringify(missing))).toBeUndefined();
    expect(parseRevisionCounters(JSON.stringify({ ...sample, queued: "3" }))).toBeUndefined();
  });

  test("counters without the fields the scaler does not read (completed, instances) still parse", () => {
    const { completed, instances, ...rest } = new RevisionStats().sample({});
    expect(parseRevisionCounters(JSON.stringify(rest))).toEqual({
      ...rest,
      completed: 0,
      instances: {},
    });
  });
});
