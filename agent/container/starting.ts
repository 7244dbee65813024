/**
 * Cold starts: resolve the image, make sure the events stream and the bridge
 * are there, create the container with a freshly allocated published port,
 * start it and wait for readiness, timing each step. A port taken meanwhile
 * or a bridge removed under us is retried; a failure leaves nothing behind.
 *
 * A container serving on the default port joins a network sandbox started
 * ahead of need when one is ready (sandboxes.ts): its start skips Docker's
 * network setup. Only `docker start` waits for a slot of the start gate: a burst's creates
 * (cheap for the engine, but slow to answer while it is busy starting others)
 * all go at once, so a container is created by the time a slot frees and the
 * gate's slots are spent on starts alone.
 */
import { AlreadyExistsError } from "../../src/errors.ts";
import { InstanceError } from "../errors.ts";
import { elapsed, type RuntimeContext } from "./context.ts";
import { dockerMessage, dockerStatus } from "./docker-errors.ts";
import type { ResolvedImage } from "./images.ts";
import type { Tracked } from "./instances.ts";
import { isNetworkGone, isPortTaken } from "./network.ts";
import { throwIfInterrupted } from "./readiness.ts";
import type { StartedInstance } from "./runtime-types.ts";
import {
  buildCreateOptions,
  declaredPort,
  type InstanceSpec,
  nonRootProblem,
  protocolOf,
} from "./spec.ts";

export class ColdStarter {
  readonly #ctx: RuntimeContext;
  /** Whether a start has used the bridge (close() then removes it when unused). */
  networkUsed = false;

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
  }

  async start(spec: InstanceSpec): Promise<StartedInstance> {
    try {
      return await this.#start(spec);
    } finally {
      // The gate may be idle now: top the sandboxes up for the next start.
      this.#ctx.sandboxes.fill();
    }
  }

  async #start(spec: InstanceSpec): Promise<StartedInstance> {
    const ctx = this.#ctx;
    const id = spec.instanceId;
    const t0 = performance.now();
    this.networkUsed = true;
    // All settle before a failure is thrown: nothing (a bridge) is made behind a failed start.
    const [resolved, opened, ensured] = await Promise.allSettled([
      ctx.images.resolve(id, spec.container.image),
      ctx.events.open(),
      ctx.network.ensure(),
    ]);
    for (const r of [resolved, opened, ensured]) if (r.status === "rejected") throw r.reason;
    const image = (resolved as PromiseFulfilledResult<ResolvedImage>).value;
    const nonRoot = nonRootProblem(spec.container, image.user);
    if (nonRoot !== undefined) {
      throw new InstanceError(
        { reason: "CreateContainerConfigError", message: nonRoot },
        { instanceId: id },
      );
    }
    ctx.standbys.trimIfMemoryTight();
    const t1 = performance.now();
    let started: { t: Tracked; t2: number; queuedMs: number } | undefined;
    // A published port someone took since the check, or a bridge removed under
    // us (its last user shut down): try again with a new port / a new bridge.
    for (let attempt = 1; !started; attempt++) {
      started = await this.#createAndStart(spec, image, attempt);
    }
    const { t, t2 } = started;
    const t2s = t2 + started.queuedMs; // its docker start began
    const t3 = performance.now();
    await ctx.exits.checkAlive(t); // learns the pid, for probing inside the container's netns
    const target = ctx.readiness.target(t);
    try {
      await ctx.readiness.waitReady(t, target, t3);
    } catch (err) {
      if (t.state !== "stopping") await ctx.table.discard(t);
      throw err;
    }
    t.state = "ready";
    ctx.readiness.schedulePeriodic(t, target);
    const t4 = performance.now();
    return {
      instanceId: id,
      containerId: t.containerId,
      host: t.host,
      port: t.port,
      protocol: t.protocol,
      image,
      ...(ctx.sandboxes.of(t.containerId) ? { sandboxed: true } : {}),
      timings: {
        imageMs: elapsed(t0, t1),
        queuedMs: elapsed(t2, t2s),
        createMs: elapsed(t1, t2),
        startMs: elapsed(t2s, t3),
        readyMs: elapsed(t3, t4),
        totalMs: elapsed(t0, t4),
      },
    };
  }

  /** One attempt (its docker start in a slot of the start gate): undefined when it should be tried again. */
  async #createAndStart(
    spec: InstanceSpec,
    image: ResolvedImage,
    attempt: number,
  ): Promise<{ t: Tracked; t2: number; queuedMs: number } | undefined> {
    const ctx = this.#ctx;
    // Only a first attempt joins a sandbox: a retry is for a port or a bridge that went wrong.
    const sandbox = attempt === 1 ? ctx.sandboxes.take(declaredPort(spec.container)) : undefined;
    const port = sandbox ? sandbox.port : await ctx.ports.allocate();
    let containerId: string;
    try {
      containerId = await this.#create(spec, image, port, sandbox?.containerId);
    } catch (err) {
      if (!sandbox) {
        ctx.ports.release(port);
        throw err;
      }
      // The sandbox itself may be what failed (killed meanwhile): once more without one.
      await ctx.sandboxes.discard(sandbox);
      return undefined;
    }
    if (sandbox) ctx.sandboxes.bind(containerId, sandbox);
    const t = ctx.table.track(
      spec,
      containerId,
      { host: ctx.options.dataAddress, port, protocol: protocolOf(spec.container) },
      "starting",
    );
    t.imageId = image.id;
    const t2 = performance.now();
    let queuedMs = 0;
    let skipped = false;
    try {
      await ctx.startGate(async () => {
        queuedMs = performance.now() - t2;
        // Stopped while it waited for a slot: never started (stop() removes it).
        skipped = t.state === "stopping";
        if (!skipped) await ctx.docker.getContainer(containerId).start();
      });
      if (skipped) {
        await t.stopping;
        throwIfInterrupted(t);
      }
      return { t, t2, queuedMs };
    } catch (err) {
      if (t.state === "stopping") {
        await t.stopping;
        throwIfInterrupted(t);
      }
      await ctx.table.discard(t);
      // A sandbox that died since it was taken fails the start too: once more without one.
      const retry = isPortTaken(err) || isNetworkGone(err) || sandbox !== undefined;
      if (isNetworkGone(err)) ctx.network.invalidate();
      if (!retry || attempt >= 3) {
        throw new InstanceError(
          { reason: "StartFailed", message: `container failed to start: ${dockerMessage(err)}` },
          { instanceId: spec.instanceId, cause: err },
        );
      }
      return undefined;
    }
  }

  async #create(
    spec: InstanceSpec,
    image: ResolvedImage,
    port: number,
    sandbox: string | undefined,
  ): Promise<string> {
    const ctx = this.#ctx;
    const o = ctx.options;
    const name = ctx.owned.containerName(spec.instanceId);
    const body = (network: string) =>
      buildCreateOptions(spec, {
        name,
        // The resolved ID, so that what runs is exactly what was checked (and reported).
        image: image.id,
        address: o.dataAddress,
        port,
        network,
        ...(sandbox ? { sandbox } : {}),
        ...(image.user !== undefined ? { imageUser: image.user } : {}),
        clusterId: o.clusterId,
        owner: o.owner,
        labelPrefix: o.labelPrefix,
        capAdd: o.capAdd,
        pidsLimit: o.pidsLimit,
        tmpfsSize: o.tmpfsSize,
        logMaxSize: o.logMaxSize,
      });
    const fail = (err: unknown) =>
      new InstanceError(
        dockerStatus(err) === 404 && !isNetworkGone(err)
          ? {
              reason: "ImageNotFound",
              message: `image ${spec.container.image} (${image.id}) vanished before the container was created`,
            }
          : {
              reason: "StartFailed",
              message: `docker could not create the container: ${dockerMessage(err)}`,
            },
        { instanceId: spec.instanceId, cause: err },
      );
    let networkRetried = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return (await ctx.docker.createContainer(body(await ctx.network.ensure()))).id;
      } catch (err) {
        if (isNetworkGone(err) && !networkRetried) {
          networkRetried = true;
          ctx.network.invalidate();
          attempt--;
          continue;
        }
        if (dockerStatus(err) !== 409 || attempt > 0) throw fail(err);
        // A container of that name exists: a dead leftover is removed, a live one is someone's instance.
        const old = await ctx.docker
          .getContainer(name)
          .inspect()
          .catch(() => undefined);
        if (old?.State.Running) {
          throw new AlreadyExistsError(
            `container ${name} is already running; adopt() it or stop instance ${spec.instanceId} first`,
            { kind: "Instance", name: spec.instanceId },
          );
        }
        await ctx.owned.remove(name);
        // The exit handler of the previous run may be removing it right now (our
        // removal then answers 409 at once): wait until the name is free.
        await ctx.owned.gone(name);
      }
    }
  }
}
