/**
 * The revision-status controller alone (real Redis): Revision status follows
 * the instance reports of live agents, which the test writes as agents do.
 * Status reflects the revision's instances as a whole: a failure reported on
 * one agent is not written while another live agent has a ready instance of
 * the revision, and is once none has.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { agentRecord, detectCapacity } from "../../../agent/identity.ts";
import {
  type RevisionStatusController,
  startRevisionStatus,
} from "../../../scaler/controllers/revision-status.ts";
import { Fleet } from "../../../src/fleet/fleet.ts";
import type { InstanceStatus } from "../../../src/fleet/types.ts";
import { getCondition } from "../../../src/model/index.ts";
import type { Revision } from "../../../src/model/types.ts";
import { createRedisStore, type RedisStore } from "../../../src/store/index.ts";
import { serviceManifest } from "../../support/fixtures.ts";
import { watchInFlight } from "../../support/in-flight.ts";
import { redisUrl, uniquePrefix } from "../../support/redis.ts";
import { deployService } from "../../support/store.ts";
import { waitFor } from "../../support/wait.ts";

const DOMAIN = "example.test";
const HOLD_MS = 1_000;
let store: RedisStore;
let fleet: Fleet;
let controller: RevisionStatusController;
let stop: () => Promise<void>;

beforeAll(async () => {
  const prefix = uniquePrefix("rvs");
  store = await createRedisStore({ url: redisUrl(), prefix });
  fleet = new Fleet({ url: redisUrl(), prefix });
  ({ controller, stop } = await startRevisionStatus({
    store,
    fleet,
    domain: DOMAIN,
    scheme: "http",
    holdFailureMs: HOLD_MS,
    resyncIntervalMs: 60_000,
  }));
});
afterAll(async () => {
  await stop?.();
  await fleet?.close();
  await store?.close();
});

const deploy = (name: string): Promise<string> =>
  deployService(store, serviceManifest(name, { image: "example/hello:1" }), { domain: DOMAIN });

async function join(label: string): Promise<string> {
  const id = `test-rvs-${label}-${randomBytes(3).toString("hex")}`;
  await fleet.registerAgent(
    agentRecord({
      id,
      address: "127.0.0.1",
      runtimes: ["container"],
      capacity: detectCapacity(),
      labels: {},
      startedAt: new Date(),
      draining: false,
    }),
    60_000,
  );
  return id;
}

let n = 0;
async function report(
  agentId: string,
  revision: string,
  fields: Partial<InstanceStatus> & Pick<InstanceStatus, "phase">,
): Promise<string> {
  const id = fields.id ?? `${revision}-${++n}`;
  await fleet.writeInstanceStatus(
    {
      id,
      agentId,
      namespace: "default",
      revision,
      runtime: "container",
      restarts: 0,
      since: Date.now(),
      ...fields,
    },
    60_000,
  );
  return id;
}

const killed = (at = Date.now()) => ({
  condition: "ContainerHealthy" as const,
  reason: "ExitCode137",
  message: "container was killed (found dead after an agent restart)",
  at,
});

const revision = (name: string) => store.get("revisions", "default", name) as Promise<Revision>;
const cond = async (name: string, type: string) =>
  getCondition((await revision(name))?.status.conditions, type);

describe("RevisionStatusController", () => {
  test("a ready report makes the Revision ready with its image digest, and the Configuration follows", async () => {
    const name = await deploy("ready");
    const agent = await join("a");
    await report(agent, name, { phase: "ready", readyAt: Date.now(), imageDigest: "sha256:abc" });
    const rev = await waitFor("the revision to be Ready", async () => {
      const r = await revision(name);
      return getCondition(r.status.conditions, "Ready")?.status === "True" ? r : undefined;
    });
    expect(getCondition(rev.status.conditions, "ContainerHealthy")?.status).toBe("True");
    expect(getCondition(rev.status.conditions, "ResourcesAvailable")?.status).toBe("True");
    expect(rev.status.imageDigest).toBe("sha256:abc");
    const config = await store.get("configurations", "default", "ready");
    expect(config?.status.latestReadyRevisionName).toBe(name);

    // Deriving the same again writes nothing.
    await controller.resyncNow();
    expect((await revision(name)).metadata.resourceVersion).toBe(rev.metadata.resourceVersion);
  });

  test("a failure before any readiness makes Ready False with the reason, on the condition it belongs to", async () => {
    const name = await deploy("missing");
    const agent = await join("b");
    await report(agent, name, {
      phase: "backoff",
      reason: "ImageNotFound",
      message: "image x not found",
      lastFailure: {
        condition: "ResourcesAvailable",
        reason: "ImageNotFound",
        message: "image x not found",
        at: Date.now(),
      },
    });
    const c = await waitFor("ResourcesAvailable False", async () => {
      const c = await cond(name, "ResourcesAvailable");
      return c?.status === "False" ? c : undefined;
    });
    expect(c.reason).toBe("ImageNotFound");
    expect(await cond(name, "Ready")).toMatchObject({ status: "False", reason: "ImageNotFound" });
  });

  test("a crash then fast restart on a serving revision stays visible for the hold, then clears", async () => {
    const name = await deploy("flaky");
    const agent = await join("c");
    const id = await report(agent, name, { phase: "ready", readyAt: Date.now() });
    await waitFor("Ready", async () => (await cond(name, "Ready"))?.status === "True");
    // The controller only ever sees the instance ready again, with the crash in its report.
    const crashedAt = Date.now();
    await report(agent, name, {
      id,
      phase: "ready",
      restarts: 1,
      readyAt: crashedAt + 1,
      lastFailure: { ...killed(crashedAt), reason: "ExitCode7", message: "exited with code 7" },
    });
    const failed = await waitFor("the crash on the revision", async () => {
      const c = await cond(name, "ContainerHealthy");
      return c?.status === "False" ? c : undefined;
    });
    expect(failed.reason).toBe("ExitCode7");
    expect((await cond(name, "Ready"))?.status).toBe("True");
    await waitFor(
      "ContainerHealthy True after the hold",
      async () => (await cond(name, "ContainerHealthy"))?.status === "True",
    );
  });

  test("a failure is not written while another live agent serves the revision; it is once none does", async () => {
    const name = await deploy("rvh");
    const other = await join("other");
    const self = await join("self");
    const serving = await report(other, name, { phase: "ready", readyAt: Date.now() });
    await waitFor("Ready", async () => (await cond(name, "Ready"))?.status === "True");
    await report(self, name, { phase: "starting", lastFailure: killed() });
    await controller.resyncNow();
    expect((await cond(name, "ContainerHealthy"))?.status).not.toBe("False");

    // This agent's own ready instance does not count as "elsewhere".
    await report(self, name, { phase: "ready", readyAt: Date.now() - 60_000 });
    await fleet.removeInstanceStatus(other, serving);
    const c = await waitFor("the failure on the revision", async () => {
      const c = await cond(name, "ContainerHealthy");
      return c?.status === "False" ? c : undefined;
    });
    expect(c.reason).toBe("ExitCode137");
  });

  test("another agent's ready instance counts only while that agent's heartbeat record lives", async () => {
    const name = await deploy("rvd");
    const self = await join("self2");
    // Reports left by an agent whose record is gone (killed, not yet pruned).
    const gone = `test-rvs-gone-${randomBytes(3).toString("hex")}`;
    await report(gone, name, { phase: "ready", readyAt: Date.now() });
    await report(self, name, { phase: "starting", lastFailure: killed() });
    const c = await waitFor("the failure on the revision", async () => {
      const c = await cond(name, "ContainerHealthy");
      return c?.status === "False" ? c : undefined;
    });
    expect(c.reason).toBe("ExitCode137");
    expect((await cond(name, "Ready"))?.status).toBe("False");
  });

  test("writes the status of many revisions turning ready together several at a time, not one after another", async () => {
    const names: string[] = [];
    for (let i = 0; i < 12; i++) names.push(await deploy(`many-${i}`));
    // The same controller over the same real store, its transactions counted.
    await stop();
    const writes = watchInFlight(store, "transact");
    ({ controller, stop } = await startRevisionStatus({
      store: writes.proxy,
      fleet,
      domain: DOMAIN,
      scheme: "http",
      holdFailureMs: HOLD_MS,
      resyncIntervalMs: 60_000,
    }));
    const self = await join("many");
    await Promise.all(
      names.map((name) => report(self, name, { phase: "ready", readyAt: Date.now() })),
    );
    await controller.resyncNow();
    for (const name of names) {
      await waitFor(`${name} Ready`, async () => (await cond(name, "Ready"))?.status === "True");
    }
    expect(writes.most()).toBeGreaterThan(1);
  });
});
