/**
 * Images from a real registry (Debian's docker-registry on 127.0.0.1, with
 * htpasswd users), through `skiff up` in this process: the deploy API resolves
 * a new revision's tag to a digest (status.containerStatuses[].imageDigest),
 * the agent pulls that digest with the cluster's per-registry credentials, a
 * moved tag leaves the existing revision on its digest, and wrong credentials
 * or a missing tag give the revision a clear ContainerMissing condition.
 */
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Up } from "../../deploy/up.ts";
import { serviceManifest } from "../support/fixtures.ts";
import { helloImage } from "../support/images.ts";
import { pushVariant, startRegistry, type TestRegistry } from "../support/registry.ts";
import { fileUp } from "../support/up.ts";
import { waitFor } from "../support/wait.ts";

const docker = new Docker();
const TOKEN = "registry-test-token-0123456789";
const BASE = "/apis/serving.knative.dev/v1/namespaces/default";
const install = fileUp("registry", TOKEN);

let registry: TestRegistry;
/** The same kind of registry, configured with a wrong password. */
let guarded: TestRegistry;
let up: Up;
let hello: string;

// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
async function call(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${up.apiUrl}${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const condition = (obj: { status: { conditions?: Array<{ type: string }> } }, type: string) =>
  obj.status.conditions?.find((c) => c.type === type) as
    | { status: string; reason?: string; message?: string }
    | undefined;

async function readyRevision(name: string) {
  return waitFor(
    `revision ${name} Ready`,
    async () => {
      const rev = await call("GET", `/revisions/${name}`);
      const ready = condition(rev, "Ready");
      if (ready?.status === "False") throw new Error(`${ready.reason}: ${ready.message}`);
      return ready?.status === "True" ? rev : undefined;
    },
    60_000,
    100,
  );
}

beforeAll(async () => {
  hello = await helloImage(docker);
  [registry, guarded] = await Promise.all([startRegistry(), startRegistry()]);
  up = await install.start({
    images: {
      registries: {
        [registry.host]: registry.user,
        [guarded.host]: { username: guarded.user.username, password: "not-the-password" },
      },
    },
  });
}, 120_000);

afterAll(async () => {
  await install.close();
  await Promise.all([registry?.stop(), guarded?.stop()]);
}, 60_000);

describe("images from a registry", () => {
  it("deploys by tag: the revision records the digest, the agent pulls and runs it; a moved tag leaves it be", async () => {
    const ref = `${registry.host}/skiff/hello:v1`;
    const first = await pushVariant(docker, registry, hello, ref);
    await call("POST", "/services", serviceManifest("pulled", { image: ref }));
    const rev1 = await readyRevision("pulled-00001");
    const pinned = `${registry.host}/skiff/hello@${first}`;
    expect(rev1.status.containerStatuses).toEqual([
      { name: "user-container", imageDigest: pinned },
    ]);
    expect(rev1.status.imageDigest).toBe(pinned);
    // The agent pulled it (pushVariant deleted the local copy) under its digest.
    expect((await docker.getImage(pinned).inspect()).RepoDigests).toContain(pinned);

    // The tag moves: the existing revision keeps its digest, a new one gets the new bytes.
    const second = await pushVariant(docker, registry, hello, ref);
    expect(second).not.toBe(first);
    await call(
      "PUT",
      "/services/pulled",
      serviceManifest("pulled", { image: ref, env: { WHO: "second" } }),
    );
    const rev2 = await readyRevision("pulled-00002");
    expect(rev2.status.containerStatuses[0].imageDigest).toBe(
      `${registry.host}/skiff/hello@${second}`,
    );
    expect((await call("GET", "/revisions/pulled-00001")).status.containerStatuses).toEqual(
      rev1.status.containerStatuses,
    );
  }, 120_000);

  it("wrong credentials: the revision fails with ContainerMissing naming the refusal", async () => {
    const ref = `${guarded.host}/skiff/hello:v1`;
    await pushVariant(docker, guarded, hello, ref);
    await call("POST", "/services", serviceManifest("refused", { image: ref }));
    const rev = await call("GET", "/revisions/refused-00001");
    expect(rev.status.containerStatuses).toBeUndefined();
    for (const type of ["Ready", "ContainerHealthy"]) {
      expect(condition(rev, type)).toMatchObject({
        status: "False",
        reason: "ContainerMissing",
        message: `Unable to fetch image "${ref}": failed to resolve image to digest: registry ${guarded.host} refused the credentials of images.registries["${guarded.host}"] for ${guarded.host}/skiff/hello:v1 (HTTP 401)`,
      });
    }
    // The Service says so as Knative's would: its latest revision failed, and why.
    const svc = await call("GET", "/services/refused");
    expect(condition(svc, "Ready")).toMatchObject({ status: "False", reason: "RevisionFailed" });
    expect(condition(svc, "Ready")?.message).toContain(
      `refused the credentials of images.registries["${guarded.host}"]`,
    );
  }, 60_000);

  it("a missing tag: the revision fails with ContainerMissing naming the tag", async () => {
    const ref = `${registry.host}/skiff/hello:no-such-tag`;
    await call("POST", "/services", serviceManifest("untagged", { image: ref }));
    const rev = await call("GET", "/revisions/untagged-00001");
    expect(condition(rev, "Ready")).toMatchObject({
      status: "False",
      reason: "ContainerMissing",
      message: `Unable to fetch image "${ref}": failed to resolve image to digest: ${registry.host}/skiff/hello:no-such-tag does not exist: no tag no-such-tag in repository skiff/hello on ${registry.host}`,
    });
  }, 60_000);
});
