/**
 * Issue 11, "Hostile HTTP at the gateway": slowloris, header floods and
 * malformed requests (duplicate Host for the very service under load,
 * garbage, conflicting lengths) run alongside steady, bounded legitimate
 * traffic. The legitimate traffic's failures and p50 are measured alone
 * alone (baseline) right before and right after the attack, and under
 * attack, in the same test, and printed; under attack they stay within 1%
 * failures and 2x the baseline p50. The machine is shared (other test files,
 * other work): the baseline is the slower of the two that bracket the attack,
 * so a load change on the machine during the test is not taken for the
 * attack's effect.
 *
 * The gateway runs in its own process (as `skiff gateway` does) with a
 * SHORTENED headersTimeoutMs of 1500 ms (default 10 s) so that slowloris
 * connections are cut within the test's time; every other limit is the
 * default. Attack loops are paced, so the attack is bounded too.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { setPriority } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Backend,
  type GatewayProcess,
  hit,
  spawnGateway,
  startBackend,
  startTestGateway,
  TestScaler,
} from "../gateway/support.ts";
import { uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";
import type { AttackPlan, AttackStats } from "./gateway-attacker.ts";

const ATTACKER = join(dirname(fileURLToPath(import.meta.url)), "gateway-attacker.ts");

const prefix = uniquePrefix("sec-hostile");
const scaler = new TestScaler(prefix);
const HEADERS_TIMEOUT_MS = 1_500;
const HOST = "steady.default.localhost";
let gw: GatewayProcess;
let backend: Backend;

beforeAll(async () => {
  await scaler.agent();
  backend = await startBackend("steady");
  await scaler.route("default", "steady", [{ revision: "steady-00001", percent: 100 }]);
  await scaler.endpoint("default", "steady-00001", backend);
  gw = await spawnGateway(prefix, { headersTimeoutMs: HEADERS_TIMEOUT_MS });
  await waitFor(
    "the gateway routing the service",
    async () => (await hit(gw.url, HOST)).status === 200,
    10_000,
    50,
  );
});

afterAll(async () => {
  await gw?.stop();
  await backend?.close();
  await scaler.close();
});

interface Phase {
  sent: number;
  failed: number;
  p50: number;
  p99: number;
}

/** `workers` loops of sequential keep-alive requests for `ms`; latencies in ms. */
async function legitimate(url: string, ms: number, workers = 4): Promise<Phase> {
  const agent = new Agent({ connections: workers, keepAliveTimeout: 10_000 });
  const latencies: number[] = [];
  let failed = 0;
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          const res = await request(`${url}/`, {
            headers: { host: HOST },
            dispatcher: agent,
            headersTimeout: 10_000,
            bodyTimeout: 10_000,
          });
          await res.body.text();
          if (res.statusCode !== 200) failed++;
        } catch {
          failed++;
        }
        latencies.push(performance.now() - t);
        // Steady, bounded: about 200 requests/s per worker at most (the load's pace, not a wait).
        await sleep(5);
      }
    }),
  );
  await agent.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return { sent: latencies.length, failed, p50: q(0.5), p99: q(0.99) };
}

describe("hostile HTTP alongside legitimate traffic", () => {
  it("keeps the legitimate traffic's failures within 1% and p50 within 2x of its baseline", async () => {
    const PHASE_MS = 5_000;
    // Warm up connections and JIT, then the baseline, alone.
    await legitimate(gw.url, 500);
    const before = await legitimate(gw.url, PHASE_MS);

    // The attacker runs in its own process for the measured phase (plus a lead-in).
    const LEAD_MS = 1_000;
    const plan: AttackPlan = {
      url: gw.url,
      host: HOST,
      durationMs: LEAD_MS + PHASE_MS,
      slowloris: 300,
      paceMs: 20,
    };
    const child = spawn(process.execPath, [ATTACKER, JSON.stringify(plan)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    // Attackers are normally other machines: at the lowest CPU priority here, the
    // attacker process does not take the CPU from the gateway and the test's
    // client, so what is measured is the gateway's own resistance.
    if (child.pid !== undefined) setPriority(child.pid, 19);
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += String(d);
    });
    const exited = once(child, "exit");
    // Let the slowloris connections pile up before measuring (the attack plan's lead-in).
    await sleep(LEAD_MS);
    const underAttack = await legitimate(gw.url, PHASE_MS);
    await exited;
    const stats = JSON.parse(out) as AttackStats;
    const after = await legitimate(gw.url, PHASE_MS);
    const baseline = after.p50 > before.p50 ? after : before;

    const line = (name: string, p: Phase) =>
      `${name}: sent ${p.sent}, failed ${p.failed} (${((100 * p.failed) / Math.max(1, p.sent)).toFixed(2)}%), p50 ${p.p50.toFixed(2)} ms, p99 ${p.p99.toFixed(2)} ms`;
    console.log(
      [
        `gateway headersTimeoutMs ${HEADERS_TIMEOUT_MS} (shortened for the test; default 10000), other limits default`,
        line("baseline before", before),
        line("baseline after ", after),
        line("under attack   ", underAttack),
        `p50 ratio ${(underAttack.p50 / baseline.p50).toFixed(2)}x (limit 2x), failures limit 1%`,
        `slowloris: 300 connections at once, ${stats.slowlorisOpened} opened in all, ${stats.slowlorisCutByGateway} cut by the gateway, longest held ${stats.slowlorisLongestMs.toFixed(0)} ms`,
        `header floods (status -> count): ${JSON.stringify(stats.floods)}`,
        `malformed (status -> count): ${JSON.stringify(stats.malformed)}`,
      ].join("\n"),
    );
    expect(underAttack.failed).toBeLessThanOrEqual(Math.floor(underAttack.sent * 0.01));
    expect(before.failed + after.failed).toBe(0);
    expect(underAttack.p50).toBeLessThanOrEqual(2 * baseline.p50);
    // Every slowloris connection was cut by the gateway (without headersTimeout
    // none ever is). How long one was held is seen by the attacker, which runs
    // at the lowest priority and may notice late on a loaded machine: the
    // bound is loose on purpose (the gateway cuts at 1.5 s + its 375 ms check).
    expect(stats.slowlorisCutByGateway).toBeGreaterThanOrEqual(300);
    expect(stats.slowlorisLongestMs).toBeLessThan(10_000);
    // Oversized heads: 431; too many headers within the size limit still route (200).
    expect(Object.keys(stats.floods).sort()).toEqual(
      ["200", "431"].filter((k) => k in stats.floods),
    );
    expect(stats.floods["431"]).toBeGreaterThan(0);
    // Malformed: only 400s, never proxied into a 5xx.
    expect(Object.keys(stats.malformed)).toEqual(["400"]);
  });
});

describe("per-gateway limits", () => {
  it("answers a body over maxBodyBytes with 413 (declared or chunked) and passes one under it", async () => {
    const small = await startTestGateway(prefix, { maxBodyBytes: 1024 });
    try {
      await small.resync();
      const declared = await hit(small.url, HOST, { method: "POST", body: "x".repeat(2048) });
      console.log(
        `declared 2048 bytes over a 1024 limit -> ${declared.status} ${declared.body.trim()}`,
      );
      expect(declared.status).toBe(413);
      expect(declared.body).toContain("maxBodyBytes");
      async function* chunks() {
        for (let i = 0; i < 8; i++) yield Buffer.alloc(512, 0x61);
      }
      const chunked = await hit(small.url, HOST, { method: "POST", body: chunks() });
      console.log(
        `chunked 4096 bytes over a 1024 limit -> ${chunked.status} ${chunked.body.trim()}`,
      );
      expect(chunked.status).toBe(413);
      const ok = await hit(small.url, HOST, { method: "POST", body: "x".repeat(1000) });
      expect(ok.status).toBe(200);
    } finally {
      await small.close(1_000);
    }
  });

  it("closes connections beyond maxConnections at once while the ones it holds keep working", async () => {
    const small = await startTestGateway(prefix, { maxConnections: 20 });
    const held: Socket[] = [];
    try {
      await small.resync();
      const { hostname, port } = new URL(small.url);
      for (let i = 0; i < 20; i++) {
        const s = connect(Number(port), hostname);
        s.on("error", () => {});
        await once(s, "connect");
        held.push(s);
      }
      // The last one answering proves the server has accepted (and counts) all 20.
      const last = held[19] as Socket;
      const head = new Promise<void>((resolve) => {
        let data = "";
        last.on("data", (d: Buffer) => {
          data += String(d);
          if (data.includes("\r\n\r\n")) resolve();
        });
      });
      last.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      await head;
      const extra = connect(Number(port), hostname);
      extra.on("error", () => {});
      const closedAt = performance.now();
      await once(extra, "close");
      console.log(
        `connection 21 of maxConnections 20 closed after ${(performance.now() - closedAt).toFixed(0)} ms`,
      );
      // One of the held connections still serves.
      const first = held[0] as Socket;
      first.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
      let data = "";
      first.on("data", (d: Buffer) => {
        data += String(d);
      });
      await once(first, "close");
      expect(data).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const s of held) s.destroy();
      await small.close(1_000);
    }
  });
});
