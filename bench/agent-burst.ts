/**
 * Issue 12's KPA step, the agent's part: N container instances of one
 * revision asked for at once, each timed through the start path (image,
 * create, start, port, first passing readiness probe, first answer on its
 * published port), beside N plain `docker run -d -p 127.0.0.1:P:8080` of the
 * same image at once in the same run (Docker's own pace on this host).
 *
 * With --step, also issue 12's KPA step through a private `skiff up` (0 -> 100
 * closed-loop clients, target 10, each request sleeping 100 ms) and the
 * timeline of each instance it starts: desired written (the scaler, Redis)
 * -> seen by the agent -> docker create -> docker start -> started (port
 * known, readiness passed: the agent's debug log) -> endpoint in Redis.
 *
 *   node bench/agent-burst.ts [--instances 10] [--trials 1] [--concurrency N] [--step] [--no-runtime]
 *
 * Only 127.0.0.1 is talked to; every wait is bounded; everything started is removed.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import Docker from "dockerode";
import { ContainerRuntime } from "../agent/container/runtime.ts";
import type { StartedInstance } from "../agent/container/runtime-types.ts";
import { buildCli } from "../scripts/build-cli.ts";
import { fleetKeys } from "../src/fleet/keys.ts";
import { connectRedis } from "../src/redis/connect.ts";
import { helloImage } from "../test/support/images.ts";
import { dockerRuns } from "./docker-runs.ts";
import { firstResponse } from "./first-response.ts";
import { allReady, startSkiffUp } from "./skiff-up.ts";
import { type Summary, summarize } from "./stats.ts";

const { values } = parseArgs({
  options: {
    instances: { type: "string", default: "10" },
    trials: { type: "string", default: "1" },
    concurrency: { type: "string" },
    step: { type: "boolean", default: false },
    "no-runtime": { type: "boolean", default: false },
    "step-seconds": { type: "string", default: "12" },
  },
});
const N = Number(values.instances);
const TRIALS = Number(values.trials);
const TIMEOUT_MS = 60_000;

const ms = (x: number) => Math.round(x);
const line = (s: Summary) =>
  `first ${ms(s.min)} ms, p50 ${ms(s.p50)} ms, last ${ms(s.max)} ms (n=${s.n})`;

interface Timeline {
  resolved: number;
  ready: number;
  answered: number;
  timings: StartedInstance["timings"];
}

/** N ContainerRuntime.start()s of one revision at once (what the agent does for N desired instances). */
async function runtimeStarts(
  image: string,
  clusterId: string,
  sandboxes: number,
): Promise<Timeline[]> {
  const owner = `bench-agent-burst-${randomBytes(3).toString("hex")}`;
  const rt = new ContainerRuntime({
    owner,
    clusterId,
    startupTimeoutMs: TIMEOUT_MS,
    sandboxes: { count: sandboxes },
    ...(values.concurrency ? { startConcurrency: Number(values.concurrency) } : {}),
  });
  // As an agent starts: adopt() fills the pool of network sandboxes; the burst comes once it is full.
  await rt.adopt();
  const filled = performance.now() + TIMEOUT_MS;
  while (rt.readySandboxes() < sandboxes && performance.now() < filled) await sleep(50);
  const ids = Array.from({ length: N }, (_, i) => `burst-${i}-${randomBytes(2).toString("hex")}`);
  const t0 = performance.now();
  try {
    return await Promise.all(
      ids.map(async (instanceId) => {
        const s = await rt.start({
          instanceId,
          namespace: "bench",
          service: "burst",
          configuration: "burst",
          revision: "burst-00001",
          timeoutSeconds: 30,
          containerConcurrency: 0,
          container: { image },
        });
        const ready = performance.now() - t0;
        const answered = await firstResponse(s.port, t0, { timeoutMs: TIMEOUT_MS, everyMs: 10 });
        return { resolved: ready - s.timings.totalMs, ready, answered, timings: s.timings };
      }),
    );
  } finally {
    await Promise.all(ids.map((id) => rt.stop(id, { drainMs: 0 }).catch(() => undefined)));
    await rt.close();
  }
}

const image = await helloImage(new Docker());
const clusterId = `b${randomBytes(5).toString("hex")}`;
for (let trial = 1; trial <= (values["no-runtime"] ? 0 : TRIALS); trial++) {
  // Docker's pace on its default bridge, and on a bridge like Skiff's (ICC off).
  const runs = { count: N, bench: "agent-burst", timeoutMs: TIMEOUT_MS };
  const base = (await dockerRuns(image, runs)).times;
  const isolated = (await dockerRuns(image, { ...runs, isolated: true })).times;
  const bare = await runtimeStarts(image, clusterId, 0);
  const skiff = await runtimeStarts(image, clusterId, N);
  const b = summarize(base);
  const bi = summarize(isolated);
  const r = summarize(skiff.map((x) => x.ready));
  console.log(`trial ${trial}: ${N} at once`);
  console.log(`  docker run (first answer): ${line(b)}`);
  console.log(`  docker run, ICC-off user-defined bridge: ${line(bi)}`);
  console.log(`  runtime ready, no sandbox: ${line(summarize(bare.map((x) => x.ready)))}`);
  console.log(`  runtime ready, ${N} sandboxes ready: ${line(r)}`);
  console.log(`  runtime first answer:      ${line(summarize(skiff.map((x) => x.answered)))}`);
  console.log(
    `  last ready / last docker run: ${(r.max / b.max).toFixed(2)}x; / last on such a bridge: ${(r.max / bi.max).toFixed(2)}x`,
  );
  for (const x of [...skiff].sort((a, c) => a.ready - c.ready)) {
    const t = x.timings;
    console.log(
      `    image ${ms(t.imageMs)} queued ${ms(t.queuedMs)} create ${ms(t.createMs)} start ${ms(t.startMs)} ready-wait ${ms(t.readyMs)} -> ready at ${ms(x.ready)} ms`,
    );
  }
}

if (values.step) await kpaStep();

/** Issue 12's KPA step through a private `skiff up`, with each instance's timeline. */
async function kpaStep(): Promise<void> {
  const STEP_MS = Number(values["step-seconds"]) * 1000;
  const CLIENTS = 100;
  const MAX_REQUESTS = 100_000;
  await buildCli();
  const up = await startSkiffUp({
    label: "agent-burst",
    containers: true,
    logLevel: "debug",
    config: {
      autoscaler: { allowZeroInitialScale: true },
      agent: {
        capacity: { cpuMillis: 40_000, maxInstances: 200 },
        ...(values.concurrency ? { containerStartConcurrency: Number(values.concurrency) } : {}),
      },
    },
  });
  const redis = connectRedis(
    `redis://:${readFileSync(join(up.stateDir, "redis.password"), "utf8").trim()}@127.0.0.1:${readFileSync(join(up.stateDir, "redis.port"), "utf8").trim()}`,
  );
  const keys = fleetKeys("skiff:");
  const events = new Docker();
  let stream: NodeJS.ReadableStream | undefined;
  try {
    const file = join(up.home, "step.yaml");
    writeFileSync(
      file,
      `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: step
  namespace: step
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/initial-scale: "0"
        autoscaling.knative.dev/target: "10"
    spec:
      containers:
        - image: ${image}
`,
    );
    const applied = await up.cli(["apply", "-f", file]);
    if (applied.code !== 0) throw new Error(`apply failed:\n${applied.out}`);
    const r = await allReady(up.api, "step", 1, performance.now(), 120_000);
    if (r.ms === undefined) throw new Error("step service not Ready within 120 s");
    const epKey = keys.endpoints("step", "step-00001");
    for (const deadline = performance.now() + 30_000; (await redis.hlen(epKey)) > 0; ) {
      if (performance.now() > deadline) throw new Error("step: not at zero within 30 s");
      await sleep(100);
    }
    // The agent's desired set (absent at zero until the scaler writes one).
    let desiredKey: string | undefined;

    // Docker's own view: create and start of each instance's container (by its label).
    const dockerSeen = new Map<string, { create?: number; start?: number }>();
    stream = (await events.getEvents({
      filters: JSON.stringify({
        type: ["container"],
        event: ["create", "start"],
        label: ["skiff.instance"],
      }),
    })) as NodeJS.ReadableStream;
    let buf = "";
    stream.on("data", (chunk: Buffer) => {
      buf += chunk.toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const ev = JSON.parse(buf.slice(0, i)) as {
          Action: string;
          timeNano: number;
          Actor: { Attributes: Record<string, string> };
        };
        buf = buf.slice(i + 1);
        const id = ev.Actor.Attributes["skiff.instance"];
        if (!id) continue;
        const seen = dockerSeen.get(id) ?? {};
        if (ev.Action === "create" || ev.Action === "start") seen[ev.Action] = ev.timeNano / 1e6;
        dockerSeen.set(id, seen);
      }
    });

    const epoch = Date.now();
    const t0 = performance.now();
    const until = t0 + STEP_MS;
    const gw = new Agent({ keepAlive: true, maxSockets: CLIENTS });
    let sent = 0;
    let failed = 0;
    const statuses = new Set<string>();
    const client = async () => {
      while (performance.now() < until && sent < MAX_REQUESTS) {
        sent++;
        const status = await hit(up.ports.gateway, gw);
        if (status !== 200) {
          failed++;
          statuses.add(String(status));
        }
      }
    };
    // Redis as the scaler wrote it (desired) and as gateways read it (endpoints), every 25 ms.
    const desiredAt = new Map<string, number>();
    const endpointAt = new Map<string, number>();
    const watch = (async () => {
      while (performance.now() < until) {
        desiredKey ??= (await redis.keys(keys.desired("*")))[0];
        const [d, e] = await Promise.all([
          desiredKey ? redis.hkeys(desiredKey) : [],
          redis.hkeys(epKey),
        ]);
        const now = Date.now();
        for (const id of d) if (!desiredAt.has(id)) desiredAt.set(id, now);
        for (const id of e) if (!endpointAt.has(id)) endpointAt.set(id, now);
        await sleep(25);
      }
    })();
    await Promise.all([...Array.from({ length: CLIENTS }, client), watch]);
    gw.destroy();

    const lines = up
      .output()
      .split("\n")
      .flatMap((l) => {
        if (!l.startsWith("{")) return [];
        try {
          const o = JSON.parse(l) as Record<string, unknown>;
          return Number(o.time) >= epoch ? [o] : [];
        } catch {
          return [];
        }
      });
    const agentSaw = new Map<string, number>();
    for (const l of lines.filter((x) => x.msg === "starting desired instances")) {
      for (const id of l.start as string[]) if (!agentSaw.has(id)) agentSaw.set(id, Number(l.time));
    }
    const started = new Map(
      lines.filter((x) => x.msg === "container started").map((x) => [String(x.instance), x]),
    );
    const wanted = lines
      .filter((l) => l.revision === "step/step-00001" && typeof l.to === "number")
      .map((l) => `${l.to} at ${ms(Number(l.time) - epoch)}`);
    const rel = (t: number | undefined) => (t === undefined ? "-" : String(ms(t - epoch)));
    const ids = [...new Set([...agentSaw.keys(), ...desiredAt.keys()])];
    const rows = ids
      .map((id) => {
        const st = started.get(id) as Record<string, number> | undefined;
        const dk = dockerSeen.get(id) ?? {};
        return {
          id,
          desired: desiredAt.get(id),
          agent: agentSaw.get(id),
          create: dk.create,
          start: dk.start,
          started: st ? Number(st.time) : undefined,
          endpoint: endpointAt.get(id),
          st,
        };
      })
      .sort((a, b) => (a.endpoint ?? Infinity) - (b.endpoint ?? Infinity));
    console.log(
      `KPA step: ${CLIENTS} clients for ${STEP_MS / 1000} s; ${failed} of ${sent} failed ${[...statuses].join(",")}`,
    );
    console.log(`scaler wanted: ${wanted.join(", ")}`);
    console.log(
      "ms after the step: desired | agent saw | docker create | docker start event | started (ready) | endpoint in Redis || queued create start ready (agent's timings)",
    );
    for (const r of rows) {
      const t = r.st;
      console.log(
        `  ${r.id.padEnd(24)} ${rel(r.desired)} | ${rel(r.agent)} | ${rel(r.create)} | ${rel(r.start)} | ${rel(r.started)} | ${rel(r.endpoint)} || ${t ? `${t.queuedMs} ${t.createMs} ${t.startMs} ${t.readyMs}${t.resumed ? " (resumed)" : ""}` : "-"}`,
      );
    }
    const ready = [...endpointAt.values()].map((t) => t - epoch).sort((a, b) => a - b);
    console.log(
      `ready endpoints: 1 at ${ready[0] ?? "-"}, 5 at ${ready[4] ?? "-"}, 10 at ${ready[9] ?? "-"} ms`,
    );
  } finally {
    (stream as { destroy?: () => void } | undefined)?.destroy?.();
    await redis.quit().catch(() => undefined);
    await up.stop();
  }
}

/** One GET through the gateway (Host: the step service); its status, or the error's text. */
function hit(port: number, agent: Agent): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/?sleep=100",
        headers: { host: "step.step.localhost" },
        agent,
        timeout: 30_000,
      },
      (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.once("timeout", () => req.destroy(new Error("timeout")));
    req.once("error", (e) => resolve(e.message));
    req.end();
  });
}
