/**
 * What a gateway publishes for the scaler (gateway/counters.ts): only
 * revisions with traffic. A revision's activity ends with one quiet sample
 * (nothing in flight), then its field goes, which the scaler reads as no load;
 * so thousands of idle services cost no Redis work, and a revision that comes
 * back is published with a window that starts when it came back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/server.ts";
import type { RevisionCounters } from "../../src/traffic/keys.ts";
import { gatewayKeys } from "../../src/traffic/keys.ts";
import { uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";
import { type Backend, hit, host, startBackend, startTestGateway, TestScaler } from "./support.ts";

const prefix = uniquePrefix("gw-counters");
const scaler = new TestScaler(prefix);
const key = gatewayKeys(prefix).metrics("gw-counters");
let backend: Backend;
let gw: Gateway;

beforeAll(async () => {
  backend = await startBackend("b");
  await scaler.agent();
  for (const svc of ["busy", "idle1", "idle2"]) {
    await scaler.route("default", svc, [{ revision: `${svc}-00001`, percent: 100 }]);
    await scaler.endpoint("default", `${svc}-00001`, backend);
  }
  gw = await startTestGateway(prefix, { id: "gw-counters", publishPeriodMs: 100 });
  await waitFor("routes loaded", async () => (await hit(gw.url, host("busy"))).status === 200);
});

afterAll(async () => {
  await gw?.close(500);
  await backend?.close();
  await scaler.close();
});

const field = async (ref: string): Promise<RevisionCounters | undefined> => {
  const json = await scaler.redis.hget(key, ref);
  return json ? (JSON.parse(json) as RevisionCounters) : undefined;
};

/** Wait until the gateway has published `n` more periods (its `_gateway` field changes each one). */
async function publishPeriods(n: number): Promise<void> {
  const seen = new Set<string>();
  await waitFor(
    `${n} publish periods`,
    async () => {
      const beat = await scaler.redis.hget(key, "_gateway");
      if (beat) seen.add(beat);
      return seen.size > n;
    },
    10_000,
    10,
  );
}

describe("published counters", () => {
  it("publishes a revision with traffic, ends with a quiet sample, then removes it; idle ones never appear", async () => {
    const seen: RevisionCounters[] = [];
    for (let i = 0; i < 3; i++) expect((await hit(gw.url, host("busy"))).status).toBe(200);
    // Watch the field until it is gone: its last value says nothing is in flight.
    await waitFor(
      "the quiet revision's field removed",
      async () => {
        const c = await field("default/busy-00001");
        if (c) seen.push(c);
        return c === undefined && seen.length > 0;
      },
      10_000,
      10,
    );
    const last = seen.at(-1) as RevisionCounters;
    expect(last.requests).toBeGreaterThanOrEqual(4);
    expect(last.inflight).toBe(0);
    expect(last.windowRequests).toBe(0);
    const fields = await scaler.redis.hkeys(key);
    expect(fields).not.toContain("default/idle1-00001");
    expect(fields).not.toContain("default/idle2-00001");
    expect(fields).toContain("_gateway");
  });

  it("publishes a revision again when traffic returns, over a window that starts then", async () => {
    await waitFor(
      "busy not published",
      async () => (await field("default/busy-00001")) === undefined,
    );
    // Stay quiet for several periods: the next window must not stretch back over them.
    await publishPeriods(6);
    expect((await hit(gw.url, host("busy"))).status).toBe(200);
    const back = await waitFor("busy published again", () => field("default/busy-00001"));
    expect(back.windowRequests).toBe(1);
    expect(back.periodMs).toBeLessThan(400);
  });
});
