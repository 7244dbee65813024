/**
 * Finds the image an instance runs. A local image is always used as is; a
 * missing one is pulled only when a registry is configured, is the image's
 * registry, and answers. Otherwise the caller gets a clear ImageNotFound at once
 * instead of a pull that hangs on an unreachable network.
 */
import type Docker from "dockerode";
import { InstanceError } from "../errors.ts";
import { dockerMessage, dockerStatus } from "./docker-errors.ts";

export interface RegistryConfig {
  /** Registry host[:port] as it appears in image references ("docker.io" for Docker Hub). */
  address: string;
  username?: string;
  password?: string;
  /** Talk plain HTTP to the registry (reachability check only; the engine decides for pulls). */
  insecure?: boolean;
  /** Give up a pull after this long. */
  pullTimeoutMs: number;
  /** Give up the reachability check after this long. */
  reachTimeoutMs: number;
}

export interface ResolvedImage {
  /** Image ID (sha256:...), what the container is created from. */
  id: string;
  /** A repo digest (name@sha256:...) when the image came from a registry. */
  digest: string | undefined;
  /** The image's USER ("" or absent: root), for runAsNonRoot. */
  user?: string;
}

/** The registry host of a reference: the first path part when it looks like a host. */
export function registryOf(ref: string): string {
  const first = ref.split("/")[0] ?? "";
  if (ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost")) {
    return first;
  }
  return "docker.io";
}

export class ImageResolver {
  readonly #docker: Docker;
  readonly #registry: RegistryConfig | undefined;
  readonly #pulls = new Map<string, Promise<void>>();

  constructor(docker: Docker, registry: RegistryConfig | undefined) {
    this.#docker = docker;
    this.#registry = registry;
  }

  /** The local image for `ref`, pulling first when allowed; rejects with InstanceError. */
  async resolve(instanceId: string, ref: string): Promise<ResolvedImage> {
    const local = await this.#inspect(ref);
    if (local) return local;
    const registry = this.#registry;
    const fail = (reason: "ImageNotFound" | "ImagePullFailed", message: string, cause?: unknown) =>
      new InstanceError({ reason, message }, { instanceId, cause });
    if (!registry) {
      throw fail("ImageNotFound", `image ${ref} not found locally and no registry configured`);
    }
    const host = registryOf(ref);
    if (host !== registry.address) {
      throw fail(
        "ImageNotFound",
        `image ${ref} not found locally and its registry ${host} is not the configured registry ${registry.address}`,
      );
    }
    const reach = await this.#reachable(registry);
    if (reach !== true) {
      throw fail(
        "ImageNotFound",
        `image ${ref} not found locally and registry ${registry.address} is unreachable (${reach})`,
      );
    }
    let pull = this.#pulls.get(ref);
    if (!pull) {
      pull = this.#pull(ref, registry).finally(() => this.#pulls.delete(ref));
      this.#pulls.set(ref, pull);
    }
    try {
      await pull;
    } catch (err) {
      throw fail("ImagePullFailed", `pulling image ${ref} failed: ${dockerMessage(err)}`, err);
    }
    const pulled = await this.#inspect(ref);
    if (!pulled) throw fail("ImagePullFailed", `image ${ref} is still missing after a pull`);
    return pulled;
  }

  async #inspect(ref: string): Promise<ResolvedImage | undefined> {
    try {
      const info = await this.#docker.getImage(ref).inspect();
      return { id: info.Id, digest: info.RepoDigests?.[0], user: info.Config?.User ?? "" };
    } catch (err) {
      if (dockerStatus(err) === 404) return undefined;
      throw err;
    }
  }

  /** true, or why not. Any HTTP answer from /v2/ (even 401) means it is there. */
  async #reachable(registry: RegistryConfig): Promise<true | string> {
    const host = registry.address === "docker.io" ? "registry-1.docker.io" : registry.address;
    const url = `${registry.insecure ? "http" : "https"}://${host}/v2/`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(registry.reachTimeoutMs) });
      await res.body?.cancel();
      return true;
    } catch (err) {
      return (err as Error).message;
    }
  }

  async #pull(ref: string, registry: RegistryConfig): Promise<void> {
    const auth =
      registry.username === undefined
        ? undefined
        : {
            username: registry.username,
            password: registry.password ?? "",
            serveraddress: registry.address,
          };
    const stream = await this.#docker.pull(ref, auth ? { authconfig: auth } : {});
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
        reject(new Error(`no result within ${registry.pullTimeoutMs} ms`));
      }, registry.pullTimeoutMs);
      this.#docker.modem.followProgress(
        stream,
        (err: Error | null, output: Array<{ error?: string }>) => {
          clearTimeout(timer);
          const failed = output?.find((o) => o.error);
          if (err) reject(err);
          else if (failed) reject(new Error(failed.error));
          else resolve();
        },
      );
    });
  }
}
