/**
 * Shared set-up for the container runtime tests: the hello image, a unique
 * owner label and cluster id per test file (so files running in parallel never
 * see each other's containers or share a bridge), and a cleanup that
 * force-removes everything the file created (containers, then its bridges),
 * whatever state the test left behind.
 */
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import {
  ContainerRuntime,
  type ContainerRuntimeOptions,
} from "../../../agent/container/runtime.ts";
import type { InstanceSpecInput } from "../../../agent/container/spec.ts";
import { containersOf, removeContainers } from "../../support/containers.ts";
import { helloImage } from "../../support/images.ts";
import { waitFor as poll } from "../../support/wait.ts";

export interface Harness {
  docker: Docker;
  owner: string;
  /** This file's cluster id (its bridge is `skiff-<clusterId>`). */
  clusterId: string;
  image: string;
  /** A runtime for this file's owner; closed by cleanup(). */
  runtime(options?: ContainerRuntimeOptions): ContainerRuntime;
  /** A spec for the hello image with a fresh instanceId. */
  spec(overrides?: Partial<InstanceSpecInput>, env?: Record<string, string>): InstanceSpecInput;
  /** This owner's containers (any state). */
  containers(): Promise<Docker.ContainerInfo[]>;
  exists(containerId: string): Promise<boolean>;
  cleanup(): Promise<void>;
}

export async function createHarness(label: string): Promise<Harness> {
  const docker = new Docker();
  const image = await helloImage(docker);
  const owner = `test-${label}-${randomBytes(3).toString("hex")}`;
  const clusterId = `t${randomBytes(5).toString("hex")}`;
  const runtimes: ContainerRuntime[] = [];
  const networks = new Set<string>();
  let n = 0;
  return {
    docker,
    owner,
    clusterId,
    image,
    runtime(options = {}) {
      // No network sandboxes unless a test asks (sandboxes.test.ts): which start joins
      // one would depend on how fast the pool refilled.
      const rt = new ContainerRuntime({
        owner,
        clusterId,
        startupTimeoutMs: 15_000,
        sandboxes: { count: 0 },
        ...options,
      });
      runtimes.push(rt);
      networks.add(rt.networkName);
      return rt;
    },
    spec(overrides = {}, env = {}) {
      n++;
      return {
        instanceId: `${label}-${n}-${randomBytes(2).toString("hex")}`,
        namespace: "default",
        service: "hello",
        configuration: "hello",
        revision: `hello-0000${n}`,
        timeoutSeconds: 30,
        containerConcurrency: 0,
        ...overrides,
        container: {
          image,
          env: Object.entries(env).map(([name, value]) => ({ name, value })),
          ...overrides.container,
        },
      };
    },
    containers: () => containersOf(owner),
    async exists(containerId) {
      try {
        await docker.getContainer(containerId).inspect();
        return true;
      } catch {
        return false;
      }
    },
    async cleanup() {
      await Promise.all(runtimes.splice(0).map((rt) => rt.close()));
      await removeContainers([owner]);
      // Only the bridges this file's runtimes made (unique names); a race may have made two.
      for (const name of networks) {
        const nets = await docker.listNetworks({ filters: { name: [name] } });
        await Promise.all(
          nets
            .filter((n) => n.Name === name)
            .map((n) =>
              docker
                .getNetwork(n.Id)
                .remove()
                .catch(() => {}),
            ),
        );
      }
    },
  };
}

/** The shared poll, with the defaults this suite was written against (10 s, every 20 ms). */
export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  return poll(what, check, timeoutMs, 20);
}

/** One request without connection reuse (instances come and go between requests). */
export async function get(
  url: string,
): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { headers: { connection: "close" } });
  return { status: res.status, body: await res.text(), headers: res.headers };
}
