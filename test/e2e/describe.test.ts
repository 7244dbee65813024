/**
 * `skiff service describe` through `skiff up` in this process: the API's
 * describe subresource shows the service's instances per host as the agent
 * reports them (phase, runtime, restarts, last failure) and its recent events
 * (condition transitions and instance failures, newest first); a token of
 * another namespace is refused, a namespaced token does not see host
 * addresses. The CLI prints the same.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServiceDescription } from "../../deploy/api/describe.ts";
import type { Up } from "../../deploy/up.ts";
import { apiClient, createToken } from "../support/api.ts";
import { runCli } from "../support/cli.ts";
import { serviceManifest } from "../support/fixtures.ts";
import { helloImage } from "../support/images.ts";
import { createServiceReady, fileUp } from "../support/up.ts";
import { waitFor } from "../support/wait.ts";
import { hit } from "./support.ts";

const TOKEN = "describe-test-token-0123456789abcdef";
const install = fileUp("describe", TOKEN);
const agentId = install.agentId;
const DESCRIBE = "/apis/skiff.dev/v1/namespaces/default/services/talker/describe";
let up: Up;

function get(path: string, token = TOKEN) {
  return fetch(`${up.apiUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
}

async function describeApi(token = TOKEN): Promise<ServiceDescription> {
  const res = await get(DESCRIBE, token);
  expect(res.status).toBe(200);
  return (await res.json()) as ServiceDescription;
}

const token = (name: string, namespaces: string[]): Promise<string> =>
  createToken(apiClient(up.apiUrl, TOKEN), name, "view", namespaces);

beforeAll(async () => {
  up = await install.start();
  await createServiceReady(
    up,
    TOKEN,
    serviceManifest("talker", {
      image: await helloImage(),
      // One instance stays up, so that the crash below is seen on it.
      annotations: { "autoscaling.knative.dev/min-scale": "1" },
    }),
  );
}, 120_000);

afterAll(() => install.close(), 60_000);

describe("skiff service describe", () => {
  it("API: instances per host with phase, runtime, restarts and last failure; events newest first", async () => {
    const ready = await waitFor(
      "a ready instance reported, and the Service's Ready written",
      async () => {
        const d = await describeApi();
        const inst = d.revisions[0]?.hosts[0]?.instances[0];
        // The scaler writes the Service's status after the Revision's: wait for both.
        const serviceReady = d.events.some(
          (e) => e.object === "Service/talker" && e.type === "Ready" && e.status === "True",
        );
        return inst?.phase === "ready" && serviceReady ? d : undefined;
      },
      30_000,
      100,
    );
    expect(ready.metadata).toEqual({ namespace: "default", name: "talker" });
    expect(ready.revisions.map((r) => r.name)).toEqual(["talker-00001"]);
    const host = ready.revisions[0]!.hosts[0]!;
    expect(host).toMatchObject({ id: agentId, live: true, address: expect.any(String) });
    expect(host.instances[0]).toMatchObject({
      id: expect.stringMatching(/^talker-00001-/),
      runtime: "container",
      phase: "ready",
      restarts: 0,
    });
    expect(Date.parse(host.instances[0]!.since)).toBeGreaterThan(0);
    expect(ready.events).toContainEqual(
      expect.objectContaining({ object: "Service/talker", type: "Ready", status: "True" }),
    );
    expect(ready.events).toContainEqual(
      expect.objectContaining({ object: "Revision/talker-00001", type: "Ready", status: "True" }),
    );

    // The instance exits with code 3 and is restarted: its report keeps the failure.
    await hit(up.gatewayUrl, "talker.default.localhost", "/crash?code=3").catch(() => undefined);
    const crashed = await waitFor(
      "the restart and its failure reported",
      async () => {
        const d = await describeApi();
        const inst = d.revisions[0]?.hosts[0]?.instances.find((i) => i.restarts >= 1);
        return inst?.lastFailure ? { d, inst } : undefined;
      },
      30_000,
      100,
    );
    expect(crashed.inst.lastFailure).toMatchObject({
      condition: "ContainerHealthy",
      reason: "ExitCode3",
    });
    expect(crashed.d.events).toContainEqual({
      time: crashed.inst.lastFailure!.at,
      object: `Instance/${crashed.inst.id}`,
      type: "ContainerHealthy",
      status: "False",
      reason: "ExitCode3",
      message: crashed.inst.lastFailure!.message,
    });
    const times = crashed.d.events.map((e) => Date.parse(e.time));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(crashed.d.events.length).toBeLessThanOrEqual(20);

    expect((await get("/apis/skiff.dev/v1/namespaces/default/services/nope/describe")).status).toBe(
      404,
    );
  }, 90_000);

  it("API: a token of another namespace is refused; a namespaced token sees no host address", async () => {
    const refused = await get(DESCRIBE, await token("other-team", ["other"]));
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain(
      'cannot get resource "services/describe" in API group "skiff.dev" in the namespace "default"',
    );
    const viewer = await describeApi(await token("viewer", ["default"]));
    const host = viewer.revisions[0]!.hosts[0]!;
    expect(host.id).toBe(agentId);
    expect(host).not.toHaveProperty("address");
    expect(host.instances.length).toBeGreaterThan(0);
  }, 60_000);

  it("CLI: prints the instances per host and the recent events", async () => {
    const d = await describeApi();
    const host = d.revisions[0]!.hosts[0]!;
    const cli = await runCli(["service", "describe", "talker"], {
      env: { SKIFF_API_URL: up.apiUrl, SKIFF_TOKEN: TOKEN },
    });
    expect(cli.stderr).toBe("");
    expect(cli.code).toBe(0);
    const out = cli.stdout;
    expect(out).toContain(`Instances:\n  talker-00001:\n    host ${agentId} (${host.address}):\n`);
    expect(out).toMatch(/INSTANCE\s+PHASE\s+RUNTIME\s+SINCE\s+RESTARTS\s+LAST FAILURE/);
    expect(out).toMatch(
      /talker-00001-\S+\s+\w+( \(\w+\))?\s+container\s+\d+[smhd]\s+[1-9]\d*\s+\d+[smhd] ago ExitCode3: /,
    );
    expect(out).toMatch(/Events:\n\s+AGE\s+OBJECT\s+TYPE\s+STATUS\s+REASON\s+MESSAGE\n/);
    expect(out).toMatch(
      /Instance\/talker-00001-\S+\s+ContainerHealthy\s+False\s+ExitCode3\s+container exited with code 3; last log lines: \| .*crash requested/,
    );
    expect(out).toMatch(/Service\/talker\s+Ready\s+True/);
  }, 60_000);
});
