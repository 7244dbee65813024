/** Revision health onto conditions, propagated to Configuration, Route and Service (real Redis store). */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  applyRevisionHealth,
  deriveRevisionHealth,
  type RevisionHealth,
  reportRevisionHealth,
} from "../../../src/control/revision-health.ts";
import type { InstanceStatus } from "../../../src/fleet/types.ts";
import type { Revision } from "../../../src/model/types.ts";
import { createRedisStore, type RedisStore } from "../../../src/store/index.ts";
import { serviceManifest } from "../../support/fixtures.ts";
import { redisUrl, uniquePrefix } from "../../support/redis.ts";
import { deployService } from "../../support/store.ts";

const ctx = { domain: "example.test", scheme: "http" };
let store: RedisStore;

beforeAll(async () => {
  store = await createRedisStore({ url: redisUrl(), prefix: uniquePrefix("health") });
});
afterAll(() => store?.close());

const deploy = (name: string, target = "A", mode: "create" | "replace" = "create") =>
  deployService(
    store,
    serviceManifest(name, { image: "example/hello:1", env: { TARGET: target } }),
    { mode, domain: ctx.domain },
  );

const cond = (r: { status: { conditions?: { type: string }[] } } | undefined, type: string) =>
  r?.status.conditions?.find((c) => c.type === type) as
    | { status: string; reason?: string; message?: string }
    | undefined;

const failure = (reason: string, message: string): RevisionHealth => ({
  ready: false,
  condition: reason === "ImageNotFound" ? "ResourcesAvailable" : "ContainerHealthy",
  reason,
  message,
});

describe("reportRevisionHealth", () => {
  test("ready makes the revision and configuration ready; the route waits for its tables to be published", async () => {
    const rev = await deploy("ok");
    expect(await reportRevisionHealth(store, "default", rev, { ready: true }, ctx)).toEqual({
      outcome: "changed",
    });
    const r = await store.get("revisions", "default", rev);
    for (const t of ["Ready", "ContainerHealthy", "ResourcesAvailable"]) {
      expect(cond(r, t)?.status).toBe("True");
    }
    const config = await store.get("configurations", "default", "ok");
    expect(config?.status.latestReadyRevisionName).toBe(rev);
    expect(cond(config, "Ready")?.status).toBe("True");
    const route = await store.get("routes", "default", "ok");
    expect(route?.status.traffic?.[0]?.revisionName).toBe(rev);
    // Nothing published the routing tables (that is the scaler's job): not Ready yet.
    expect(cond(route, "Ready")).toMatchObject({
      status: "Unknown",
      reason: "IngressNotConfigured",
    });
    const service = await store.get("services", "default", "ok");
    expect(cond(service, "ConfigurationsReady")?.status).toBe("True");
    expect(cond(service, "RoutesReady")).toMatchObject({
      status: "Unknown",
      reason: "IngressNotConfigured",
    });
    expect(cond(service, "Ready")?.status).toBe("Unknown");
    expect(service?.status.latestReadyRevisionName).toBe(rev);
  });

  test("a failure before any readiness makes Ready False with the same reason and message, up to the service", async () => {
    const rev = await deploy("bad");
    await reportRevisionHealth(
      store,
      "default",
      rev,
      failure("ImageNotFound", "image x not found locally"),
      ctx,
    );
    const r = await store.get("revisions", "default", rev);
    expect(cond(r, "ResourcesAvailable")).toMatchObject({
      status: "False",
      reason: "ImageNotFound",
    });
    expect(cond(r, "Ready")).toMatchObject({
      status: "False",
      reason: "ImageNotFound",
      message: "image x not found locally",
    });
    const service = await store.get("services", "default", "bad");
    expect(cond(service, "Ready")?.status).toBe("False");
    expect(cond(service, "ConfigurationsReady")?.message).toContain("image x not found locally");
  });

  test("an image pull under way shows on ResourcesAvailable and Ready (Unknown) until the first instance is ready", async () => {
    const rev = await deploy("pulling");
    const pulling: RevisionHealth = {
      ready: "pending",
      reason: "PullingImage",
      message: "pulling image r.example/app:1: 1 of 3 layers, 2.0 of 9.0 MB",
    };
    await reportRevisionHealth(store, "default", rev, pulling, ctx);
    const r = await store.get("revisions", "default", rev);
    for (const type of ["ResourcesAvailable", "Ready"]) {
      expect(cond(r, type)).toMatchObject({
        status: "Unknown",
        reason: "PullingImage",
        message: pulling.message,
      });
    }
    const service = await store.get("services", "default", "pulling");
    expect(cond(service, "Ready")?.status).toBe("Unknown");
    await reportRevisionHealth(store, "default", rev, { ready: true }, ctx);
    expect(cond(await store.get("revisions", "default", rev), "Ready")?.status).toBe("True");
    // Once it served, a pull for another instance does not make it look unready.
    const again = await reportRevisionHealth(store, "default", rev, pulling, ctx);
    expect(again).toEqual({ outcome: "unchanged" });
  });

  test("a failure after readiness shows on ContainerHealthy only; Ready stays True", async () => {
    const rev = await deploy("flaky");
    await reportRevisionHealth(store, "default", rev, { ready: true }, ctx);
    await reportRevisionHealth(
      store,
      "default",
      rev,
      failure("ExitCode3", "container exited with code 3"),
      ctx,
    );
    const r = await store.get("revisions", "default", rev);
    expect(cond(r, "ContainerHealthy")).toMatchObject({ status: "False", reason: "ExitCode3" });
    expect(cond(r, "Ready")?.status).toBe("True");
  });

  test("a ready report is held while a failure on a serving revision is younger than the hold, then clears it", async () => {
    const rev = await deploy("held");
    await reportRevisionHealth(store, "default", rev, { ready: true }, ctx);
    await reportRevisionHealth(store, "default", rev, failure("WorkerStalled", "stalled"), ctx);
    const failedAt = Date.parse(
      (((await store.get("revisions", "default", rev)) as Revision).status.conditions ?? []).find(
        (c) => c.type === "ContainerHealthy",
      )?.lastTransitionTime as string,
    );
    const early = await store.transact((tx) =>
      applyRevisionHealth(
        tx,
        "default",
        rev,
        { ready: true },
        {
          ...ctx,
          holdFailureMs: 10_000,
          now: new Date(failedAt + 4_000),
        },
      ),
    );
    expect(early.value).toEqual({ outcome: "held", retryInMs: 6_000 });
    expect(early.resourceVersion).toBe("");
    const late = await store.transact((tx) =>
      applyRevisionHealth(
        tx,
        "default",
        rev,
        { ready: true },
        {
          ...ctx,
          holdFailureMs: 10_000,
          now: new Date(failedAt + 10_001),
        },
      ),
    );
    expect(late.value).toEqual({ outcome: "changed" });
    expect(cond(await store.get("revisions", "default", rev), "ContainerHealthy")?.status).toBe(
      "True",
    );
  });

  test("reporting what the revision already says writes nothing", async () => {
    const rev = await deploy("same");
    await reportRevisionHealth(store, "default", rev, { ready: true }, ctx);
    const before = (await store.get("revisions", "default", rev))?.metadata.resourceVersion;
    const again = await store.transact((tx) =>
      applyRevisionHealth(tx, "default", rev, { ready: true }, ctx),
    );
    expect(again.value).toEqual({ outcome: "unchanged" });
    expect(again.resourceVersion).toBe("");
    expect((await store.get("revisions", "default", rev))?.metadata.resourceVersion).toBe(before);
  });

  test("latestReadyRevisionName moves to the newest ready revision and never back", async () => {
    const a = await deploy("roll", "A");
    await reportRevisionHealth(store, "default", a, { ready: true }, ctx);
    const latest = async () =>
      (await store.get("configurations", "default", "roll"))?.status.latestReadyRevisionName;
    expect(await latest()).toBe(a);
    const b = await deploy("roll", "B", "replace");
    const c = await deploy("roll", "C", "replace");
    expect(await latest()).toBe(a);
    await reportRevisionHealth(store, "default", c, { ready: true }, ctx);
    expect(await latest()).toBe(c);
    // An older revision becoming ready later does not take over.
    await reportRevisionHealth(store, "default", b, { ready: true }, ctx);
    expect(await latest()).toBe(c);
  });

  test("a configuration whose name prefixes another's does not take that one's revisions", async () => {
    await deploy("pre");
    const other = await deploy("pre-x");
    await reportRevisionHealth(store, "default", other, { ready: true }, ctx);
    expect(
      (await store.get("configurations", "default", "pre-x"))?.status.latestReadyRevisionName,
    ).toBe(other);
    const pre = await store.get("configurations", "default", "pre");
    expect(pre?.status.latestReadyRevisionName).toBeUndefined();
    expect(cond(pre, "Ready")?.status).toBe("Unknown");
  });

  test("a health change does not conflict with other services' revisions changing status meanwhile", async () => {
    const mine = await deploy("calm");
    const busy = await deploy("busy");
    let attempts = 0;
    await store.transact(async (tx) => {
      attempts++;
      const out = await applyRevisionHealth(
        tx,
        "default",
        mine,
        { ready: true },
        {
          ...ctx,
          now: new Date(),
        },
      );
      expect(out.outcome).toBe("changed");
      // Another revision in the namespace changes status before this commits.
      if (attempts === 1) await reportRevisionHealth(store, "default", busy, { ready: true }, ctx);
    });
    expect(attempts).toBe(1);
    expect(cond(await store.get("revisions", "default", busy), "Ready")?.status).toBe("True");
    expect(
      (await store.get("configurations", "default", "calm"))?.status.latestReadyRevisionName,
    ).toBe(mine);
  });

  test("a revision that is gone is reported missing", async () => {
    expect(
      await reportRevisionHealth(store, "default", "nosuch-00001", { ready: true }, ctx),
    ).toEqual({
      outcome: "missing",
    });
  });
});

describe("deriveRevisionHealth (pure: the instance reports of live agents)", () => {
  const NOW = 1_000_000;
  const base = { namespace: "default", revision: "r-00001", runtime: "container" as const };
  const inst = (
    id: string,
    agentId: string,
    fields: Partial<InstanceStatus> & Pick<InstanceStatus, "phase">,
  ): InstanceStatus => ({ id, agentId, restarts: 0, since: NOW - 5_000, ...base, ...fields });
  const crash = (at: number) => ({
    condition: "ContainerHealthy" as const,
    reason: "ExitCode3",
    message: "exited with code 3",
    at,
  });
  const ctx = { serving: true, nowMs: NOW, holdFailureMs: 10_000 };

  test("no report, or none ready and none failed, says nothing", () => {
    expect(deriveRevisionHealth([], ctx).health).toBeUndefined();
    expect(deriveRevisionHealth([inst("i1", "a", { phase: "starting" })], ctx).health).toBe(
      undefined,
    );
  });

  test("an instance waiting for its image pull makes the revision pending with the pull's progress", () => {
    const message = "pulling image r.example/app:1: 0 of 2 layers, 1.0 of 4.0 MB";
    const out = deriveRevisionHealth(
      [inst("i1", "a", { phase: "starting", reason: "PullingImage", message })],
      ctx,
    );
    expect(out.health).toEqual({ ready: "pending", reason: "PullingImage", message });
  });

  test("a ready instance makes the revision ready, with the newest ready instance's digest", () => {
    const out = deriveRevisionHealth(
      [
        inst("i1", "a", { phase: "ready", readyAt: NOW - 100, imageDigest: "sha256:old" }),
        inst("i2", "a", { phase: "ready", readyAt: NOW - 10, imageDigest: "sha256:new" }),
      ],
      ctx,
    );
    expect(out.health).toEqual({ ready: true, imageDigest: "sha256:new" });
  });

  test("a failure not yet recovered from counts, the newest one wins", () => {
    const out = deriveRevisionHealth(
      [
        inst("i1", "a", { phase: "backoff", lastFailure: crash(NOW - 50_000) }),
        inst("i2", "a", {
          phase: "backoff",
          lastFailure: { ...crash(NOW - 20_000), reason: "OOMKilled", message: "oom" },
        }),
      ],
      ctx,
    );
    expect(out.health).toEqual({
      ready: false,
      condition: "ContainerHealthy",
      reason: "OOMKilled",
      message: "oom",
    });
  });

  test("a recovered failure counts only on a serving revision within the hold, and says when to look again", () => {
    const recovered = inst("i1", "a", {
      phase: "ready",
      readyAt: NOW - 3_000,
      lastFailure: crash(NOW - 4_000),
    });
    const held = deriveRevisionHealth([recovered], ctx);
    expect(held.health).toMatchObject({ ready: false, reason: "ExitCode3" });
    expect(held.recheckInMs).toBe(6_000);
    expect(deriveRevisionHealth([recovered], { ...ctx, serving: false }).health).toEqual({
      ready: true,
    });
    expect(deriveRevisionHealth([recovered], { ...ctx, nowMs: NOW + 7_000 }).health).toEqual({
      ready: true,
    });
  });

  test("a failure is left out while an instance on another agent is ready, not one on its own agent", () => {
    const failed = inst("i1", "a", { phase: "starting", lastFailure: crash(NOW - 1_000) });
    const elsewhere = inst("i2", "b", { phase: "ready", readyAt: NOW - 60_000 });
    const beside = inst("i3", "a", { phase: "ready", readyAt: NOW - 60_000 });
    expect(deriveRevisionHealth([failed, elsewhere], ctx).health).toEqual({ ready: true });
    expect(deriveRevisionHealth([failed, beside], ctx).health).toMatchObject({
      ready: false,
      reason: "ExitCode3",
    });
  });
});
