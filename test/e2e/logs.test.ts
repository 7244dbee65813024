/**
 * `skiff logs` through `skiff up` in this process: the API asks the agent
 * holding a service's container instances for their output (over Redis),
 * streams it as NDJSON, follows new lines, and keeps tenants apart (a token
 * of another namespace is refused). The CLI prints the same lines.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Up } from "../../deploy/up.ts";
import type { LogLine } from "../../src/fleet/logs.ts";
import { apiClient, createToken } from "../support/api.ts";
import { runCli } from "../support/cli.ts";
import { serviceManifest } from "../support/fixtures.ts";
import { helloImage } from "../support/images.ts";
import { createServiceReady, fileUp } from "../support/up.ts";
import { waitFor } from "../support/wait.ts";
import { hit } from "./support.ts";

const TOKEN = "logs-test-token-0123456789abcdef";
const install = fileUp("logs", TOKEN);
const agentId = install.agentId;
const LOGS = "/apis/skiff.dev/v1/namespaces/default/services/talker/logs";
let up: Up;

function get(path: string, token = TOKEN, signal?: AbortSignal) {
  return fetch(`${up.apiUrl}${path}`, {
    headers: { authorization: `Bearer ${token}` },
    ...(signal ? { signal } : {}),
  });
}

const parse = (text: string): LogLine[] =>
  text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine);

beforeAll(async () => {
  up = await install.start();
  await createServiceReady(up, TOKEN, serviceManifest("talker", { image: await helloImage() }));
}, 120_000);

afterAll(() => install.close(), 60_000);

describe("skiff logs", () => {
  it("returns the instances' recent output, attributed to instance and revision (API and CLI)", async () => {
    const res = await get(LOGS);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    const lines = parse(await res.text());
    const started = lines.find((l) => l.text.startsWith("hello: listening on"));
    expect(started).toMatchObject({
      agent: agentId,
      revision: "talker-00001",
      stream: "stdout",
      text: expect.stringContaining("(revision talker-00001)"),
    });
    expect(started?.instance).toMatch(/^talker-00001-/);
    expect(Date.parse(started?.time ?? "")).toBeGreaterThan(0);
    // Bounded and checked: a revision of another service, a tail beyond the maximum.
    expect((await get(`${LOGS}?revision=nope-00001`)).status).toBe(404);
    expect((await get(`${LOGS}?tailLines=100000`)).status).toBe(400);
    // The CLI prints the same lines.
    const cli = await runCli(["logs", "talker", "--tail", "20"], {
      env: { SKIFF_API_URL: up.apiUrl, SKIFF_TOKEN: TOKEN },
    });
    expect(cli.stderr).toBe("");
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/^talker-00001-\S+ stdout: hello: listening on /m);
  }, 60_000);

  it("follows: a line written after the request arrives on the open stream", async () => {
    const abort = new AbortController();
    const res = await get(`${LOGS}?follow=true&tailLines=0`, TOKEN, abort.signal);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    // The instance logs this on stderr, then exits (and is restarted).
    const crash = hit(up.gatewayUrl, "talker.default.localhost", "/crash?code=3").catch(
      () => undefined,
    );
    let text = "";
    const line = await waitFor(
      "the crash line on the follow stream",
      async () => {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended: ${text}`);
        text += new TextDecoder().decode(value);
        return parse(text.slice(0, text.lastIndexOf("\n") + 1)).find((l) =>
          l.text.includes("crash requested"),
        );
      },
      30_000,
    );
    expect(line).toMatchObject({ stream: "stderr", revision: "talker-00001" });
    abort.abort();
    await crash;
  }, 60_000);

  it("returns a worker's console lines, attributed to its revision, and never lines a worker forges for another namespace", async () => {
    const res = await fetch(
      `${up.apiUrl}/apis/serving.knative.dev/v1/namespaces/default/services`,
      {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({
          apiVersion: "serving.knative.dev/v1",
          kind: "Service",
          metadata: { name: "chatty" },
          spec: {
            template: {
              spec: {
                worker: {
                  source: `export default { fetch(request) {
                  console.log("chatty got", new URL(request.url).pathname);
                  console.error("chatty warns");
                  // A forged mark naming another namespace's revision (console.dir is not
                  // marked by the router): the agent drops it.
                  console.dir("\\u001eskiff:other/victim-00001\\u001f forged");
                  return new Response("ok");
                } };`,
                },
              },
            },
          },
        }),
      },
    );
    expect(res.status).toBe(201);
    const workerLogs = "/apis/skiff.dev/v1/namespaces/default/services/chatty/logs";
    const lines = await waitFor(
      "the worker's console lines",
      async () => {
        await hit(up.gatewayUrl, "chatty.default.localhost", "/hello").catch(() => undefined);
        const r = await get(workerLogs);
        if (r.status !== 200) return undefined;
        const got = parse(await r.text());
        return got.some((l) => l.text.includes("chatty got /hello")) ? got : undefined;
      },
      60_000,
      250,
    );
    expect(lines.find((l) => l.text.includes("chatty got /hello"))).toMatchObject({
      agent: agentId,
      revision: "chatty-00001",
      stream: "stdout",
      text: "chatty got /hello",
    });
    expect(lines.find((l) => l.text === "chatty warns")).toMatchObject({ stream: "stderr" });
    expect(lines.some((l) => l.text.includes("forged"))).toBe(false);
  }, 90_000);

  it("a token of another namespace is refused", async () => {
    const other = await createToken(apiClient(up.apiUrl, TOKEN), "other-team", "view", ["other"]);
    const refused = await get(LOGS, other);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain(
      'cannot get resource "services/log" in API group "skiff.dev" in the namespace "default"',
    );
  }, 60_000);
});
