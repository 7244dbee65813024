/**
 * The paused standby in the closed loop, all real: deploy API -> scaler ->
 * two container agents -> gateway. A revision scales to zero on agent
 * "sbl-z"; the next request brings it back from zero on that agent (the one
 * reporting the standby), in the same container, although placement alone
 * would pick "sbl-a" (equal load, smaller id).
 */
import Docker from "dockerode";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningAgent } from "../../../agent/server.ts";
import type { Gateway } from "../../../gateway/server.ts";
import type { Fleet } from "../../../src/fleet/fleet.ts";
import {
  hit,
  serviceHost,
  startTestAgent,
  startTestCluster,
  type TestCluster,
  waitFor,
  waitRouted,
} from "../../scaler/support.ts";
import type { TestApi } from "../../support/api.ts";
import { containersOf, removeContainers } from "../../support/containers.ts";
import { helloImage } from "../../support/images.ts";
import { uniquePrefix } from "../../support/redis.ts";
import { helloService } from "../support.ts";

const prefix = uniquePrefix("standby-loop");
const docker = new Docker();
const suffix = prefix.replace(/[^a-z0-9]/gi, "").slice(-6);
const A = `sbl-a-${suffix}`;
const Z = `sbl-z-${suffix}`;
let api: TestApi;
let agents: RunningAgent[];
let gateway: Gateway;
let redis: Redis;
let fleet: Fleet;
let image: string;
let cluster: TestCluster;

beforeAll(async () => {
  image = await helloImage(docker);
  cluster = await startTestCluster(prefix, {
    agents: {
      // Standbys whatever memory the shared machine has left.
      [Z]: { containers: true, address: "127.0.0.2", containerStandby: { minFreeMemoryBytes: 0 } },
    },
  });
  ({ api, agents, gateway, redis, fleet } = cluster);
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  await removeContainers([A, Z]);
});

describe("scale from zero with a paused standby", () => {
  it("lands on the agent holding the standby and resumes the same container", async () => {
    const svc = helloService("paused", image, { TARGET: "Paused" });
    const r = await api.call("POST", api.ns("services"), svc);
    expect(r.status, r.text).toBe(201);
    await waitRouted(redis, prefix, gateway, serviceHost("paused"), undefined, 30_000);
    expect((await hit(gateway.url, serviceHost("paused"))).body).toBe("Hello Paused!\n");
    const [first] = await containersOf(Z);
    expect(first?.State).toBe("running");

    // A second container agent, preferred by placement on its own (same load, smaller id).
    agents.push(
      await startTestAgent(prefix, A, {
        containers: true,
        address: "127.0.0.1",
        containerStandby: { minFreeMemoryBytes: 0 },
      }),
    );
    await waitFor(
      "the revision at zero, its container paused on Z and listed on Z's record",
      async () => {
        const eps = await fleet.readEndpoints("default", "paused-00001");
        const [c] = await containersOf(Z);
        const record = await fleet.getAgent(Z);
        return (
          eps.length === 0 &&
          c?.State === "paused" &&
          record?.standbys?.includes("default/paused-00001")
        );
      },
      40_000,
    );

    const answer = await hit(gateway.url, serviceHost("paused"));
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("Hello Paused!\n");
    const [ep] = await fleet.readEndpoints("default", "paused-00001");
    expect(ep?.agentId).toBe(Z);
    expect(await containersOf(A)).toEqual([]);
    const [again] = await containersOf(Z);
    expect(again?.Id).toBe(first?.Id);
    expect(again?.State).toBe("running");
  }, 90_000);
});
