/**
 * Throws thousands of malformed and hostile bodies at the API (JSON and real
 * YAML, deep nesting, anchors and aliases, huge strings and keys, bodies at
 * the size limit): never a 5xx, always a Status with a message, a refused
 * request never changes what is stored, and the work one body causes is
 * bounded (the slowest request and the heap growth are printed). Seeded, so a
 * failure reproduces.
 */

import { request } from "node:http";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify as toYaml } from "yaml";
import { serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { connect } from "../support/redis.ts";

let api: TestApi;
let redis: Redis;
beforeAll(async () => {
  api = await startTestApi();
  redis = connect();
  expect((await api.call("POST", api.ns("services"), serviceBody("seed"))).status).toBe(201);
});
afterAll(async () => {
  redis?.disconnect();
  await api?.close();
});

/** mulberry32: tiny deterministic PRNG. */
function prng(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ (t + Math.imul(t ^ (t >>> 14), 71 | t));
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WEIRD: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e308,
  -0,
  "",
  " ",
  "x".repeat(300),
  "ünïcödé",
  "\u0000",
  "../../etc",
  [],
  [null],
  {},
  { __proto__: { polluted: true } },
  "100%",
  "NaN",
  Number.MAX_SAFE_INTEGER + 2,
  [{ name: "PORT", value: "1" }],
  { "": "" },
  "<script>",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal injection probe, not a template
  "${jndi:x}",
];

function mutate(value: unknown, rand: () => number, depth = 0): unknown {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  if (value && typeof value === "object" && depth < 8 && rand() < 0.8) {
    const copy: Record<string, unknown> | unknown[] = Array.isArray(value)
      ? [...value]
      : { ...(value as object) };
    const keys = Object.keys(copy);
    const op = rand();
    if (op < 0.15 && keys.length) {
      const k = pick(keys);
      if (Array.isArray(copy)) copy.splice(Number(k), 1);
      else delete copy[k];
    } else if (op < 0.3 && !Array.isArray(copy)) {
      copy[pick(["extra", "imag", "__proto__", "constructor", "spec", "status", "metadata"])] =
        pick(WEIRD);
    } else if (op < 0.45 && keys.length) {
      const k = pick(keys);
      (copy as Record<string, unknown>)[k] = pick(WEIRD);
    } else if (keys.length) {
      const k = pick(keys);
      (copy as Record<string, unknown>)[k] = mutate(
        (copy as Record<string, unknown>)[k],
        rand,
        depth + 1,
      );
    }
    return copy;
  }
  return rand() < 0.5 ? pick(WEIRD) : value;
}

interface HostileCase {
  kind: string;
  body: string;
  type: string;
  method?: string;
  path?: string;
  /** What the refusal must say. */
  expect?: RegExp;
}

const JSON_TYPE = "application/json";
const YAML_TYPE = "application/yaml";
const LIMIT = 8 * 1024 * 1024;

/** The generated hostile bodies: a few huge ones, then thousands of small ones of every kind. */
function hostileCases(rand: () => number): HostileCase[] {
  const out: HostileCase[] = [];
  const int = (n: number) => Math.floor(rand() * n);
  const valid = serviceBody("fuzzed");
  const withSpec = (extra: Record<string, unknown>) => ({
    ...valid,
    spec: { ...valid.spec, ...extra },
  });

  // At and just under the size limit: a 2 MB unknown key (17.7 s before the fix), a huge value, junk.
  const bigKey = "k".repeat(2 * 1024 * 1024);
  out.push({
    kind: "2MB-unknown-key",
    type: JSON_TYPE,
    body: JSON.stringify(withSpec({ [bigKey]: 1 })),
    expect: /unknown field/,
  });
  out.push({
    kind: "2MB-unknown-key-yaml",
    type: YAML_TYPE,
    body: toYaml(withSpec({ [bigKey]: 1 })),
    expect: /unknown field/,
  });
  const nearLimitKey = "q".repeat(LIMIT - 2000);
  out.push({
    kind: "limit-unknown-key",
    type: JSON_TYPE,
    body: JSON.stringify(withSpec({ [nearLimitKey]: 1 })),
  });
  out.push({
    kind: "limit-string-yaml",
    type: YAML_TYPE,
    body: `apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: x\n  labels:\n    a: ${"v".repeat(LIMIT - 200)}\n`,
  });
  out.push({ kind: "over-limit", type: JSON_TYPE, body: `"${"x".repeat(LIMIT + 10)}"` });
  // Many unknown keys at once: one short answer, not a million causes.
  const manyKeys: Record<string, number> = {};
  for (let i = 0; i < 200_000; i++) manyKeys[`unknown${i}`] = i;
  out.push({
    kind: "200k-unknown-keys",
    type: JSON_TYPE,
    body: JSON.stringify(withSpec(manyKeys)),
  });
  out.push({
    kind: "100k-yaml-keys",
    type: YAML_TYPE,
    body: Array.from({ length: 100_000 }, (_, i) => `k${i}: v`).join("\n"),
    expect: /more than \d+ tokens/,
  });
  out.push({
    kind: "100k-yaml-list",
    type: YAML_TYPE,
    body: `spec: [${Array(100_000).fill("x").join(",")}]`,
    expect: /tokens/,
  });
  out.push({
    kind: "json-deep-1M",
    type: JSON_TYPE,
    body: "[".repeat(1_000_000),
    expect: /deeper/,
  });
  out.push({
    kind: "yaml-flow-deep-1M",
    type: YAML_TYPE,
    body: `a: ${"[".repeat(1_000_000)}`,
    expect: /deeper|tokens/,
  });

  // Thousands of small ones.
  const laughs = (levels: number, width: number, flow: boolean) => {
    const lines = [`l0: &l0 ${flow ? '["lol"]' : "lol"}`];
    for (let i = 1; i <= levels; i++)
      lines.push(
        `l${i}: &l${i} [${Array(width)
          .fill(`*l${i - 1}`)
          .join(", ")}]`,
      );
    return lines.join("\n");
  };
  /** A body as the content type says: real YAML for YAML (block or flow), JSON for JSON. */
  const encode = (type: string, value: unknown) =>
    type === YAML_TYPE
      ? toYaml(value, { collectionStyle: rand() < 0.3 ? "flow" : "block", lineWidth: 0 })
      : JSON.stringify(value);
  const validYaml = toYaml(valid);
  for (let i = 0; i < 2210; i++) {
    const k = i % 13;
    if (k === 0) {
      const levels = 2 + int(9);
      const width = 3 + int(8);
      // Small ones are within the alias budget (and then invalid Services); big ones are refused as such.
      out.push({
        kind: width ** levels > 10_000 ? "billion-laughs" : "few-laughs",
        type: YAML_TYPE,
        body: laughs(levels, width, rand() < 0.5),
        ...(width ** levels > 10_000 ? { expect: /aliases/ } : {}),
      });
    } else if (k === 1) {
      const depth = 65 + int(3000);
      out.push({
        kind: "json-deep",
        type: JSON_TYPE,
        body: JSON.stringify(withSpec({ x: 0 })).replace(
          '"x":0',
          `"x":${"[".repeat(depth)}${"]".repeat(depth)}`,
        ),
        expect: /deeper than 64/,
      });
    } else if (k === 2) {
      const depth = 65 + int(200);
      const lines = ["apiVersion: serving.knative.dev/v1", "kind: Service", "spec:"];
      for (let d = 0; d < depth; d++) lines.push(`${"  ".repeat(d + 1)}k${d}:`);
      out.push({ kind: "yaml-block-deep", type: YAML_TYPE, body: lines.join("\n") });
    } else if (k === 3) {
      const depth = 65 + int(3000);
      out.push({
        kind: "yaml-flow-deep",
        type: YAML_TYPE,
        body: `spec: ${"{a: ".repeat(depth)}1${"}".repeat(depth)}`,
        expect: /deeper than 64/,
      });
    } else if (k === 4) {
      // Long unknown keys of every length around the suggestion bound.
      const key = "x".repeat(40 + int(30_000));
      const type = rand() < 0.5 ? JSON_TYPE : YAML_TYPE;
      out.push({
        kind: "long-unknown-key",
        type,
        body: encode(type, withSpec({ [key]: 1 })),
        expect: /unknown field/,
      });
    } else if (k === 5) {
      // A plausible typo still gets its suggestion.
      const key = pickTypo(rand);
      out.push({
        kind: "typo",
        type: YAML_TYPE,
        body: toYaml(withSpec({ [key]: 1 })),
        expect: /did you mean "(template|traffic)"/,
      });
    } else if (k === 6) {
      const type = rand() < 0.5 ? JSON_TYPE : YAML_TYPE;
      out.push({
        kind: "huge-string-values",
        type,
        body: encode(type, {
          ...valid,
          metadata: { name: "n".repeat(1 + int(100_000)), labels: { a: "v".repeat(int(50_000)) } },
        }),
      });
    } else if (k === 7) {
      // Anchors within the alias budget but making the object invalid, and aliases to scalars.
      const n = 1 + int(40);
      out.push({
        kind: "yaml-anchors",
        type: YAML_TYPE,
        body: `apiVersion: &v serving.knative.dev/v1\nkind: *v\nmetadata: &m {name: *v}\nspec:\n  template: *m\n  traffic: [${Array(n).fill("*m").join(", ")}]\n`,
      });
    } else if (k === 8) {
      out.push({
        kind: "yaml-duplicate-keys-and-docs",
        type: YAML_TYPE,
        body:
          rand() < 0.5
            ? "apiVersion: a\napiVersion: b\n"
            : `${toYaml(valid)}---\n${toYaml(valid)}`.repeat(1 + int(20)),
      });
    } else if (k === 9) {
      // Mutated valid bodies as real YAML, sent as PUT, PATCH or POST.
      let body: unknown = valid;
      for (let r = 0; r < 1 + int(4); r++) body = mutate(body, rand);
      // Mutations may leave a valid body: an unknown field makes sure it is not.
      if (body && typeof body === "object" && !Array.isArray(body))
        body = { ...(body as object), [pickTypo(rand)]: true };
      const method = ["POST", "PUT", "PATCH"][int(3)]!;
      out.push({
        kind: `yaml-mutated-${method}`,
        type: YAML_TYPE,
        method,
        path: method === "POST" ? api.ns("services") : api.ns("services", "seed"),
        body: yamlOf(method === "PATCH" ? { spec: { template: body } } : body, rand),
      });
    } else if (k === 11) {
      // Tags, standard and not, on a scalar of the Service (each parsed, none a crash).
      const [tagged, mayBeValid] = TAGGED[int(TAGGED.length)]!;
      const line = [
        "name: fuzzed",
        "value: World",
        "kind: Service",
        "image: ghcr.io/knative/helloworld-go:latest",
      ][int(4)]!;
      const key = line.slice(0, line.indexOf(":"));
      let body = validYaml.replace(line, `${key}: ${tagged}`);
      // A tag that may leave a valid Service (e.g. !!str 123) gets an unknown field too.
      if (mayBeValid) body += `${pickTypo(rand)}: true\n`;
      out.push({ kind: "yaml-tags", type: YAML_TYPE, body });
    } else if (k === 12) {
      // Anchors on deep block mappings, aliases and merge keys (YAML 1.1's <<) into them.
      const depth = 2 + int(12);
      const lines = ["base: &base"];
      for (let d = 0; d < depth; d++) lines.push(`${"  ".repeat(d + 1)}k${d}:`);
      lines.push(`${"  ".repeat(depth + 1)}leaf: ${"s".repeat(int(5_000))}`);
      lines.push(
        "apiVersion: serving.knative.dev/v1",
        "kind: Service",
        "metadata: {name: merged}",
        "spec:",
        "  <<: *base",
        `  template: ${rand() < 0.5 ? "*base" : "{<<: *base}"}`,
      );
      out.push({ kind: "yaml-merge-deep-anchors", type: YAML_TYPE, body: `${lines.join("\n")}\n` });
    } else {
      // Invalid YAML syntax of many kinds.
      const junk = [
        "a: [",
        "a: {b",
        "- - - :",
        "&a *a",
        "!!binary x",
        "%YAML 9.9\n---\na: 1",
        "a: *nowhere",
        "? [a]\n: b",
        "\t- x",
      ][int(9)]!;
      out.push({ kind: "yaml-syntax", type: YAML_TYPE, body: `${junk}\n`.repeat(1 + int(3)) });
    }
  }
  return out;
}

/** YAML tags on a scalar: [text, whether the value might still make a valid Service]. */
const TAGGED: [string, boolean][] = [
  ["!!binary aGVsbG8gd29ybGQ=", false],
  ["!!timestamp 2001-12-14t21:59:43.10-05:00", true],
  ["!!set {a, b, c}", false],
  ["!!omap [a: 1, b: 2]", false],
  ["!!pairs [a: 1, a: 2]", false],
  ["!!map [1, 2]", false],
  ["!!seq {a: 1}", false],
  ["!!int not-a-number", true],
  ["!!float .nan", false],
  ["!!null something", true],
  ["!!bool maybe", true],
  ["!!str 123", true],
  ["!custom value", true],
  ["!<tag:yaml.org,2002:js/function> 'function () { return 1 }'", true],
  ["!<tag:example.com,2026:evil> {a: 1}", false],
  ["!e!undeclared value", true],
  ["!!python/object:os.system ['id']", false],
];

function pickTypo(rand: () => number): string {
  const typos = ["templte", "tempalte", "trafic", "trafficc", "Template", "teplate"];
  return typos[Math.floor(rand() * typos.length)]!;
}

async function snapshot(): Promise<string> {
  const keys = (await redis.keys(`${api.prefix}*`)).filter((k) => !k.endsWith(":rv")).sort();
  const parts: string[] = [];
  for (const k of keys) {
    const type = await redis.type(k);
    const v =
      type === "hash"
        ? await redis.hgetall(k)
        : type === "set"
          ? (await redis.smembers(k)).sort()
          : type === "string"
            ? await redis.get(k)
            : type;
    parts.push(`${k}=${JSON.stringify(v)}`);
  }
  return parts.join("\n");
}

/** How many YAML bodies were sent, and how many of them a JSON parser would refuse. */
const yamlSent = { total: 0, notJson: 0 };

/**
 * Real YAML for a body: block or flow style, and (when the same value appears
 * twice) anchors and aliases, which yaml's stringify makes for shared objects.
 */
function yamlOf(body: unknown, rand: () => number): string {
  const shared = rand() < 0.3 ? share(body) : body;
  const text = toYaml(shared, {
    collectionStyle: rand() < 0.3 ? "flow" : "block",
    aliasDuplicateObjects: true,
  });
  yamlSent.total += 1;
  try {
    JSON.parse(text);
  } catch {
    yamlSent.notJson += 1;
  }
  return text;
}

/** Make two places of a body refer to one object, so that YAML writes an anchor and an alias. */
function share(body: unknown): unknown {
  if (!body || typeof body !== "object" || Array.isArray(body)) return body;
  const b = structuredClone(body) as Record<string, unknown>;
  if (b.metadata && typeof b.metadata === "object")
    b.spec = { ...(b.spec as object), extra: b.metadata };
  return b;
}

describe("fuzz", () => {
  it("300 malformed service writes: no 5xx, refused ones store nothing", async () => {
    const rand = prng(20261122);
    const base = serviceBody("seed", {
      env: { TARGET: "x" },
      traffic: [{ latestRevision: true, percent: 100 }],
    });
    let before = await snapshot();
    const codes = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      let body = base as unknown;
      const rounds = 1 + Math.floor(rand() * 4);
      for (let r = 0; r < rounds; r++) body = mutate(body, rand);
      const method = rand() < 0.5 ? "PUT" : "POST";
      const path = method === "PUT" ? api.ns("services", "seed") : api.ns("services");
      const asYaml = rand() < 0.4;
      const payload = asYaml ? yamlOf(body, rand) : JSON.stringify(body);
      const res = await api.call(method, path, payload, {
        "content-type": asYaml ? "application/yaml" : "application/json",
      });
      codes.set(res.status, (codes.get(res.status) ?? 0) + 1);
      expect(
        res.status,
        `case ${i}: ${payload.slice(0, 300)} -> ${res.text.slice(0, 300)}`,
      ).toBeLessThan(500);
      const after = await snapshot();
      if (res.status >= 400) {
        expect(after, `case ${i} was refused (${res.status}) but changed the store`).toBe(before);
        expect(res.json?.kind).toBe("Status");
      }
      before = after;
    }
    // The fuzzer must actually reach validation, not only bounce off parsing.
    expect(codes.get(422) ?? 0).toBeGreaterThan(50);
    // And its YAML branch must emit YAML (before, it sent JSON labelled YAML).
    expect(yamlSent.notJson).toBeGreaterThan(0.6 * yamlSent.total);
  });

  it("thousands of hostile bodies: 4xx with a clear message, no 5xx, nothing stored, bounded time and memory", async () => {
    const rand = prng(20261201);
    const cases = hostileCases(rand);
    const before = await snapshot();
    const heapStart = process.memoryUsage().heapUsed;
    let heapMax = heapStart;
    let slowest = { ms: 0, name: "" };
    const byKind = new Map<string, Map<number, number>>();
    const msByKind = new Map<string, number>();
    for (const [i, c] of cases.entries()) {
      const started = performance.now();
      const res =
        c.kind === "over-limit"
          ? await declaredOnly(c.path ?? api.ns("services"), c.body.length, c.type)
          : await api.call(c.method ?? "POST", c.path ?? api.ns("services"), c.body, {
              "content-type": c.type,
            });
      const ms = performance.now() - started;
      if (ms > slowest.ms) slowest = { ms, name: c.kind };
      msByKind.set(c.kind, (msByKind.get(c.kind) ?? 0) + ms);
      heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
      const counts = byKind.get(c.kind) ?? new Map<number, number>();
      counts.set(res.status, (counts.get(res.status) ?? 0) + 1);
      byKind.set(c.kind, counts);
      const what = `case ${i} (${c.kind}, ${c.body.length} bytes) -> ${res.status} ${res.text.slice(0, 300)}`;
      expect(res.status, what).toBeGreaterThanOrEqual(400);
      expect(res.status, what).toBeLessThan(500);
      expect(res.json?.kind, what).toBe("Status");
      expect(typeof res.json?.message, what).toBe("string");
      expect(res.json.message.length, what).toBeGreaterThan(10);
      // A refusal never echoes a huge input back.
      expect(res.text.length, what).toBeLessThan(64 * 1024);
      if (c.expect) expect(res.json.message, what).toMatch(c.expect);
      // Comparing the store after every case is slow at this count; every 50th and the big ones.
      if (i % 50 === 0 || c.body.length > 100_000) expect(await snapshot(), what).toBe(before);
    }
    expect(await snapshot()).toBe(before);
    const summary = [...byKind.entries()]
      .map(
        ([k, m]) =>
          `${k}: ${[...m.entries()].map(([s, n]) => `${n}x${s}`).join(" ")} in ${Math.round(msByKind.get(k) ?? 0)} ms`,
      )
      .join("\n  ");
    console.log(
      `hostile bodies: ${cases.length} sent, 0 5xx\n  ${summary}\n` +
        `  slowest ${slowest.ms.toFixed(0)} ms (${slowest.name}); heap growth max ${((heapMax - heapStart) / 1048576).toFixed(0)} MiB`,
    );
    expect(cases.length).toBeGreaterThanOrEqual(2000);
    // The YAML bodies are YAML: most of them are not JSON as well.
    const yamlBodies = cases.filter((c) => c.type === YAML_TYPE);
    const notJson = yamlBodies.filter((c) => {
      try {
        JSON.parse(c.body);
        return false;
      } catch {
        return true;
      }
    });
    expect(notJson.length).toBeGreaterThan(0.9 * yamlBodies.length);
    // Generous bounds for a shared, noisy machine; before the fix one 2 MB key took 17.7 s and 530 MB.
    expect(slowest.ms).toBeLessThan(8_000);
    expect(heapMax - heapStart).toBeLessThan(400 * 1048576);
  }, 300_000);

  it("raw garbage bytes and odd content types never give a 5xx", async () => {
    const rand = prng(7);
    const before = await snapshot();
    for (let i = 0; i < 100; i++) {
      const bytes = Array.from({ length: Math.floor(rand() * 200) }, () =>
        String.fromCharCode(Math.floor(rand() * 256)),
      ).join("");
      const type = [
        "application/json",
        "application/yaml",
        "text/plain",
        "application/merge-patch+json",
      ][i % 4]!;
      const method = ["POST", "PUT", "PATCH"][i % 3]!;
      const res = await api.call(
        method,
        method === "POST" ? api.ns("services") : api.ns("services", "seed"),
        bytes,
        {
          "content-type": type,
        },
      );
      expect(res.status, `garbage ${i} ${type} -> ${res.text.slice(0, 200)}`).toBeLessThan(500);
      expect(res.status).toBeGreaterThanOrEqual(400);
    }
    expect(await snapshot()).toBe(before);
  });
});

/**
 * A body over the limit is refused by its declared length, before it is read:
 * the headers alone must get the 413. (Uploading all of it races the server's
 * bounded drain of a refused body on a loaded machine: the client may see the
 * connection closed under its upload before it reads the answer.)
 */
function declaredOnly(
  path: string,
  length: number,
  type: string,
): Promise<{ status: number; text: string; json: { kind?: string; message: string } }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, api.url), {
      method: "POST",
      headers: {
        authorization: `Bearer ${api.token}`,
        "content-type": type,
        "content-length": String(length),
      },
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, text, json: JSON.parse(text) });
      });
    });
    req.on("error", reject);
    req.flushHeaders();
  });
}
