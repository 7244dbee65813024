/**
 * A new revision is placed when it is created, not at the scaler's next
 * periodic pass: with decisions every 60 s, a worker service still becomes
 * Ready within seconds of its creation.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/server.ts";
import type { RunningScaler } from "../../scaler/server.ts";
import { startTestApi, type TestApi } from "../support/api.ts";
import { uniquePrefix } from "../support/redis.ts";
import {
  SHORT_AUTOSCALER,
  startTestAgent,
  startTestScaler,
  waitFor,
  workerService,
} from "./support.ts";

const prefix = uniquePrefix("scaler-create");
let api: TestApi;
let agent: RunningAgent;
let scaler: RunningScaler;

beforeAll(async () => {
  api = await startTestApi({ prefix });
  agent = await startTestAgent(prefix, "create-a");
  scaler = await startTestScaler(prefix, {
    autoscaler: { ...SHORT_AUTOSCALER, tickInterval: "60s" },
    // Nor does a resync come to the rescue.
    resyncIntervalMs: 60_000,
  });
  await scaler.whenLeading();
  // The first pass of a new leadership runs at once; wait until it is done.
  await scaler.tickNow();
});

afterAll(async () => {
  await scaler?.stop();
  await agent?.stop();
  await api?.close();
});

/** Create a worker service and wait for its first revision to be Ready; ms taken. */
async function createdToReady(name: string): Promise<number> {
  const created = Date.now();
  const r = await api.call("POST", api.ns("services"), workerService(name));
  expect(r.status, r.text).toBe(201);
  const ready = await waitFor(
    `${name}-00001 Ready`,
    async () => {
      const rev = (await api.call("GET", api.ns("revisions", `${name}-00001`))).json as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      return rev.status?.conditions?.find((c) => c.type === "Ready")?.status === "True"
        ? Date.now()
        : undefined;
    },
    // Well below the 60 s of the periodic pass and resync.
    10_000,
  );
  return ready - created;
}

describe("a new revision", () => {
  it("is placed and Ready long before the next periodic pass", async () => {
    // The first one may also ride on the pass that ends a new leader's agent
    // grace; the second comes when no timer of the scaler is due for 60 s.
    const first = await createdToReady("first");
    const second = await createdToReady("second");
    console.log(`created -> Ready: ${first} ms, then ${second} ms (decisions every 60 s)`);
  });
});
