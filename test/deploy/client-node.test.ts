/**
 * The official JavaScript client, @kubernetes/client-node, against the deploy
 * API as a Knative user's program drives a cluster: CustomObjectsApi create,
 * get, list, patch (merge and JSON Patch, its default) and delete of a ksvc,
 * and a Watch seeing ADDED and MODIFIED events. Over TLS with a kubeconfig,
 * as `skiff up` writes it (HTTPS is its default).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeKubeconfig } from "../../deploy/kubeconfig.ts";
import { serviceBody, startTestApi, type TestApi, TOKEN } from "../support/api.ts";
import { waitFor } from "../support/wait.ts";

let api: TestApi;
let dir: string;
let client: CustomObjectsApi;
let kc: KubeConfig;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "skiff-client-node-"));
  api = await startTestApi({
    config: { api: { port: 0, token: TOKEN, tls: { enabled: true, dir: join(dir, "tls") } } },
  });
  const file = join(dir, "kubeconfig");
  writeKubeconfig(file, { server: api.url, ca: api.ca, token: api.token });
  kc = new KubeConfig();
  kc.loadFromFile(file);
  client = kc.makeApiClient(CustomObjectsApi);
});
afterAll(async () => {
  await api?.close();
  // The CA's private key and the token's kubeconfig live there.
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const KSVC = { group: "serving.knative.dev", version: "v1", plural: "services" };
const at = (name: string) => ({ ...KSVC, namespace: "default", name });
// biome-ignore lint/suspicious/noExplicitAny: the client returns untyped custom objects
type Obj = any;

describe("@kubernetes/client-node CustomObjectsApi", () => {
  it("creates a ksvc (201 with the first revision)", async () => {
    const created: Obj = await client.createNamespacedCustomObject({
      ...KSVC,
      namespace: "default",
      body: serviceBody("node"),
    });
    expect(created.metadata.name).toBe("node");
    expect(created.status.latestCreatedRevisionName).toBe("node-00001");
  });

  it("gets it and lists it", async () => {
    const got: Obj = await client.getNamespacedCustomObject(at("node"));
    expect(got.status.url).toBe("http://node.default.localhost");
    const list: Obj = await client.listNamespacedCustomObject({
      ...KSVC,
      namespace: "default",
      labelSelector: "",
    });
    expect(list.kind).toBe("ServiceList");
    expect(list.items.map((s: Obj) => s.metadata.name)).toEqual(["node"]);
  });

  it("patches it with a merge patch, and with a JSON Patch (the client's default type)", async () => {
    const merged: Obj = await client.patchNamespacedCustomObject(
      { ...at("node"), body: { metadata: { labels: { team: "node" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    expect(merged.metadata.labels).toEqual({ team: "node" });
    const patched: Obj = await client.patchNamespacedCustomObject({
      ...at("node"),
      body: [
        { op: "replace", path: "/spec/template/spec/containers/0/env/0/value", value: "Node" },
      ],
    });
    expect(patched.spec.template.spec.containers[0].env[0].value).toBe("Node");
    expect(patched.status.latestCreatedRevisionName).toBe("node-00002");
  });

  it("a Watch sees the ksvc ADDED, then MODIFIED by a patch", async () => {
    const events: { type: string; generation: number }[] = [];
    let ended: unknown;
    const watch = await new Watch(kc).watch(
      `/apis/serving.knative.dev/v1/namespaces/default/services`,
      { fieldSelector: "metadata.name=node" },
      (type, obj: Obj) => events.push({ type, generation: obj.metadata.generation }),
      (err) => {
        ended = err ?? "ended";
      },
    );
    try {
      await waitFor("the current ksvc as ADDED", () => events.some((e) => e.type === "ADDED"));
      await client.patchNamespacedCustomObject(
        { ...at("node"), body: { spec: { template: { metadata: { name: "node-v3" } } } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      await waitFor("the patch as MODIFIED", () =>
        events.some((e) => e.type === "MODIFIED" && e.generation === 3),
      );
      expect(events[0]).toEqual({ type: "ADDED", generation: 2 });
      expect(ended).toBeUndefined();
    } finally {
      watch.abort();
    }
  });

  it("deletes it (a Status), after which get is a 404", async () => {
    const status: Obj = await client.deleteNamespacedCustomObject(at("node"));
    expect(status).toMatchObject({ kind: "Status", status: "Success" });
    await expect(client.getNamespacedCustomObject(at("node"))).rejects.toMatchObject({
      code: 404,
    });
  });
});
