/**
 * A real image registry for tests: Debian's `docker-registry` (the CNCF
 * distribution registry) on a free 127.0.0.1 port with its own config file,
 * storage and htpasswd users in a temporary folder. Docker trusts registries on
 * 127.0.0.0/8 over plain HTTP, so pushes and pulls need no TLS. Images pushed
 * here are built locally from the test images (no base image, no network).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { freePort } from "./redis-server.ts";
import { waitFor } from "./wait.ts";

export interface TestRegistry {
  /** host:port as in image references. */
  host: string;
  user: { username: string; password: string };
  /** Stops it, removes its folder and every local image named after it (pulled or pushed). */
  stop(): Promise<void>;
}

/** Start a registry that wants `user`'s credentials for everything. */
export async function startRegistry(): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), "skiff-registry-"));
  const port = await freePort();
  const user = { username: "skiff", password: randomBytes(9).toString("hex") };
  const htpasswd = execFileSync("htpasswd", ["-Bbn", user.username, user.password], {
    encoding: "utf8",
  });
  writeFileSync(join(dir, "htpasswd"), htpasswd);
  writeFileSync(
    join(dir, "config.yml"),
    [
      "version: 0.1",
      "log: { level: error }",
      `storage: { filesystem: { rootdirectory: ${join(dir, "data")} }, delete: { enabled: true } }`,
      `http: { addr: "127.0.0.1:${port}", secret: ${randomBytes(8).toString("hex")} }`,
      `auth: { htpasswd: { realm: skiff-test, path: ${join(dir, "htpasswd")} } }`,
    ].join("\n"),
  );
  const child: ChildProcess = spawn("docker-registry", ["serve", join(dir, "config.yml")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const host = `127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
    const docker = new Docker();
    const mine = (names: string[] | undefined) => names?.some((n) => n.startsWith(`${host}/`));
    for (const image of await docker.listImages()) {
      if (mine(image.RepoTags) || mine(image.RepoDigests)) {
        await docker
          .getImage(image.Id)
          .remove({ force: true })
          .catch(() => {});
      }
    }
  };
  try {
    await waitFor(
      "the registry to answer",
      async () => {
        if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
        const res = await fetch(`http://${host}/v2/`);
        await res.body?.cancel();
        return res.status === 401;
      },
      10_000,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, user, stop };
}

async function follow(docker: Docker, stream: NodeJS.ReadableStream, what: string): Promise<void> {
  const output = await new Promise<Array<{ error?: string }>>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, out: Array<{ error?: string }>) =>
      err ? reject(err) : resolve(out),
    );
  });
  const failed = output.find((line) => line.error);
  if (failed) throw new Error(`${what} failed: ${failed.error}`);
}

/**
 * Build an image of its own (`base` plus a label, so a manifest no other
 * image has), push it to `registry` as `repository:tag`, and delete it
 * locally, so an agent must pull it. Resolves to the pushed manifest's digest.
 */
export async function pushVariant(
  docker: Docker,
  registry: TestRegistry,
  base: string,
  ref: string,
): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "skiff-variant-"));
  try {
    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM ${base}\nLABEL skiff.test-variant=${randomBytes(6).toString("hex")}\n`,
    );
    await follow(
      docker,
      await docker.buildImage({ context: dir, src: ["Dockerfile"] }, { t: ref, rm: true }),
      `docker build of ${ref}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const image = docker.getImage(ref);
  await follow(
    docker,
    await image.push({ authconfig: { ...registry.user, serveraddress: registry.host } }),
    `docker push of ${ref}`,
  );
  const digest = (await image.inspect()).RepoDigests?.[0]?.split("@")[1];
  if (!digest) throw new Error(`docker push of ${ref} left no repo digest`);
  await image.remove({ force: true });
  return digest;
}
