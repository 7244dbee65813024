/**
 * The resource store on a private redis-server against the in-process store
 * (memory://, what `skiff up` uses without redis-server):
 * `node bench/store.ts`
 *
 * - commit: one transaction putting one Service (read, check, Lua commit);
 * - get: one object by name;
 * - list: a namespace of 100 Services;
 * - commit under contention: 8 writers on one object at once, each retrying
 *   until its commit lands.
 *
 * Latencies are measured one at a time from this process (no pipelining).
 * Writes bench/RESULTS-store.md. Everything runs on 127.0.0.1.
 */
import { writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import type { Service } from "../src/model/types.ts";
import { startRedisServer } from "../src/redis/server.ts";
import { createRedisStore, type RedisStore } from "../src/store/redis-store.ts";
import { type Summary, summarize } from "./stats.ts";

const N = 500;
const LIST_SIZE = 100;
const WRITERS = 8;

function service(name: string, generation = 1): Service {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Service",
    metadata: {
      name,
      namespace: "bench",
      uid: `uid-${name}`,
      generation,
      creationTimestamp: "2026-11-30T00:00:00Z",
    },
    spec: {
      template: {
        spec: {
          containerConcurrency: 0,
          timeoutSeconds: 300,
          containers: [{ image: "example/hello", env: [{ name: "TARGET", value: "World" }] }],
        },
      },
      traffic: [{ latestRevision: true, percent: 100 }],
    },
    status: { conditions: [], observedGeneration: generation },
  } as unknown as Service;
}

async function timed(n: number, op: (i: number) => Promise<unknown>): Promise<Summary> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op(i);
    samples.push(performance.now() - t0);
  }
  return summarize(samples);
}

async function measure(store: RedisStore): Promise<Record<string, Summary>> {
  // Warm-up: scripts loaded, connections open, JIT warm.
  for (let i = 0; i < 50; i++) await store.transact(async (tx) => tx.put(service(`warm-${i}`)));
  const commit = await timed(N, (i) => store.transact(async (tx) => tx.put(service(`s-${i}`))));
  const get = await timed(N, (i) => store.get("services", "bench", `s-${i % N}`));
  for (let i = 0; i < LIST_SIZE; i++) {
    await store.transact(async (tx) =>
      tx.put({
        ...service(`l-${i}`),
        metadata: { ...service(`l-${i}`).metadata, namespace: "listed" },
      } as Service),
    );
  }
  const list = await timed(100, () => store.list("services", "listed"));
  // Contention: every writer reads the object and writes it back; lost races re-run.
  const contended: number[] = [];
  for (let round = 0; round < 20; round++) {
    await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        const t0 = performance.now();
        await store.transact(
          async (tx) => {
            const cur = await tx.get("services", "bench", "hot");
            tx.put(service("hot", (cur?.metadata.generation ?? 0) + 1));
          },
          { maxAttempts: 100 },
        );
        contended.push(performance.now() - t0);
      }),
    );
  }
  return { commit, get, list, contended: summarize(contended) };
}

const ms = (v: number) => v.toFixed(2);

async function main() {
  const server = await startRedisServer();
  const results: Record<string, Record<string, Summary>> = {};
  try {
    const redis = await createRedisStore({ url: server.url, prefix: "bench:" });
    results["redis-server"] = await measure(redis);
    await redis.close();
  } finally {
    await server.stop();
  }
  const memory = await createRedisStore({ url: "memory://bench", prefix: "bench:" });
  results["in-process (memory://)"] = await measure(memory);
  await memory.close();

  const labels: Record<string, string> = {
    commit: "commit (put one Service)",
    get: "get one object",
    list: `list ${LIST_SIZE} objects`,
    contended: `commit, ${WRITERS} writers on one object`,
  };
  const lines = [
    "# Store benchmark: redis-server against the in-process store",
    "",
    "`node bench/store.ts`. What it measures is in the file's header. Milliseconds, one",
    "operation at a time from one process.",
    "",
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
    "",
    "| operation | store | n | p50 | p95 | max |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const op of Object.keys(labels)) {
    for (const [store, r] of Object.entries(results)) {
      const s = r[op]!;
      lines.push(
        `| ${labels[op]} | ${store} | ${s.n} | ${ms(s.p50)} | ${ms(s.p95)} | ${ms(s.max)} |`,
      );
    }
  }
  const text = `${lines.join("\n")}\n`;
  await writeFile(new URL("./RESULTS-store.md", import.meta.url), text);
  process.stdout.write(text);
}

await main();
