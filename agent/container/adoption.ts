/**
 * Adoption after an agent restart: take over this owner's containers (found by
 * labels; each carries its spec). Running ones are tracked again (ports
 * reserved, exits watched, readiness probed) and returned with their specs
 * and endpoints; paused ones become standbys again; dead ones are reported
 * (and removed when removeExited). Containers whose labels cannot be read,
 * or that duplicate a tracked instance, are left alone with a warning.
 */
import type { InstanceFailure } from "../errors.ts";
import type { RuntimeContext } from "./context.ts";
import { probeOnce } from "./probe.ts";
import type { AdoptResult } from "./runtime-types.ts";
import { declaredPort, InstanceSpecSchema, protocolOf } from "./spec.ts";

export async function adoptContainers(ctx: RuntimeContext): Promise<AdoptResult> {
  const { owned, table } = ctx;
  const warn = (message: string) => ctx.emitter.emit("warning", new Error(message));
  await ctx.events.open(); // subscribe first so that no exit falls between list and track
  const result: AdoptResult = { running: [], exited: [] };
  const containers = await owned.list();
  // First: an instance removed below takes its sandbox with it.
  await ctx.sandboxes.adopt(containers);
  for (const c of containers) {
    if (table.byContainer.has(c.Id) || ctx.standbys.get(c.Id)) continue;
    const labelled = owned.specFromLabels(c.Labels);
    const current = owned.instanceIdOf(c);
    const spec =
      labelled && current && current !== labelled.instanceId
        ? InstanceSpecSchema.safeParse({ ...labelled, instanceId: current }).data
        : labelled;
    // The endpoint is the port Docker actually publishes (the labels say what was asked).
    const published = spec
      ? c.Ports?.find((p) => p.PrivatePort === declaredPort(spec.container) && p.PublicPort)
      : undefined;
    const host = c.Labels[owned.keys.address] ?? published?.IP;
    const port = published?.PublicPort ?? Number(c.Labels[owned.keys.port]);
    if (!spec || !host || !Number.isInteger(port)) {
      warn(`container ${c.Id.slice(0, 12)} has unreadable Skiff labels; left alone`);
      continue;
    }
    if (table.byId.has(spec.instanceId)) {
      warn(
        `container ${c.Id.slice(0, 12)} duplicates tracked instance ${spec.instanceId}; left alone`,
      );
      continue;
    }
    if (c.State === "paused") {
      await ctx.standbys.adoptPaused(c, spec, { host, port, protocol: protocolOf(spec.container) });
      continue;
    }
    if (c.State !== "running") {
      const failure: InstanceFailure =
        c.State === "created"
          ? {
              reason: "StartFailed",
              message:
                "container was created but never started (the agent stopped while starting it)",
            }
          : await ctx.exits.describeExit(c.Id, spec, undefined, () => false);
      result.exited.push({
        instanceId: spec.instanceId,
        containerId: c.Id,
        namespace: spec.namespace,
        revision: spec.revision,
        ...failure,
      });
      if (ctx.options.removeExited) await owned.remove(c.Id);
      continue;
    }
    const t = table.track(
      spec,
      c.Id,
      { host, port, protocol: protocolOf(spec.container) },
      "ready",
    );
    t.imageId = c.ImageID;
    await ctx.exits.checkAlive(t); // learns the pid for netns probes
    if (t.forgotten) continue; // it died meanwhile: reported as an exit event
    const target = ctx.readiness.target(t);
    const ready = await probeOnce(target, ctx.options.probeTimeoutMs);
    if (t.forgotten) continue; // it died meanwhile: reported as an exit event
    if (!ready) t.state = "unready";
    ctx.readiness.schedulePeriodic(t, target);
    result.running.push({
      instanceId: spec.instanceId,
      containerId: c.Id,
      host,
      port,
      protocol: t.protocol,
      spec,
      imageId: c.ImageID,
      ready,
    });
  }
  ctx.sandboxes.fill();
  return result;
}
