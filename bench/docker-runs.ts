/**
 * Docker's own pace on this host, the baseline of the container benchmarks:
 * N `docker run -d -p 127.0.0.1:P:8080` of one image at once, each timed to
 * its first answer on its published port.
 */
import { execFile } from "node:child_process";
import { freePort } from "../src/redis/server.ts";
import { firstResponse } from "./first-response.ts";

/** `docker` with its arguments; resolves with stdout, rejects with stderr. */
function docker(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("docker", args, (err, stdout, stderr) =>
      err
        ? reject(new Error(`docker ${args[0]}: ${stderr.trim() || err.message}`))
        : resolve(stdout),
    ),
  );
}

export interface DockerRunsOptions {
  /** How many runs at once. */
  count: number;
  /** The benchmark's name: labels its containers (and network) for removal. */
  bench: string;
  /** How long each run has to answer, from the start of the burst. */
  timeoutMs: number;
  /**
   * On a user-defined bridge with inter-container traffic off, as Skiff runs
   * its instances (agent/container/network.ts), instead of Docker's default bridge.
   */
  isolated?: boolean;
  /** Count a run that fails or never answers instead of failing the burst. */
  tolerateFailures?: boolean;
}

/**
 * ms from the burst's start to each run's first answer, and how many runs
 * failed (always 0 without `tolerateFailures`: the first failure rejects).
 * Everything started is removed after.
 */
export async function dockerRuns(
  image: string,
  { count, bench, timeoutMs, isolated = false, tolerateFailures = false }: DockerRunsOptions,
): Promise<{ times: number[]; failed: number }> {
  const label = `skiff-bench=${bench}-${process.pid}`;
  const network = `skiff-bench-${bench}-${process.pid}`;
  if (isolated) {
    await docker([
      "network",
      "create",
      "--label",
      label,
      "-o",
      "com.docker.network.bridge.enable_icc=false",
      network,
    ]);
  }
  const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
  const runs: Promise<string>[] = [];
  const t0 = performance.now();
  try {
    const times = await Promise.all(
      ports.map(async (port) => {
        const run = docker([
          "run",
          "-d",
          "--rm",
          "--label",
          label,
          ...(isolated ? ["--network", network] : []),
          "-p",
          `127.0.0.1:${port}:8080`,
          image,
        ]);
        runs.push(run);
        const answered = firstResponse(port, t0, { timeoutMs, everyMs: 10 });
        const t = Promise.all([answered, run]).then(([ms]) => ms);
        return tolerateFailures ? t.catch(() => undefined) : t;
      }),
    );
    const ok = times.filter((t): t is number => t !== undefined);
    return { times: ok, failed: times.length - ok.length };
  } finally {
    // A run still under way when the burst ends would create its container after the removal.
    await Promise.allSettled(runs);
    const ids = (await docker(["ps", "-aq", "--filter", `label=${label}`]))
      .split(/\s+/)
      .filter(Boolean);
    if (ids.length > 0) await docker(["rm", "-f", ...ids]).catch(() => undefined);
    if (isolated) await docker(["network", "rm", network]).catch(() => undefined);
  }
}
