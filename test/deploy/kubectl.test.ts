/**
 * The real kubectl against the deploy API, as a Knative user drives a
 * cluster: a kubeconfig with the CA, server and token, then apply, get
 * (server-side printed tables), jsonpath, explain, patch and delete.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeKubeconfig } from "../../deploy/kubeconfig.ts";
import {
  createToken,
  serviceBody,
  serviceYaml,
  startTestApi,
  type TestApi,
  TOKEN,
} from "../support/api.ts";
import { waitFor } from "../support/wait.ts";

const KUBECTL = "/usr/bin/kubectl";
const present = existsSync(KUBECTL);
if (!present) console.warn(`kubectl.test.ts skipped: ${KUBECTL} is absent (install kubectl v1.32)`);

let api: TestApi;
let dir: string;
let kubeconfig: string;

beforeAll(async () => {
  if (!present) return;
  dir = mkdtempSync(join(tmpdir(), "skiff-kubectl-"));
  // TLS as kubectl needs it: a CA and serving certificate generated into the folder.
  api = await startTestApi({
    config: { api: { port: 0, token: TOKEN, tls: { enabled: true, dir: join(dir, "tls") } } },
  });
  kubeconfig = join(dir, "kubeconfig");
  writeKubeconfig(kubeconfig, { server: api.url, ca: api.ca, token: api.token });
});
afterAll(async () => {
  await api?.close();
  // The CA's private key and the token's kubeconfig live there.
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function kubectlEnv() {
  // A private cache folder: discovery from another run never answers for this one.
  return {
    PATH: process.env.PATH ?? "",
    HOME: dir,
    KUBECONFIG: kubeconfig,
    KUBECACHEDIR: join(dir, "cache"),
  };
}

function run(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      KUBECTL,
      args,
      {
        env: kubectlEnv(),
        timeout: 30_000,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function kubectl(...args: string[]): Promise<string> {
  const r = await run(args);
  expect(r.code, `kubectl ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

const SERVICE = serviceYaml("hello");

describe.skipIf(!present)("kubectl against the deploy API", () => {
  it("applies a Knative Service from a file (default validation)", async () => {
    const file = join(dir, "hello.yaml");
    writeFileSync(file, SERVICE);
    expect(await kubectl("apply", "-f", file)).toMatch(
      /service\.serving\.knative\.dev\/hello created/,
    );
  });

  it("generated private keys are readable by their owner only", () => {
    for (const key of ["ca.key", "api.key"]) {
      expect(statSync(join(dir, "tls", key)).mode & 0o777, key).toBe(0o600);
    }
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);
  });

  it("get ksvc prints Knative's columns", async () => {
    const out = await kubectl("get", "ksvc");
    const [header, row] = out.trim().split("\n");
    expect(header!.split(/\s+/)).toEqual([
      "NAME",
      "URL",
      "LATESTCREATED",
      "LATESTREADY",
      "READY",
      "REASON",
    ]);
    expect(row).toMatch(/^hello\s+http:\/\/hello\.default\.localhost\s+hello-00001\s/);
  });

  it("get ksvc -o jsonpath reads the URL", async () => {
    expect(await kubectl("get", "ksvc", "hello", "-o", "jsonpath={.status.url}")).toBe(
      "http://hello.default.localhost",
    );
  });

  it("get rev lists the revision with its configuration", async () => {
    const out = await kubectl("get", "rev");
    expect(out).toMatch(
      /^NAME\s+CONFIG NAME\s+GENERATION\s+READY\s+REASON\s+ACTUAL REPLICAS\s+DESIRED REPLICAS/,
    );
    expect(out).toMatch(/\nhello-00001\s+hello\s+1\s/);
  });

  it("get ns lists the namespaces", async () => {
    const out = await kubectl("get", "ns");
    expect(out).toMatch(/^NAME\s+STATUS/);
    expect(out).toMatch(/\ndefault\s+Active/);
  });

  it("create ns makes a namespace get ns lists; a namespaced token may not", async () => {
    expect(await kubectl("create", "ns", "made-by-kubectl")).toMatch(
      /namespace\/made-by-kubectl created/,
    );
    expect(await kubectl("get", "ns")).toMatch(/\nmade-by-kubectl\s+Active/);
    const again = await run(["create", "ns", "made-by-kubectl"]);
    expect(again.stderr).toMatch(/AlreadyExists.*"made-by-kubectl" already exists/);
    const token = await createToken(api, "ns-editor", "edit", ["team-b"]);
    const refused = await run(["--token", token, "create", "ns", "team-b"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Forbidden.*creating namespaces is forbidden/);
  });

  it("explain ksvc.spec reads the OpenAPI document", async () => {
    const out = await kubectl("explain", "ksvc.spec");
    expect(out).toMatch(/KIND:\s+Service/);
    expect(out).toMatch(/GROUP:\s+serving\.knative\.dev/);
    expect(out).toMatch(/template\s+<Object> -required-/);
    expect(out).toMatch(/traffic\s+<\[\]Object>/);
    expect(await kubectl("explain", "ksvc.spec.template.spec.containers.image")).toMatch(
      /The OCI image to run/,
    );
  });

  it("apply of a changed file updates the Service (a new revision)", async () => {
    const file = join(dir, "hello.yaml");
    writeFileSync(file, SERVICE.replace("value: World", "value: Again"));
    expect(await kubectl("apply", "-f", file)).toMatch(
      /service\.serving\.knative\.dev\/hello configured/,
    );
    const svc = JSON.parse(await kubectl("get", "ksvc", "hello", "-o", "json"));
    expect(svc.status.latestCreatedRevisionName).toBe("hello-00002");
    expect(svc.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]).toContain(
      "Again",
    );
  });

  it("apply of a misspelt field is refused, naming it", async () => {
    const file = join(dir, "typo.yaml");
    writeFileSync(file, SERVICE.replace("name: hello", "name: typo").replace("image:", "imag:"));
    const r = await run(["apply", "-f", file]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/imag/);
    expect((await run(["get", "ksvc", "typo"])).code).not.toBe(0);
  });

  it("--field-selector metadata.name picks one object (what kubectl wait lists and watches by)", async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("other"))).status).toBe(201);
    try {
      expect(
        await kubectl("get", "ksvc", "--field-selector", "metadata.name=hello", "-o", "name"),
      ).toBe("service.serving.knative.dev/hello\n");
      const none = await run(["get", "ksvc", "--field-selector", "metadata.name=nope"]);
      expect(none.stderr).toMatch(/No resources found/);
      const bad = await run(["get", "ksvc", "--field-selector", "spec.x=y"]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/unsupported fieldSelector/);
    } finally {
      await api.call("DELETE", api.ns("services", "other"));
    }
  });

  it("a namespaced token sees only its own namespace (get ns, get ksvc -A)", async () => {
    const token = await createToken(api, "team-a-viewer", "view", ["team-a"]);
    const ns = await kubectl("--token", token, "get", "ns");
    expect(ns).toMatch(/\nteam-a\s+Active/);
    expect(ns).not.toMatch(/default/);
    const all = await run(["--token", token, "get", "ksvc", "-A"]);
    expect(all.stdout).not.toMatch(/hello/);
    const refused = await run(["--token", token, "get", "ksvc", "-n", "default"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/forbidden/);
  });

  it("patch --type merge changes the template (a new revision), which get -w shows", async () => {
    // The watch prints Knative's columns for every event (Tables in the stream).
    const watch = spawn(KUBECTL, ["get", "ksvc", "hello", "-w"], { env: kubectlEnv() });
    let seen = "";
    watch.stdout.on("data", (d) => {
      seen += d;
    });
    watch.stderr.on("data", (d) => {
      seen += d;
    });
    try {
      await waitFor("get -w to print the current row", () => /hello-00002/.test(seen));
      const out = await kubectl(
        "patch",
        "ksvc",
        "hello",
        "--type",
        "merge",
        "-p",
        JSON.stringify({
          spec: {
            template: {
              spec: {
                containers: [
                  {
                    image: "ghcr.io/knative/helloworld-go:latest",
                    env: [{ name: "TARGET", value: "Knative" }],
                  },
                ],
              },
            },
          },
        }),
      );
      expect(out).toMatch(/service\.serving\.knative\.dev\/hello patched/);
      await waitFor("get -w to print the new revision", () => /hello-00003/.test(seen));
      expect(seen.match(/^NAME\s+URL\s+LATESTCREATED/gm)).toHaveLength(1);
      expect(seen).not.toMatch(/Unable to decode/);
    } finally {
      watch.kill();
    }
    expect(
      await kubectl("get", "ksvc", "hello", "-o", "jsonpath={.status.latestCreatedRevisionName}"),
    ).toBe("hello-00003");
  });

  it("apply --server-side creates, records kubectl as field manager, and conflicts with another manager unless forced", async () => {
    const file = join(dir, "ssa.yaml");
    writeFileSync(file, SERVICE.replace("name: hello", "name: ssa"));
    expect(await kubectl("apply", "--server-side", "-f", file)).toMatch(
      /service\.serving\.knative\.dev\/ssa serverside-applied/,
    );
    const svc = JSON.parse(
      await kubectl("get", "ksvc", "ssa", "-o", "json", "--show-managed-fields"),
    );
    expect(svc.metadata.managedFields).toMatchObject([{ manager: "kubectl", operation: "Apply" }]);

    writeFileSync(file, SERVICE.replace("name: hello", "name: ssa").replace("World", "Other"));
    const refused = await run(["apply", "--server-side", "--field-manager=other", "-f", file]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(
      /Apply failed with 1 conflict: conflict with "kubectl": \.spec\.template\.spec\.containers/,
    );
    expect(
      await kubectl("get", "ksvc", "ssa", "-o", "jsonpath={.status.latestCreatedRevisionName}"),
    ).toBe("ssa-00001");
    expect(
      await kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        file,
      ),
    ).toMatch(/serverside-applied/);
    expect(
      await kubectl("get", "ksvc", "ssa", "-o", "jsonpath={.status.latestCreatedRevisionName}"),
    ).toBe("ssa-00002");
  });

  it("patch --type json applies RFC 6902 operations, and names a path that does not exist", async () => {
    const ops = (value: string, path = "/spec/template/spec/containers/0/env/0/value") =>
      JSON.stringify([{ op: "replace", path, value }]);
    expect(await kubectl("patch", "ksvc", "ssa", "--type", "json", "-p", ops("Json"))).toMatch(
      /service\.serving\.knative\.dev\/ssa patched/,
    );
    expect(
      await kubectl(
        "get",
        "ksvc",
        "ssa",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[0].value}",
      ),
    ).toBe("Json");
    const bad = await run([
      "patch",
      "ksvc",
      "ssa",
      "--type",
      "json",
      "-p",
      ops("x", "/spec/nope/x"),
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(
      /\/spec\/nope\/x: json patch operation 0 \(replace\): the path does not exist in the object/,
    );
    await kubectl("delete", "ksvc", "ssa");
  });

  it("TestRouteCreation with kubectl: apply a Configuration and a Route, then apply a changed Route; creator is the token's identity", async () => {
    const file = join(dir, "byo.yaml");
    const route = (percent: number) => `apiVersion: serving.knative.dev/v1
kind: Configuration
metadata:
  name: byo
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
---
apiVersion: serving.knative.dev/v1
kind: Route
metadata:
  name: byo-route
spec:
  traffic:
    - configurationName: byo
      percent: ${percent}
    - revisionName: byo-00001
      percent: ${100 - percent}
      tag: pinned
`;
    writeFileSync(file, route(100));
    const created = await kubectl("apply", "-f", file);
    expect(created).toMatch(/configuration\.serving\.knative\.dev\/byo created/);
    expect(created).toMatch(/route\.serving\.knative\.dev\/byo-route created/);
    writeFileSync(file, route(60));
    expect(await kubectl("apply", "-f", file)).toMatch(
      /route\.serving\.knative\.dev\/byo-route configured/,
    );
    expect(
      await kubectl("get", "rt", "byo-route", "-o", "jsonpath={.spec.traffic[0].percent}"),
    ).toBe("60");
    expect(
      await kubectl(
        "get",
        "rt",
        "byo-route",
        "-o",
        "jsonpath={.metadata.annotations.serving\\.knative\\.dev/creator}",
      ),
    ).toBe("skiff:admin");
    expect(await kubectl("delete", "rt", "byo-route")).toMatch(/deleted/);
    expect(await kubectl("delete", "kcfg", "byo")).toMatch(/deleted/);
  });

  it("delete --dry-run=server deletes nothing (DeleteOptions in the body)", async () => {
    expect(await kubectl("delete", "ksvc", "hello", "--dry-run=server")).toMatch(
      /"hello" deleted \(server dry run\)/,
    );
    expect(await kubectl("get", "ksvc", "hello", "-o", "name")).toBe(
      "service.serving.knative.dev/hello\n",
    );
  });

  it("delete ksvc removes it", async () => {
    expect(await kubectl("delete", "ksvc", "hello")).toMatch(
      /service\.serving\.knative\.dev "hello" deleted/,
    );
    const r = await run(["get", "ksvc", "hello"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not found/);
  });
});
