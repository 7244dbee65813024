/**
 * This owner's containers on the engine: how they are named, found (by the
 * cluster and owner labels), read back (instance id, spec) and stopped or
 * removed; and, for orphan reaping, the containers of other owners of the
 * same cluster.
 */
import type Docker from "dockerode";
import { SkiffError } from "../../src/errors.ts";
import type { RuntimeContext } from "./context.ts";
import { dockerMessage, dockerStatus } from "./docker-errors.ts";
import { type InstanceSpec, InstanceSpecSchema, labelKeys } from "./spec.ts";

export class OwnedContainers {
  readonly #ctx: RuntimeContext;
  readonly keys: ReturnType<typeof labelKeys>;

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
    this.keys = labelKeys(ctx.options.labelPrefix);
  }

  /** `${namePrefix}${clusterId}-${instanceId}`: unique per install on an engine. */
  containerName(instanceId: string): string {
    const o = this.#ctx.options;
    return `${o.namePrefix}${o.clusterId}-${instanceId}`;
  }

  /** This owner's instance containers of this cluster (any state; not its network sandboxes). */
  async list(extraLabels: string[] = []): Promise<Docker.ContainerInfo[]> {
    return (await this.#listAll(extraLabels)).filter((c) => !c.Labels[this.keys.role]);
  }

  /** This owner's network sandboxes (sandboxes.ts), any state. */
  sandboxes(): Promise<Docker.ContainerInfo[]> {
    return this.#listAll([`${this.keys.role}=sandbox`]);
  }

  #listAll(extraLabels: string[]): Promise<Docker.ContainerInfo[]> {
    const o = this.#ctx.options;
    return this.#ctx.docker.listContainers({
      all: true,
      filters: {
        label: [
          `${this.keys.managed}=true`,
          `${this.keys.cluster}=${o.clusterId}`,
          `${this.keys.owner}=${o.owner}`,
          ...extraLabels,
        ],
      },
    });
  }

  /**
   * The instance a container runs now: its name says so (a resumed standby is
   * renamed; labels cannot change), else its label.
   */
  instanceIdOf(c: Docker.ContainerInfo): string | undefined {
    const prefix = `/${this.containerName("")}`;
    const name = c.Names?.find((n) => n.startsWith(prefix));
    if (name) return name.slice(prefix.length);
    return c.Labels[this.keys.instance];
  }

  specFromLabels(labels: Record<string, string>): InstanceSpec | undefined {
    const raw = labels[this.keys.spec];
    if (!raw) return undefined;
    try {
      const parsed = InstanceSpecSchema.safeParse(JSON.parse(raw));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Other agents' containers of this cluster, counted by owner (agent id):
   * what orphan reaping looks at. Another cluster's containers are never listed.
   */
  async otherOwners(): Promise<Map<string, number>> {
    const o = this.#ctx.options;
    const found = await this.#ctx.docker.listContainers({
      all: true,
      filters: {
        label: [`${this.keys.managed}=true`, `${this.keys.cluster}=${o.clusterId}`],
      },
    });
    const owners = new Map<string, number>();
    for (const c of found) {
      const owner = c.Labels[this.keys.owner];
      // The cluster label is checked again: the filter is the engine's, the rule is ours.
      if (!owner || owner === o.owner) continue;
      if (c.Labels[this.keys.cluster] !== o.clusterId) continue;
      owners.set(owner, (owners.get(owner) ?? 0) + 1);
    }
    return owners;
  }

  /**
   * Force-remove every container of this cluster owned by agent `owner` (a
   * dead agent: nothing manages them). Never this runtime's own. Resolves to
   * the number removed.
   */
  async removeOwnedBy(owner: string): Promise<number> {
    const o = this.#ctx.options;
    if (owner === o.owner) {
      // A caller's bug, never a reaping decision: the code says so.
      throw new SkiffError(
        "INTERNAL",
        `refusing to reap this runtime's own containers (owner ${owner})`,
      );
    }
    const found = await this.#ctx.docker.listContainers({
      all: true,
      filters: {
        label: [
          `${this.keys.managed}=true`,
          `${this.keys.cluster}=${o.clusterId}`,
          `${this.keys.owner}=${owner}`,
        ],
      },
    });
    const theirs = found.filter(
      (c) => c.Labels[this.keys.cluster] === o.clusterId && c.Labels[this.keys.owner] === owner,
    );
    await Promise.all(theirs.map((c) => this.remove(c.Id)));
    return theirs.length;
  }

  /** docker stop (SIGTERM, grace, SIGKILL); already stopped or gone is fine. */
  async stop(containerId: string, graceSeconds: number): Promise<void> {
    try {
      await this.#ctx.docker.getContainer(containerId).stop({ t: graceSeconds });
    } catch (err) {
      const status = dockerStatus(err);
      if (status !== 304 && status !== 404) {
        this.#warn(`stopping container ${containerId}: ${dockerMessage(err)}`);
      }
    }
  }

  /**
   * Force-remove, and the network sandbox the container ran in with it; gone
   * already or being removed is fine, anything else a warning.
   */
  async remove(idOrName: string): Promise<void> {
    try {
      await this.#ctx.docker.getContainer(idOrName).remove({ force: true });
    } catch (err) {
      const status = dockerStatus(err);
      // 404: gone already; 409: a removal is already in progress.
      if (status !== 404 && status !== 409) {
        this.#warn(`removing container ${idOrName}: ${dockerMessage(err)}`);
      }
    }
    await this.#ctx.sandboxes.released(idOrName);
  }

  /** Resolves once no container of this name or id exists (bounded: the create then fails). */
  async gone(idOrName: string, timeoutMs = 10_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      try {
        await this.#ctx.docker.getContainer(idOrName).inspect();
      } catch (err) {
        if (dockerStatus(err) === 404) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  #warn(message: string): void {
    this.#ctx.emitter.emit("warning", new Error(message));
  }
}
