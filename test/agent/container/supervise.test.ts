/** supervise(): restart with exponential backoff, against the real Docker engine. */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { type SupervisorStatus, supervise } from "../../../agent/container/supervise.ts";
import { missingImage } from "../../support/images.ts";
import { createHarness, get, type Harness, waitFor } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness("sv");
});
afterEach(() => h.cleanup());
afterAll(() => h?.cleanup());

describe("supervise", () => {
  test("restarts a crashed instance after a backoff and reports each status", async () => {
    const rt = h.runtime();
    const statuses: SupervisorStatus[] = [];
    const spec = h.spec({}, { TARGET: "again" });
    const sup = supervise(rt, spec, { initialBackoffMs: 50, onStatus: (s) => statuses.push(s) });
    const first = await waitFor("first ready", () =>
      sup.status.state === "ready" ? sup.status : undefined,
    );
    await get(`http://127.0.0.1:${first.instance.port}/crash?code=7`).catch(() => {});
    const second = await waitFor("second ready", () =>
      sup.status.state === "ready" && sup.status.attempt === 2 ? sup.status : undefined,
    );
    expect(second.instance.containerId).not.toBe(first.instance.containerId);
    expect((await get(`http://127.0.0.1:${second.instance.port}/`)).body).toBe("Hello again!\n");
    expect(statuses.map((s) => s.state)).toEqual([
      "starting",
      "ready",
      "backoff",
      "starting",
      "ready",
    ]);
    expect(statuses[2]).toMatchObject({
      state: "backoff",
      restartInMs: 50,
      failure: { reason: "ExitCode7" },
    });

    await sup.stop({ graceSeconds: 5 });
    expect(sup.status).toEqual({ state: "stopped" });
    expect(await h.containers()).toEqual([]);
  });

  test("doubles the delay up to the maximum while the container keeps exiting on start", async () => {
    const rt = h.runtime();
    const delays: number[] = [];
    const sup = supervise(rt, h.spec({}, { EXIT_ON_START: "2" }), {
      initialBackoffMs: 20,
      maxBackoffMs: 80,
      onStatus: (s) => {
        if (s.state === "backoff") {
          delays.push(s.restartInMs);
          expect(s.failure.reason).toBe("ExitCode2");
        }
      },
    });
    await waitFor("four restarts", () => delays.length >= 4, 20_000);
    await sup.stop();
    expect(delays.slice(0, 4)).toEqual([20, 40, 80, 80]);
    expect(await h.containers()).toEqual([]);
  });

  test("keeps a missing image in backoff with its readable reason", async () => {
    const rt = h.runtime();
    const image = missingImage();
    const sup = supervise(rt, h.spec({ container: { image } }), { initialBackoffMs: 1_000 });
    const status = await waitFor("backoff", () =>
      sup.status.state === "backoff" ? sup.status : undefined,
    );
    expect(status.failure).toEqual({
      reason: "ImageNotFound",
      message: expect.stringMatching(
        /^image \S+ not found locally and its registry docker\.io is not in images\.registries/,
      ),
    });
    await sup.stop();
    expect(sup.status.state).toBe("stopped");
  });
});
