/**
 * Throws a few hundred malformed bodies at the API: never a 5xx, and a refused
 * request never changes what is stored. Seeded, so a failure reproduces.
 */

import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
      const asYaml = rand() < 0.2;
      const payload = asYaml ? JSON.stringify(body) : JSON.stringify(body);
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
  });

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
