/**
 * Stopping: the caller has already withdrawn the instance's endpoint. Wait for
 * `drained` (or `drainMs`), bounded by the revision's timeoutSeconds, then
 * either park the container as a standby or docker stop (SIGTERM, grace,
 * SIGKILL) and remove it. An instance this runtime does not track is still
 * stopped if a container of this owner carries its id.
 */
import type { RuntimeContext } from "./context.ts";
import type { Tracked } from "./instances.ts";
import type { StopOptions } from "./runtime-types.ts";

export class Stopper {
  readonly #ctx: RuntimeContext;

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
  }

  /** Idempotent: a second stop() of the same instance waits for the first. */
  stop(instanceId: string, options: StopOptions = {}): Promise<void> {
    const table = this.#ctx.table;
    const t = table.byId.get(instanceId);
    if (t) {
      t.stopping ??= this.stopTracked(t, options);
      return t.stopping;
    }
    if (table.isClaimed(instanceId)) return table.deferStop(instanceId, options);
    return this.#stopUntracked(instanceId, options);
  }

  async stopTracked(t: Tracked, options: StopOptions): Promise<void> {
    const ctx = this.#ctx;
    const was = t.state;
    t.state = "stopping";
    clearTimeout(t.probeTimer);
    t.interrupt();
    if (was !== "starting" && !t.failure) {
      let timer: NodeJS.Timeout | undefined;
      const drain = options.drained
        ? Promise.resolve(options.drained).then(
            () => undefined,
            () => undefined,
          )
        : new Promise<void>((resolve) => {
            timer = setTimeout(resolve, options.drainMs ?? 0);
          });
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        drain,
        new Promise<void>((resolve) => {
          bound = setTimeout(resolve, t.spec.timeoutSeconds * 1000);
        }),
      ]);
      clearTimeout(timer);
      clearTimeout(bound);
      if (options.standby && was === "ready" && !t.failure && (await ctx.standbys.park(t))) return;
    }
    const grace = options.graceSeconds ?? ctx.options.stopGraceSeconds ?? t.spec.timeoutSeconds;
    await ctx.owned.stop(t.containerId, grace);
    ctx.table.forget(t);
    await ctx.owned.remove(t.containerId);
  }

  async #stopUntracked(instanceId: string, options: StopOptions): Promise<void> {
    const { owned, standbys } = this.#ctx;
    const found = (await owned.list()).filter(
      (c) => !standbys.get(c.Id) && owned.instanceIdOf(c) === instanceId,
    );
    await Promise.all(
      found.map(async (c) => {
        let grace = options.graceSeconds ?? this.#ctx.options.stopGraceSeconds;
        if (grace === undefined) grace = owned.specFromLabels(c.Labels)?.timeoutSeconds ?? 10;
        await owned.stop(c.Id, grace);
        await owned.remove(c.Id);
      }),
    );
  }
}
