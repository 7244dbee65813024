/**
 * Finds the image an instance runs. A local image is always used as is; a
 * missing one is pulled from the registry its reference names, only when that
 * registry is listed in the cluster's images.registries (with its
 * credentials) and answers. Otherwise the caller gets a clear ImageNotFound at
 * once instead of a pull that hangs on an unreachable network. One pull per
 * reference at a time; every start waiting on it hears its progress.
 */
import type Docker from "dockerode";
import { isLoopbackRegistry, parseImageRef } from "../../src/images/reference.ts";
import { InFlight } from "../../src/in-flight.ts";
import { InstanceError } from "../errors.ts";
import { dockerMessage, dockerStatus } from "./docker-errors.ts";

export interface RegistryAccess {
  username?: string | undefined;
  password?: string | undefined;
  /** Plain HTTP for the reachability check (loopback registries always are). */
  insecure?: boolean | undefined;
}

export interface ImageResolverOptions {
  /** By registry host as in image references ("docker.io" for Docker Hub). */
  registries: Readonly<Record<string, RegistryAccess>>;
  /** Give up a pull after this long. */
  pullTimeoutMs: number;
  /** Give up the reachability check after this long. */
  reachTimeoutMs: number;
  /** What a pull has done so far, for each start waiting on it (about once a second). */
  onProgress?: (instanceId: string, message: string) => void;
}

export interface ResolvedImage {
  /** Image ID (sha256:...), what the container is created from. */
  id: string;
  /** A repo digest (name@sha256:...) when the image came from a registry. */
  digest: string | undefined;
  /** The image's USER ("" or absent: root), for runAsNonRoot. */
  user?: string;
}

interface Pull {
  done: Promise<void>;
  waiters: Set<string>;
}

interface ProgressEvent {
  id?: string;
  status?: string;
  progressDetail?: { current?: number; total?: number };
}

const PROGRESS_EVERY_MS = 1_000;

/** The statuses of a layer in the engine's pull stream (others are about the whole image). */
const LAYER_STATUSES = new Set([
  "Pulling fs layer",
  "Waiting",
  "Downloading",
  "Verifying Checksum",
  "Download complete",
  "Extracting",
  "Pull complete",
  "Already exists",
]);

export class ImageResolver {
  readonly #docker: Docker;
  readonly #o: ImageResolverOptions;
  readonly #pulls = new Map<string, Pull>();
  readonly #inspecting = new InFlight<ResolvedImage | undefined>();

  constructor(docker: Docker, options: ImageResolverOptions) {
    this.#docker = docker;
    this.#o = options;
  }

  /** The local image for `ref`, pulling first when allowed; rejects with InstanceError. */
  async resolve(instanceId: string, ref: string): Promise<ResolvedImage> {
    const local = await this.#inspect(ref);
    if (local) return local;
    const fail = (reason: "ImageNotFound" | "ImagePullFailed", message: string, cause?: unknown) =>
      new InstanceError({ reason, message }, { instanceId, cause });
    const parsed = parseImageRef(ref);
    if (!parsed) throw fail("ImageNotFound", `image ${ref} is not a valid image reference`);
    const host = parsed.registry;
    const access = this.#o.registries[host];
    if (!access) {
      const listed = Object.keys(this.#o.registries);
      throw fail(
        "ImageNotFound",
        `image ${ref} not found locally and its registry ${host} is not in images.registries (${listed.length ? listed.join(", ") : "none listed"}): add it to the cluster config, or load the image on every agent host (docker load)`,
      );
    }
    const reach = await this.#reachable(host, access);
    if (reach !== true) {
      throw fail(
        "ImageNotFound",
        `image ${ref} not found locally and registry ${host} is unreachable (${reach})`,
      );
    }
    let pull = this.#pulls.get(ref);
    if (!pull) {
      const waiters = new Set<string>();
      const done = this.#pull(ref, host, access, waiters).finally(() => this.#pulls.delete(ref));
      pull = { done, waiters };
      this.#pulls.set(ref, pull);
    }
    pull.waiters.add(instanceId);
    this.#o.onProgress?.(instanceId, `pulling image ${ref}`);
    try {
      await pull.done;
    } catch (err) {
      throw fail("ImagePullFailed", `pulling image ${ref} failed: ${dockerMessage(err)}`, err);
    } finally {
      pull.waiters.delete(instanceId);
    }
    const pulled = await this.#inspect(ref);
    if (!pulled) throw fail("ImagePullFailed", `image ${ref} is still missing after a pull`);
    return pulled;
  }

  /**
   * One inspect per ref in flight: a burst of N starts of one revision asks
   * the engine once, not N times while it is busy starting containers. Only
   * an answer still coming is shared: a later start looks again.
   */
  #inspect(ref: string): Promise<ResolvedImage | undefined> {
    return this.#inspecting.run(ref, () => this.#inspectNow(ref));
  }

  async #inspectNow(ref: string): Promise<ResolvedImage | undefined> {
    try {
      const info = await this.#docker.getImage(ref).inspect();
      return { id: info.Id, digest: info.RepoDigests?.[0], user: info.Config?.User ?? "" };
    } catch (err) {
      if (dockerStatus(err) === 404) return undefined;
      throw err;
    }
  }

  /** true, or why not. Any HTTP answer from /v2/ (even 401) means it is there. */
  async #reachable(host: string, access: RegistryAccess): Promise<true | string> {
    const base = host === "docker.io" ? "registry-1.docker.io" : host;
    const plain = access.insecure === true || isLoopbackRegistry(host);
    const url = `${plain ? "http" : "https"}://${base}/v2/`;
    try {
      const res = await fetch(url, {
        signal: AbortSignal.timeout(this.#o.reachTimeoutMs),
        redirect: "manual",
      });
      await res.body?.cancel();
      return true;
    } catch (err) {
      return (err as Error).message;
    }
  }

  async #pull(ref: string, host: string, access: RegistryAccess, waiters: Set<string>) {
    const auth =
      access.username === undefined
        ? undefined
        : { username: access.username, password: access.password ?? "", serveraddress: host };
    const stream = await this.#docker.pull(ref, auth ? { authconfig: auth } : {});
    const layers = new Map<string, { current: number; total: number; done: boolean }>();
    let last = Date.now();
    const onEvent = (e: ProgressEvent) => {
      if (!e.id || !e.status || !LAYER_STATUSES.has(e.status)) return;
      const layer = layers.get(e.id) ?? { current: 0, total: 0, done: false };
      layers.set(e.id, layer);
      if (e.status === "Downloading" && e.progressDetail?.total) {
        layer.current = e.progressDetail.current ?? 0;
        layer.total = e.progressDetail.total;
      }
      if (e.status === "Pull complete" || e.status === "Already exists") {
        layer.done = true;
        layer.current = layer.total;
      }
      const now = Date.now();
      if (now - last < PROGRESS_EVERY_MS) return;
      last = now;
      const message = pullProgress(ref, [...layers.values()]);
      for (const id of waiters) this.#o.onProgress?.(id, message);
    };
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
        reject(new Error(`no result within ${this.#o.pullTimeoutMs} ms (images.pullTimeoutMs)`));
      }, this.#o.pullTimeoutMs);
      this.#docker.modem.followProgress(
        stream,
        (err: Error | null, output: Array<{ error?: string }>) => {
          clearTimeout(timer);
          const failed = output?.find((o) => o.error);
          if (err) reject(err);
          else if (failed) reject(new Error(failed.error));
          else resolve();
        },
        onEvent,
      );
    });
  }
}

/** "pulling image X: 2 of 3 layers, 12.5 of 40.0 MB" */
function pullProgress(
  ref: string,
  layers: Array<{ current: number; total: number; done: boolean }>,
): string {
  const done = layers.filter((l) => l.done).length;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  const current = layers.reduce((s, l) => s + l.current, 0);
  const total = layers.reduce((s, l) => s + l.total, 0);
  const bytes = total > 0 ? `, ${mb(current)} of ${mb(total)} MB` : "";
  return `pulling image ${ref}: ${done} of ${layers.length} layers${bytes}`;
}
