/**
 * Cold start of one container instance, request to first response:
 *
 *   skiff       ContainerRuntime.start() (image check, bridge, port, create,
 *               start, readiness probe every 10 ms) and then one GET / -> 200;
 *               the container has its own netns on the cluster bridge and its
 *               port published on the loopback data address
 *   api bridge  dockerode createContainer + start with the same bridge and a
 *               published port, GET / polled every 5 ms
 *   cli bridge  `docker run -d --network <bridge> -p 127.0.0.1:P:8080`, GET /
 *               polled every 5 ms from the moment the CLI is spawned
 *   cli host    `docker run -d --network host` (what Skiff did before: no
 *               netns of its own), the baseline for the cost of isolation
 *   resume      ContainerRuntime.start() of an instance whose revision has a
 *               paused standby (the previous instance stopped with
 *               `standby: true`): unpause, rename, readiness probe; then GET /
 *
 * Same image (the static hello app, FROM scratch), loopback. Runs are
 * interleaved so drift hits all paths alike. Results go to
 * bench/RESULTS-container.md.
 *
 *   node bench/container-cold-start.ts [--n 10]
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { cpus, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import Docker from "dockerode";
import { PortAllocator } from "../agent/container/ports.ts";
import {
  ContainerRuntime,
  type ContainerRuntimeOptions,
  type StartTimings,
} from "../agent/container/runtime.ts";
import { helloImage } from "../test/support/images.ts";
import { firstResponse } from "./first-response.ts";
import { figureTable, quantile, writeBenchmarkBlock } from "./stats.ts";

const { values } = parseArgs({ options: { n: { type: "string", default: "10" } } });
const N = Number(values.n);
const ADDRESS = "127.0.0.1";
const RUN = randomBytes(3).toString("hex");
const CLUSTER = `bench${RUN}`;
const NETWORK = `skiff-${CLUSTER}`;
const OWNER = `bench-${RUN}`;
const BENCH_LABEL = `skiff.bench=${RUN}`;
const docker = new Docker();

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args[0]}: ${err.trim()}`)),
    );
  });
}

async function skiffOnce(rt: ContainerRuntime, image: string, i: number | string) {
  const instanceId = `bench-${RUN}-${i}`;
  const t0 = performance.now();
  const started = await rt.start({
    instanceId,
    namespace: "bench",
    configuration: "hello",
    revision: "hello-00001",
    container: { image },
  });
  const ms = await firstResponse(started.port, t0);
  await rt.stop(instanceId, { graceSeconds: 2 });
  return { ms, timings: started.timings, sandboxed: started.sandboxed === true };
}

const RESUME_SPEC = {
  namespace: "bench",
  configuration: "hello",
  // Its own revision: the cold runs above never find (and resume) its standby.
  revision: "hello-standby",
};

/** Untimed: one instance of the standby revision, paused as a standby. */
async function parkOne(rt: ContainerRuntime, image: string): Promise<void> {
  const instanceId = `bench-${RUN}-park`;
  await rt.start({ instanceId, ...RESUME_SPEC, container: { image } });
  await rt.stop(instanceId, { standby: true });
}

async function resumeOnce(rt: ContainerRuntime, image: string, i: number) {
  const instanceId = `bench-${RUN}-r${i}`;
  const t0 = performance.now();
  const started = await rt.start({ instanceId, ...RESUME_SPEC, container: { image } });
  const ms = await firstResponse(started.port, t0);
  if (!started.resumed)
    throw new Error("the standby was not resumed: the figure would be a cold start");
  // Untimed: back to a standby for the next run (the drain and pause are off the request path).
  await rt.stop(instanceId, { standby: true });
  return { ms, timings: started.timings };
}

async function apiOnce(image: string, ports: PortAllocator) {
  const port = await ports.allocate();
  const t0 = performance.now();
  const c = await docker.createContainer({
    Image: image,
    Env: ["PORT=8080"],
    Labels: { "skiff.bench": RUN },
    ExposedPorts: { "8080/tcp": {} },
    HostConfig: {
      NetworkMode: NETWORK,
      PortBindings: { "8080/tcp": [{ HostIp: ADDRESS, HostPort: String(port) }] },
    },
  });
  await c.start();
  const ms = await firstResponse(port, t0);
  await c.remove({ force: true });
  ports.release(port);
  return ms;
}

async function cliOnce(image: string, ports: PortAllocator, mode: "host" | "bridge") {
  const port = await ports.allocate();
  const name = `skiff-bench-${RUN}-${port}`;
  const net =
    mode === "host"
      ? ["--network", "host", "-e", `PORT=${port}`, "-e", `HOST=${ADDRESS}`]
      : ["--network", NETWORK, "-p", `${ADDRESS}:${port}:8080`];
  const t0 = performance.now();
  const cli = run("docker", [
    "run",
    "-d",
    "--rm",
    "--name",
    name,
    "--label",
    BENCH_LABEL,
    ...net,
    image,
  ]);
  const ms = await firstResponse(port, t0);
  await cli;
  await run("docker", ["rm", "-f", name]);
  ports.release(port);
  return ms;
}

async function cleanup(): Promise<void> {
  const left = await docker.listContainers({
    all: true,
    filters: { label: [`skiff.owner=${OWNER}`] },
  });
  const bench = await docker.listContainers({ all: true, filters: { label: [BENCH_LABEL] } });
  await Promise.all(
    [...left, ...bench].map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => {}),
    ),
  );
}

const fmt = (x: number) => x.toFixed(1);

async function main(): Promise<void> {
  const image = await helloImage(docker);
  const runtime = (options: ContainerRuntimeOptions) =>
    new ContainerRuntime({
      owner: OWNER,
      clusterId: CLUSTER,
      dataAddress: ADDRESS,
      removeNetworkOnClose: false,
      ...options,
    });
  // The bench decides when a standby is made; the machine's free memory must not.
  const rt = runtime({ standby: { minFreeMemoryBytes: 0 } });
  // The same start without network sandboxes (agent.containerSandboxes.count 0).
  const bare = runtime({ sandboxes: { count: 0 } });
  // As an agent's start does: adopt() fills the pool of sandboxes (refilled between rounds).
  await rt.adopt();
  const floorPorts = new PortAllocator(ADDRESS, { min: 30000, max: 30999 });
  const version = await docker.version();
  const info = await docker.info();
  const imageInfo = await docker.getImage(image).inspect();

  // One untimed round to warm the engine, page cache and our code paths (the
  // first skiff start also creates the bridge, used by the floors too).
  await skiffOnce(rt, image, -1);
  await skiffOnce(bare, image, "bare--1");
  await apiOnce(image, floorPorts);
  await cliOnce(image, floorPorts, "bridge");
  await cliOnce(image, floorPorts, "host");
  await parkOne(rt, image);
  await resumeOnce(rt, image, -1);

  const skiff: number[] = [];
  const skiffBare: number[] = [];
  let sandboxed = 0;
  const api: number[] = [];
  const cli: number[] = [];
  const host: number[] = [];
  const resume: number[] = [];
  const phases: StartTimings[] = [];
  const resumePhases: StartTimings[] = [];
  for (let i = 0; i < N; i++) {
    const r = await resumeOnce(rt, image, i);
    resume.push(r.ms);
    resumePhases.push(r.timings);
    const s = await skiffOnce(rt, image, i);
    if (s.sandboxed) sandboxed++;
    skiff.push(s.ms);
    phases.push(s.timings);
    skiffBare.push((await skiffOnce(bare, image, `bare-${i}`)).ms);
    api.push(await apiOnce(image, floorPorts));
    cli.push(await cliOnce(image, floorPorts, "bridge"));
    host.push(await cliOnce(image, floorPorts, "host"));
    process.stdout.write(
      `run ${i + 1}/${N}: resume ${fmt(r.ms)} ms, skiff ${fmt(s.ms)} ms, skiff without sandbox ${fmt(skiffBare.at(-1)!)} ms, api bridge ${fmt(api.at(-1)!)} ms, ` +
        `cli bridge ${fmt(cli.at(-1)!)} ms, cli host ${fmt(host.at(-1)!)} ms\n`,
    );
  }
  await rt.removeStandbys();
  await rt.close();
  await bare.close();
  await docker
    .getNetwork(NETWORK)
    .remove()
    .catch(() => {});

  const row = (name: string, xs: number[]) =>
    `| ${name} | ${N} | ${fmt(quantile(xs, 0.5))} | ${fmt(quantile(xs, 0.95))} | ${fmt(Math.min(...xs))} | ${fmt(Math.max(...xs))} |`;
  const phase = (k: keyof StartTimings, from = phases) =>
    fmt(
      quantile(
        from.map((p) => p[k]),
        0.5,
      ),
    );
  const p50 = (xs: number[]) => quantile(xs, 0.5);
  const ratio = (a: number[], b: number[]) => (p50(a) / p50(b)).toFixed(2);
  const goal = (a: number[], b: number[], max: number) =>
    `${ratio(a, b)} (goal <= ${max}: ${p50(a) / p50(b) <= max ? "met" : "not met"})`;
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const md = `# Container cold start (request to first response)

Generated by \`node bench/container-cold-start.ts --n ${N}\` on ${new Date().toISOString()}.

Machine: ${cpu}, ${cpus().length} vCPU, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()},
Docker Engine ${version.Version} (API ${version.ApiVersion}, ${info.Driver}, cgroup ${info.CgroupVersion ?? "?"}, runtime ${info.DefaultRuntime}),
Node ${process.versions.node}. Shared machine: other jobs ran at the same time, so read the
p95 as "with noise".

Image: \`${image}\` (static C hello app, FROM scratch, ${(imageInfo.Size / 1024).toFixed(0)} KiB).
Skiff and the two bridge floors: own network namespace on a bridge with inter-container
traffic off, port 8080 published on ${ADDRESS}:P. The host floor: host networking, the app
listening on ${ADDRESS}:P itself (how Skiff ran containers before). Runs interleaved
(resume, skiff, skiff without sandbox, api bridge, cli bridge, cli host) x ${N}, after one untimed
warm-up round. Skiff's runtime runs with its default network sandboxes (a ready one was there for
${sandboxed} of the ${N} starts: the pool refills between rounds) and once more without any.
Resume: the revision's previous instance was stopped with \`standby: true\` (docker pause after
the drain, untimed); the timed start() finds the paused container of the same spec, unpauses
it, renames it after the new instance, probes readiness, and the GET / follows.
p95 with n=${N} is the nearest-rank value.

| path | n | p50 ms | p95 ms | min ms | max ms |
| --- | --- | --- | --- | --- | --- |
${row("Skiff resume from a paused standby: start() + GET /", resume)}
${row("Skiff ContainerRuntime.start() + GET / (bridge + published port), no standby, a network sandbox ready", skiff)}
${row("Skiff ContainerRuntime.start() + GET /, no standby, no network sandbox", skiffBare)}
${row("floor: dockerode create+start, same bridge + published port", api)}
${row("baseline: `docker run -d --network <bridge> -p 127.0.0.1:P:8080` CLI", cli)}
${row("baseline: `docker run -d --network host` CLI (no isolation)", host)}

Ratios of p50s, same run:
- **resume from a paused standby / \`docker run\` with the same isolation (bridge + -p): ${goal(resume, cli, 0.3)}**
- resume from a paused standby / \`docker run\` host networking: ${ratio(resume, host)}
- **Skiff from zero, no standby / \`docker run\` with the same isolation (bridge + -p): ${goal(skiff, cli, 1.0)}**
- Skiff without a network sandbox / \`docker run\` with the same isolation: ${ratio(skiffBare, cli)}
- Skiff / dockerode floor with the same isolation: ${ratio(skiff, api)}
- cost of isolation, \`docker run\` bridge + -p / \`docker run\` host: **${ratio(cli, host)}**
- Skiff (isolated) / \`docker run\` host: ${ratio(skiff, host)}

Where Skiff's time goes (p50 of the \`timings\` start() returns):
image check + bridge lookup ${phase("imageMs")} ms, port + create ${phase("createMs")} ms, docker start ${phase("startMs")} ms,
start -> first passing readiness probe (inspect for the pid, then the netns socket table every 10 ms) ${phase("readyMs")} ms,
start() total ${phase("totalMs")} ms.
Resume (p50): image check ${phase("imageMs", resumePhases)} ms, unpause ${phase("startMs", resumePhases)} ms,
unpause -> first passing readiness probe (rename alongside) ${phase("readyMs", resumePhases)} ms, start() total ${phase("totalMs", resumePhases)} ms.

Reading it:
- \`docker start\` is most of every path. With a network namespace of its own it also
  creates the netns, a veth pair on the bridge, the embedded DNS and the port's
  docker-proxy and NAT rules: that is the isolation's cost, paid alike by \`docker run -p\`.
- Skiff adds an image inspect, a port check, a richer create (labels, limits, tmpfs, caps)
  and one inspect (the pid, for the netns probe); the request after readiness is answered at once.
- The CLI paths pay for a docker CLI process on top of the same API calls.
- A paused standby keeps its network namespace, veth, published port and the app's
  memory: a resume is an unpause (cgroup freezer thaw), a rename and one probe, so it
  skips everything \`docker start\` pays for. The agent keeps one for
  \`containerStandby.retentionMs\` (default 5 min) after a scale-down, at most
  \`maxStandbys\` (16), and none while the host has less than \`minFreeMemoryBytes\` (1 GiB)
  available; placement sends the next instance of the revision to the agent holding it.
- Against host networking, a cold start with isolation costs what \`docker start\` pays for
  the netns (the isolation ratio above): only a standby (or a pre-made netns) wins that back.

Earlier side measurement (same machine, \`docker start\` of an already created container,
3 runs each, ms): host networking 184-231; \`--network none\` 395-472; own netns on a user
bridge without a port 533-916; with a published port 618-646; joining the netns of an
already running container (\`--network container:X\`) 193-207: nearly all of the isolation's
cost is creating the network namespace and its veth at start.
`;
  const out = join(dirname(fileURLToPath(import.meta.url)), "RESULTS-container.md");
  await writeFile(out, md);
  // The two goal figures, machine-readable for a summary table (BENCHMARKS.md).
  const figure = (name: string, skiffMs: number[], baseline: string, max: number) => ({
    figure: name,
    baseline,
    baselineP50Ms: Math.round(p50(cli) * 10) / 10,
    skiffP50Ms: Math.round(p50(skiffMs) * 10) / 10,
    ratio: Math.round((p50(skiffMs) / p50(cli)) * 100) / 100,
    goal: `<= ${max}x`,
    met: p50(skiffMs) / p50(cli) <= max,
    trials: N,
  });
  const dockerRun = "`docker run -d --network <bridge> -p 127.0.0.1:P:8080` to first response";
  await writeFile(
    join(dirname(out), "RESULTS-container.json"),
    `${JSON.stringify(
      {
        generatedAt: new Date().toISOString(),
        figures: [
          figure("container resume from a paused standby", resume, dockerRun, 0.3),
          figure("container revision from zero, no standby", skiff, dockerRun, 1.0),
        ],
        hostNetworkDockerRunP50Ms: Math.round(p50(host) * 10) / 10,
      },
      null,
      2,
    )}\n`,
  );
  const goalRow = (name: string, skiffMs: number[], max: number) => {
    const r = p50(skiffMs) / p50(cli);
    return {
      figure: name,
      baseline: `${dockerRun}: p50 ${fmt(p50(cli))} ms`,
      skiff: `p50 ${fmt(p50(skiffMs))} ms${skiffMs === skiff ? ` (a network sandbox ready for ${sandboxed} of ${N}; without sandboxes: p50 ${fmt(p50(skiffBare))} ms)` : ""}`,
      ratio: `${r.toFixed(2)}x`,
      goal: `<= ${max}x`,
      met: r <= max,
      trials: `${N}, interleaved`,
    };
  };
  await writeBenchmarkBlock(
    join(dirname(out), "..", "BENCHMARKS.md"),
    "container-cold-start",
    `## Container cold start (\`node bench/container-cold-start.ts\`; details in bench/RESULTS-container.md)\n\n${figureTable(
      [
        goalRow("container resume from a paused standby", resume, 0.3),
        goalRow("container revision from zero, no standby", skiff, 1.0),
      ],
    )}\n\n${new Date().toISOString().slice(0, 10)}.`,
  );
  process.stdout.write(`\n${md}\nwritten to ${out}\n`);
}

process.once("SIGINT", () => {
  void cleanup().finally(() => process.exit(130));
});

try {
  await main();
} finally {
  await cleanup();
}
