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
import type { RunningScaler } from "../../../scaler/server.ts";
import { Fleet } from "../../../src/fleet/fleet.ts";
import {
  hit,
  SHORT_AUTOSCALER,
  serviceHost,
  startTestAgent,
  startTestGateway,
  startTestScaler,
  waitFor,
  waitRouted,
} from "../../scaler/support.ts";
import { startTestApi, type TestApi } from "../../support/api.ts";
import { containersOf, removeContainers } from "../../support/containers.ts";
import { helloImage } from "../../support/images.ts";
import { connect, redisUrl, uniquePrefix } from "../../support/redis.ts";

const prefix = uniquePrefix("standby-loop");
const docker = new Docker();
const suffix = prefix.replace(/[^a-z0-9]/gi, "").slice(-6);
const A = `sbl-a-${suffix}`;
const Z = `sbl-z-${suffix}`;
let api: TestApi;
const agents: RunningAgent[] = [];
let gateway: Gateway | undefined;
let scaler: RunningScaler | undefined;
let redis: Redis;
let fleet: Fleet;
let image: string;

beforeAll(async () => {
  image = await helloImage(docker);
  redis = connect();
  fleet = new Fleet({ url: redisUrl(), prefix });
  api = await startTestApi({ prefix });
  // Standbys whatever memory the shared machine has left.
  const standby = { containerStandby: { minFreeMemoryBytes: 0 } };
  agents.push(
    await startTestAgent(prefix, Z, { containers: true, address: "127.0.0.2", ...standby }),
  );
  gateway = await startTestGateway(prefix);
  scaler = await startTestScaler(prefix, { autoscaler: SHORT_AUTOSCALER });
  await scaler.whenLeading();
}, 120_000);

afterAll(async () => {
  await scaler?.stop();
  await gateway?.close(500);
  await Promise.all(agents.map((a) => a.stop()));
  await removeContainers([A, Z]);
  await api?.close();
  await fleet?.close();
  redis?.disconnect();
});

describe("scale from zero with a paused standby", () => {
  it("lands on the agent holding the standby and resumes the same container", async () => {
    const r = await api.call("POST", api.ns("services"), {
      apiVersion: "serving.knative.dev/v1",
      kind: "Service",
      metadata: { name: "paused" },
      spec: {
        template: {
          spec: {
            timeoutSeconds: 30,
            containers: [{ image, env: [{ name: "TARGET", value: "Paused" }] }],
          },
        },
      },
    });
    expect(r.status, r.text).toBe(201);
    const gw = gateway as Gateway;
    await waitRouted(redis, prefix, gw, serviceHost("paused"), undefined, 30_000);
    expect((await hit(gw.url, serviceHost("paused"))).body).toBe("Hello Paused!\n");
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

    const answer = await hit(gw.url, serviceHost("paused"));
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
