/**
 * Every validation rule, through HTTP: the status code, the field named in
 * details.causes, and a fragment of the message. Nothing is stored.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api.ts";
import { serviceManifest } from "../support/fixtures.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({
    config: {
      api: { port: 0, token: "test-token-0123456789abcdef" },
      limits: { maxWorkerSourceBytes: 4096 },
    },
  });
  const r = await api.call("POST", api.ns("services"), svc("existing"));
  expect(r.status).toBe(201);
});
afterAll(async () => {
  await api?.close();
});

type Json = Record<string, unknown>;

function svc(name: string, spec: Json = {}, template: Json = {}, templateMeta?: Json): Json {
  const body = serviceManifest(name, { image: "example/app:1", spec: template });
  if (templateMeta) body.spec.template = { metadata: templateMeta, ...body.spec.template };
  Object.assign(body.spec, spec);
  return body;
}

function container(c: Json): Json {
  return { containers: [{ image: "example/app:1", ...c }] };
}

function worker(w: Json): Json {
  return { containers: undefined, worker: w };
}

interface Case {
  rule: string;
  body: Json;
  field: string;
  message: RegExp;
  code?: number;
}

const A = "autoscaling.knative.dev/";

const cases: Case[] = [
  {
    rule: "service name must be a DNS-1035 label",
    body: svc("1hello"),
    field: "metadata.name",
    message: /start with a (lower-case )?letter|DNS-1035|must start/i,
  },
  {
    rule: "service name must not have capitals",
    body: svc("Hello"),
    field: "metadata.name",
    message: /lower-case/i,
  },
  {
    rule: "service name is required",
    body: { ...svc("x"), metadata: {} },
    field: "metadata.name",
    message: /required/i,
  },
  {
    rule: "apiVersion must be serving.knative.dev/v1",
    body: { ...svc("v"), apiVersion: "v1" },
    field: "apiVersion",
    message: /serving.knative.dev\/v1/,
  },
  {
    rule: "kind must be Service",
    body: { ...svc("k"), kind: "Configuration" },
    field: "kind",
    message: /Service/,
  },
  {
    rule: "percents must sum to 100",
    body: svc("p1", { traffic: [{ latestRevision: true, percent: 90 }] }),
    field: "spec.traffic",
    message: /100/,
  },
  {
    rule: "percent must be within 0..100",
    body: svc("p2", { traffic: [{ latestRevision: true, percent: 120 }] }),
    field: "spec.traffic[0].percent",
    message: /100/,
  },
  {
    rule: "tags must be unique",
    body: svc("t1", {
      traffic: [
        { latestRevision: true, percent: 100, tag: "a" },
        { revisionName: "existing-00001", percent: 0, tag: "a" },
      ],
    }),
    field: "spec.traffic[1].tag",
    message: /unique|already|duplicate/i,
  },
  {
    rule: "tags must be DNS-1035 labels",
    body: svc("t2", { traffic: [{ latestRevision: true, percent: 100, tag: "Bad_Tag" }] }),
    field: "spec.traffic[0].tag",
    message: /lower-case|DNS|letter/i,
  },
  {
    rule: "revisionName and latestRevision: true exclude each other",
    body: svc("x1", {
      traffic: [{ revisionName: "existing-00001", latestRevision: true, percent: 100 }],
    }),
    field: "spec.traffic[0]",
    message: /latestRevision/,
  },
  {
    rule: "configurationName is not allowed in a service's traffic",
    body: svc("x2", { traffic: [{ configurationName: "x2", percent: 100 }] }),
    field: "spec.traffic[0].configurationName",
    message: /latestRevision/,
  },
  {
    rule: "latestRevision: false needs a revisionName",
    body: svc("x3", { traffic: [{ latestRevision: false, percent: 100 }] }),
    field: "spec.traffic[0]",
    message: /revisionName/,
  },
  {
    rule: "traffic naming a revision that does not exist",
    body: svc("x4", { traffic: [{ revisionName: "nope-00009", percent: 100 }] }),
    field: "spec.traffic[0].revisionName",
    message: /does not exist/,
  },
  {
    rule: "PORT is a reserved env name",
    body: svc("e1", {}, container({ env: [{ name: "PORT", value: "1" }] })),
    field: "spec.template.spec.containers[0].env[0].name",
    message: /reserved/,
  },
  {
    rule: "K_* env names are reserved",
    body: svc("e2", {}, container({ env: [{ name: "K_SERVICE", value: "1" }] })),
    field: "spec.template.spec.containers[0].env[0].name",
    message: /reserved/,
  },
  {
    rule: "env names must be valid",
    body: svc("e3", {}, container({ env: [{ name: "1=bad", value: "1" }] })),
    field: "spec.template.spec.containers[0].env[0].name",
    message: /./,
  },
  {
    rule: "exactly one container",
    body: svc("c1", {}, { containers: [{ image: "a" }, { image: "b" }] }),
    field: "spec.template.spec.containers",
    message: /exactly one|one container/i,
  },
  {
    rule: "a container needs an image",
    body: svc("c2", {}, { containers: [{}] }),
    field: "spec.template.spec.containers[0].image",
    message: /required/i,
  },
  {
    rule: "containers and worker exclude each other",
    body: svc("c3", {}, { worker: { source: "export default {}" } }),
    field: "spec.template.spec",
    message: /containers|worker/,
  },
  {
    rule: "containerConcurrency is at most 1000",
    body: svc("c4", {}, { containerConcurrency: 1001 }),
    field: "spec.template.spec.containerConcurrency",
    message: /1000/,
  },
  {
    rule: "timeoutSeconds is at most 600",
    body: svc("c5", {}, { timeoutSeconds: 601 }),
    field: "spec.template.spec.timeoutSeconds",
    message: /600/,
  },
  {
    rule: "a containerPort is within 1..65535",
    body: svc("c6", {}, container({ ports: [{ containerPort: 70000 }] })),
    field: "spec.template.spec.containers[0].ports[0].containerPort",
    message: /65535/,
  },
  {
    rule: "unknown fields are refused with a suggestion",
    body: svc("c7", {}, { containers: [{ imag: "x", image: "y" }] }),
    field: "spec.template.spec.containers[0].imag",
    message: /image/,
  },
  {
    rule: "a memory limit must be a quantity",
    body: svc("c8", {}, container({ resources: { limits: { memory: "lots" } } })),
    field: "spec.template.spec.containers[0].resources.limits.memory",
    message: /quantity|Mi/,
  },
  {
    rule: "min-scale must be a whole number",
    body: svc("a1", {}, {}, { annotations: { [`${A}min-scale`]: "two" } }),
    field: `spec.template.metadata.annotations[${A}min-scale]`,
    message: /./,
  },
  {
    rule: "min-scale must not exceed max-scale",
    body: svc("a2", {}, {}, { annotations: { [`${A}min-scale`]: "5", [`${A}max-scale`]: "2" } }),
    field: `spec.template.metadata.annotations[${A}max-scale]`,
    message: /less than min-scale/,
  },
  {
    rule: "window must be between 6s and 1h",
    body: svc("a3", {}, {}, { annotations: { [`${A}window`]: "2s" } }),
    field: `spec.template.metadata.annotations[${A}window]`,
    message: /6s/,
  },
  {
    rule: "metric must be concurrency or rps",
    body: svc("a4", {}, {}, { annotations: { [`${A}metric`]: "cpu" } }),
    field: `spec.template.metadata.annotations[${A}metric]`,
    message: /concurrency|rps/,
  },
  {
    rule: "unknown autoscaling annotations are refused",
    body: svc("a5", {}, {}, { annotations: { [`${A}min-scal`]: "1" } }),
    field: `spec.template.metadata.annotations[${A}min-scal]`,
    message: /min-scale/,
  },
  {
    rule: "a chosen revision name must start with the service name",
    body: svc("r1", {}, {}, { name: "other-v1" }),
    field: "spec.template.metadata.name",
    message: /r1-/,
  },
  {
    rule: "a worker script larger than the limit",
    body: svc(
      "w1",
      {},
      worker({
        source: `export default { fetch() { return new Response("${"x".repeat(5000)}") } }`,
      }),
    ),
    field: "spec.template.spec.worker",
    message: /limit|large/i,
  },
  {
    rule: "TypeScript that does not compile",
    body: svc(
      "w2",
      {},
      worker({
        language: "typescript",
        source: "export default { fetch(: Request) { return 1 } }",
      }),
    ),
    field: "spec.template.spec.worker",
    message: /main\.ts:\d+:\d+/,
  },
  {
    rule: "a worker may not import from the network",
    body: svc(
      "w3",
      {},
      worker({
        source:
          'import x from "https://example.com/x.js"; export default { fetch() { return new Response(x) } }',
      }),
    ),
    field: "spec.template.spec.worker",
    message: /node:|own modules/,
  },
];

describe("validation", () => {
  for (const c of cases) {
    it(`${c.rule}: ${c.code ?? 422} naming ${c.field}`, async () => {
      const name = (c.body.metadata as { name?: string })?.name;
      const r = await api.call("POST", api.ns("services"), JSON.parse(JSON.stringify(c.body)));
      expect(r.status, r.text).toBe(c.code ?? 422);
      expect(r.json.kind).toBe("Status");
      const causes: { field: string; message: string }[] = r.json.details?.causes ?? [];
      const cause = causes.find((x) => x.field === c.field || x.field.startsWith(c.field));
      expect(cause, `causes were ${JSON.stringify(causes)}`).toBeDefined();
      expect(`${cause!.message} ${r.json.message}`).toMatch(c.message);
      if (name) expect((await api.call("GET", api.ns("services", name))).status).toBe(404);
    });
  }

  it("a user-chosen revision name must change when the template changes", async () => {
    const first = await api.call(
      "POST",
      api.ns("services"),
      svc("named", {}, {}, { name: "named-v1" }),
    );
    expect(first.status).toBe(201);
    expect(first.json.status.latestCreatedRevisionName).toBe("named-v1");
    const same = await api.call(
      "PUT",
      api.ns("services", "named"),
      svc("named", {}, container({ env: [{ name: "A", value: "2" }] }), { name: "named-v1" }),
    );
    expect(same.status).toBe(422);
    expect(same.json.details.causes[0].field).toBe("spec.template.metadata.name");
    const fresh = await api.call(
      "PUT",
      api.ns("services", "named"),
      svc("named", {}, container({ env: [{ name: "A", value: "2" }] }), { name: "named-v2" }),
    );
    expect(fresh.status).toBe(200);
    expect(fresh.json.status.latestCreatedRevisionName).toBe("named-v2");
  });
});
