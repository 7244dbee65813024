/**
 * Malformed bodies must only ever produce a ValidationError (never a
 * TypeError or a partial result): the deploy API maps anything else to 500.
 * Deterministic: a seeded generator mutates a valid Service at random paths.
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import {
  parseConfiguration,
  parseService,
  validateTraffic,
  validateWorkerShape,
} from "../../../src/model/index.ts";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ODD_VALUES: unknown[] = [
  null,
  undefined,
  0,
  -1,
  1.5,
  Number.POSITIVE_INFINITY,
  Number.NaN,
  "",
  " ",
  "x".repeat(300),
  "K_SERVICE",
  "../x",
  true,
  [],
  [null],
  {},
  { __proto__: { image: "x" } },
  { constructor: "x" },
  Object.create(null),
  JSON.parse('{"__proto__": {"image": "x"}, "constructor": {}}'),
];

function validService(): Record<string, unknown> {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Service",
    metadata: {
      name: "hello",
      labels: { a: "b" },
      annotations: { "autoscaling.knative.dev/min-scale": "1" },
    },
    spec: {
      template: {
        metadata: { name: "hello-v1", annotations: { "autoscaling.knative.dev/window": "40s" } },
        spec: {
          containerConcurrency: 10,
          containers: [
            {
              image: "nginx",
              env: [{ name: "A", value: "1" }],
              ports: [{ containerPort: 8080, name: "http1" }],
              resources: { limits: { cpu: "1", memory: "128Mi" } },
              readinessProbe: { httpGet: { path: "/", httpHeaders: [{ name: "x", value: "y" }] } },
            },
          ],
        },
      },
      traffic: [
        { revisionName: "hello-v1", percent: 50, tag: "old" },
        { latestRevision: true, percent: 50 },
      ],
    },
  };
}

/** All paths to values inside `v`. */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      out.push(...paths(x, [...prefix, i]));
    });
  } else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  }
  return out;
}

function setAt(root: Record<string, unknown>, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  let cur = root as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) cur = cur[key] as Record<string | number, unknown>;
  cur[path[path.length - 1]!] = value;
  return root;
}

function expectOnlyValidationErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    expect(err.causes.length).toBeGreaterThan(0);
    for (const c of err.causes) expect(typeof c.message).toBe("string");
  }
}

describe("fuzzed bodies", () => {
  it("500 single-field mutations of a valid Service give only ValidationErrors or valid results", () => {
    const rand = rng(42);
    const all = paths(validService());
    for (let i = 0; i < 500; i++) {
      const body = validService();
      const path = all[Math.floor(rand() * all.length)]!;
      const value = ODD_VALUES[Math.floor(rand() * ODD_VALUES.length)];
      const mutated = setAt(body, path, value);
      expectOnlyValidationErrors(() => parseService(mutated, { namespace: "default" }));
      expectOnlyValidationErrors(() => parseConfiguration(mutated, { namespace: "default" }));
    }
  });

  it("odd values in place of whole lists and objects never crash the sub-validators", () => {
    for (const v of ODD_VALUES) {
      expect(() => validateTraffic(v, { owner: "service" })).not.toThrow();
      expect(() => validateTraffic([v], { owner: "route" })).not.toThrow();
      expect(() => validateWorkerShape(v)).not.toThrow();
      expect(() => validateWorkerShape({ modules: [v] })).not.toThrow();
    }
  });
});
