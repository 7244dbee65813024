/** The seed walkthrough's control-plane half through the real `skiff` CLI. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";

let api: TestApi;
let env: Record<string, string>;
/** The manifests the apply cases write. */
const manifests = mkdtempSync(join(tmpdir(), "skiff-apply-"));
beforeAll(async () => {
  api = await startTestApi();
  env = { SKIFF_API_URL: api.url, SKIFF_TOKEN: api.token };
});
afterAll(async () => {
  await api?.close();
  rmSync(manifests, { recursive: true, force: true });
});

async function skiff(...args: string[]) {
  const r = await runCli(args, { env });
  expect(r.code, `skiff ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

async function service(name: string) {
  return JSON.parse(await skiff("service", "describe", name, "-o", "json"));
}

describe("walkthrough with the CLI", () => {
  it("service create makes hello-00001 with 100% to latest", async () => {
    const out = await skiff(
      "service",
      "create",
      "hello",
      "--image",
      "ghcr.io/knative/helloworld-go:latest",
      "--env",
      "TARGET=World",
      "--no-wait",
    );
    expect(out).toMatch(/Service 'hello' created .*hello-00001/);
    expect(out).toMatch(/http:\/\/hello\.default\.localhost/);
    const svc = await service("hello");
    expect(svc.spec.traffic).toEqual([{ latestRevision: true, percent: 100 }]);
  });

  it("--traffic hello-00001=100 pins the traffic", async () => {
    await skiff("service", "update", "hello", "--traffic", "hello-00001=100", "--no-wait");
    const svc = await service("hello");
    expect(svc.spec.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 100 },
    ]);
  });

  it("--env TARGET=Knative mints hello-00002 and traffic stays on hello-00001", async () => {
    await skiff("service", "update", "hello", "--env", "TARGET=Knative", "--no-wait");
    const svc = await service("hello");
    expect(svc.status.latestCreatedRevisionName).toBe("hello-00002");
    expect(svc.status.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 100 },
    ]);
    const list = await skiff("revision", "list");
    expect(list).toMatch(/hello-00002\s+hello\s+/);
    expect(list).toMatch(/hello-00001\s+hello\s+100%/);
  });

  it("--traffic hello-00001=50 --traffic @latest=50 is stored as given", async () => {
    await skiff(
      "service",
      "update",
      "hello",
      "--traffic",
      "hello-00001=50",
      "--traffic",
      "@latest=50",
      "--no-wait",
    );
    const svc = await service("hello");
    expect(svc.spec.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 50 },
      { latestRevision: true, percent: 50 },
    ]);
    expect(svc.status.latestCreatedRevisionName).toBe("hello-00002");
  });

  it("--tag hello-00002=canary puts the tag and its URL in the route", async () => {
    await skiff("service", "update", "hello", "--tag", "hello-00002=canary", "--no-wait");
    const route = JSON.parse(await skiff("route", "describe", "hello", "-o", "json"));
    expect(route.status.traffic).toContainEqual(
      expect.objectContaining({
        tag: "canary",
        revisionName: "hello-00002",
        percent: 0,
        url: "http://canary-hello.default.localhost",
      }),
    );
    expect(await skiff("route", "describe", "hello")).toMatch(
      /#canary http:\/\/canary-hello\.default\.localhost/,
    );
  });

  it("--untag canary removes the tag", async () => {
    await skiff("service", "update", "hello", "--untag", "canary", "--no-wait");
    const svc = await service("hello");
    expect(svc.spec.traffic.some((t: { tag?: string }) => t.tag)).toBe(false);
  });

  it("service list shows a table", async () => {
    const out = await skiff("service", "list");
    expect(out.split("\n")[0]).toMatch(/^NAME\s+URL\s+LATEST\s+AGE\s+CONDITIONS\s+READY\s+REASON/);
    expect(out).toMatch(/^hello\s+http:\/\/hello\.default\.localhost\s+hello-00002/m);
  });

  it("apply -f creates, then reports unchanged, from a multi-document file", async () => {
    const file = join(manifests, "two.yaml");
    writeFileSync(
      file,
      [
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: one}\nspec:\n  template:\n    spec:\n      containers: [{image: example/one}]",
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: two}\nspec:\n  template:\n    spec:\n      containers: [{image: example/two}]",
      ].join("\n---\n"),
    );
    expect(await skiff("apply", "-f", file)).toBe("service/one created\nservice/two created\n");
    expect(await skiff("apply", "-f", file)).toBe("service/one unchanged\nservice/two unchanged\n");
  });

  it("apply -f applies every document it can: a failing one is reported, the rest go in, and the exit code is 1", async () => {
    const file = join(manifests, "mixed.yaml");
    const svc = (name: string, extra = "") =>
      `apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: ${name}}\nspec:\n  template:\n    spec:\n${extra}      containers: [{image: example/${name}}]`;
    writeFileSync(
      file,
      [
        svc("mixed-a"),
        svc("mixed-bad", "      containerConcurrency: -1\n"),
        "apiVersion: serving.knative.dev/v1\nkind: Gadget\nmetadata: {name: odd}",
        svc("mixed-c"),
      ].join("\n---\n"),
    );
    const r = await runCli(["apply", "-f", file], { env });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe("service/mixed-a created\nservice/mixed-c created\n");
    expect(r.stderr).toMatch(/^service\/mixed-bad failed: .*containerConcurrency/m);
    expect(r.stderr).toMatch(/^document 3 failed: cannot apply kind "Gadget"/m);
    // The summary names each failure again.
    expect(r.stderr).toMatch(
      /Error: 2 of 4 documents failed \(2 applied\):\n {2}service\/mixed-bad: .*\n {2}document 3: /,
    );
    expect((await service("mixed-a")).metadata.name).toBe("mixed-a");
    expect((await service("mixed-c")).metadata.name).toBe("mixed-c");
    expect((await runCli(["service", "describe", "mixed-bad"], { env })).code).toBe(1);
  });

  it("apply -f with many documents prints them in file order, and a later document about the same object applies after the earlier one", async () => {
    const file = join(manifests, "many.yaml");
    const svc = (name: string, image: string) =>
      `apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: ${name}}\nspec:\n  template:\n    spec:\n      containers: [{image: ${image}}]`;
    const names = Array.from({ length: 12 }, (_, i) => `many-${i}`);
    // many-0 again right after, with another image: sent at once they would
    // both create; it must wait for the first and update what it created.
    const docs = names.map((n) => svc(n, `example/${n}:1`));
    docs.splice(1, 0, svc("many-0", "example/many-0:2"));
    writeFileSync(file, docs.join("\n---\n"));
    const r = await runCli(["apply", "-f", file], { env });
    expect(r.code, r.stderr).toBe(0);
    const lines = names.map((n) => `service/${n} created\n`);
    lines.splice(1, 0, "service/many-0 configured\n");
    expect(r.stdout).toBe(lines.join(""));
    const first = await service("many-0");
    expect(first.spec.template.spec.containers[0].image).toBe("example/many-0:2");
    expect(first.status.latestCreatedRevisionName).toBe("many-0-00002");
  });

  it("apply -f - reads standard input", async () => {
    const r = await runCli(["apply", "-f", "-"], {
      env,
      input:
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: piped}\nspec:\n  template:\n    spec:\n      containers: [{image: example/p}]\n",
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("service/piped created\n");
  });

  it("a worker from --source gets compiled and stored", async () => {
    const out = await skiff(
      "service",
      "create",
      "hello-ts",
      "--source",
      "examples/workers/hello.ts",
      "--env",
      "TARGET=Skiff",
      "--no-wait",
      "-o",
      "json",
    );
    const svc = JSON.parse(out);
    expect(svc.spec.template.spec.worker.language).toBe("typescript");
    const rev = JSON.parse(await skiff("revision", "describe", "hello-ts-00001", "-o", "json"));
    expect(rev.status.workerArtifact.bytes).toBeGreaterThan(0);
  });

  it("an invalid update exits non-zero with the API's message and the field", async () => {
    const r = await runCli(["service", "update", "hello", "--env", "PORT=1", "--no-wait"], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Error: .*PORT.*reserved/s);
    expect(r.stderr).toMatch(/containers\[0\]\.env/);
  });

  it("traffic percents that do not add up are refused before any request", async () => {
    const r = await runCli(
      ["service", "update", "hello", "--traffic", "hello-00001=60", "--no-wait"],
      { env },
    );
    // A command line that cannot run as written: a usage error (exit 2).
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/add up to 60, they must add up to 100/);
  });

  it("a usage error exits 2 with its message and nothing on stdout", async () => {
    const missing = await runCli(["service", "create", "nothing", "--no-wait"], { env });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      "Error: give --image IMAGE for a container, or --source FILE for a worker module\n",
    );
    expect(missing.stdout).toBe("");
    const format = await runCli(["service", "list", "-o", "xml"], { env });
    expect(format.code).toBe(2);
    expect(format.stderr).toMatch(/^Error: -o xml: use json or yaml$/m);
  });

  it("an API validation error (422) prints every cause, one per field, and exits 1", async () => {
    const r = await runCli(
      [
        "service",
        "create",
        "broken",
        "--image",
        "example/b",
        "--env",
        "PORT=1",
        "--concurrency-limit",
        "-1",
        "--no-wait",
      ],
      { env },
    );
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^Error: /);
    expect(r.stderr).toMatch(/spec\.template\.spec\.containers\[0\]\.env\[0\]\.name: .*PORT/);
    expect(r.stderr).toMatch(/spec\.template\.spec\.containerConcurrency: /);
  });

  it("a wrong token exits non-zero with a 401 message", async () => {
    const r = await runCli(["service", "list"], {
      env: { ...env, SKIFF_TOKEN: "wrong-wrong-wrong-wrong" },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid bearer token/);
  });

  it("an unreachable API says so and how to point at one", async () => {
    const r = await runCli(["service", "list"], {
      env: { ...env, SKIFF_API_URL: "http://127.0.0.1:1" },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach the Skiff API at http:\/\/127\.0\.0\.1:1/);
  });

  it("--wait reports progress and times out while no revision can become ready", async () => {
    const r = await runCli(
      ["service", "create", "waiter", "--image", "example/w", "--wait-timeout", "1"],
      { env },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Unknown RevisionDeploying/);
    expect(r.stderr).toMatch(/not ready after 1s/);
  });

  it("service delete removes it", async () => {
    await skiff("service", "delete", "piped");
    const r = await runCli(["service", "describe", "piped"], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not found/);
  });
});
