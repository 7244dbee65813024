/**
 * Exit watching: a container of ours died (the Docker events stream said so,
 * or a look at it did). The exit is described in readable terms (exit code,
 * OOM kill, the last log lines) and reported as an "exit" event when the
 * instance was running; start() and stop() handle the exits they meet.
 */
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { InstanceFailure } from "../errors.ts";
import type { RuntimeContext } from "./context.ts";
import { dockerStatus } from "./docker-errors.ts";
import type { Tracked } from "./instances.ts";
import { tailLogs } from "./logs.ts";
import type { InstanceSpec } from "./spec.ts";

/** How long a SIGKILLed container under a memory limit waits for Docker to say it was an OOM kill. */
const OOM_SETTLE_MS = 500;

export class ExitWatcher {
  readonly #ctx: RuntimeContext;

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
    const events = ctx.events;
    events.on("die", (e) => {
      this.onDie(e.containerId, e.exitCode).catch((err: Error) => ctx.emitter.emit("warning", err));
    });
    events.on("oom", (e) => {
      const t = ctx.table.byContainer.get(e.containerId);
      if (t) t.oomSeen = true;
    });
    events.on("reconnect", () => void this.#recheckAll());
    events.on("warning", (err) => ctx.emitter.emit("warning", err));
  }

  /** Look at the container: learns its pid (netns probes) and notices an exit the events missed. */
  async checkAlive(t: Tracked): Promise<void> {
    try {
      const info = await this.#ctx.docker.getContainer(t.containerId).inspect();
      if (info.State.Running && info.State.Pid && !t.pid && this.#ctx.options.probeNetns) {
        t.pid = await ownPid(info.State.Pid, t.containerId);
      }
      if (
        !info.State.Running &&
        info.State.FinishedAt &&
        !info.State.FinishedAt.startsWith("0001")
      ) {
        await this.onDie(t.containerId, info.State.ExitCode);
      }
    } catch (err) {
      if (dockerStatus(err) === 404) await this.onDie(t.containerId, undefined);
    }
  }

  async #recheckAll(): Promise<void> {
    await Promise.all(
      [...this.#ctx.table.byContainer.values()].map((t) => this.checkAlive(t)),
    ).catch((err: Error) => this.#ctx.emitter.emit("warning", err));
  }

  /** A container of ours died: describe why, then report it (or hand it to start()/stop()). */
  async onDie(containerId: string, exitCodeHint: number | undefined): Promise<void> {
    const ctx = this.#ctx;
    if (await ctx.sandboxes.onDie(containerId)) return;
    const standby = ctx.standbys.get(containerId);
    if (standby) {
      // Killed while paused (by hand, or the OOM killer): nothing to report, nothing to keep.
      await ctx.standbys.drop(standby, "Exited");
      return;
    }
    const t = ctx.table.byContainer.get(containerId);
    if (!t || t.dying || t.failure) return;
    t.dying = true;
    const exit = await this.describeExit(containerId, t.spec, exitCodeHint, () => t.oomSeen);
    const failure: InstanceFailure = t.livenessFailure
      ? { ...exit, reason: "LivenessProbeFailed", message: t.livenessFailure }
      : exit;
    t.failure = failure;
    t.interrupt();
    // start() and stop() clean up after themselves; only a running instance's exit is news.
    if (t.state === "starting" || t.state === "stopping") return;
    ctx.table.forget(t);
    ctx.emitter.emit("exit", {
      instanceId: t.spec.instanceId,
      containerId,
      namespace: t.spec.namespace,
      revision: t.spec.revision,
      ...failure,
    });
    if (ctx.options.removeExited) await ctx.owned.remove(containerId);
  }

  async describeExit(
    containerId: string,
    spec: InstanceSpec,
    exitCodeHint: number | undefined,
    oomSeen: () => boolean,
  ): Promise<InstanceFailure> {
    const inspect = () =>
      this.#ctx.docker
        .getContainer(containerId)
        .inspect()
        .catch(() => undefined);
    const [info, logs] = await Promise.all([
      inspect(),
      tailLogs(this.#ctx.docker, containerId, this.#ctx.options.logTailLines),
    ]);
    const exitCode = info?.State.ExitCode ?? exitCodeHint ?? -1;
    let oomKilled = info?.State.OOMKilled === true || (oomSeen() && exitCode === 137);
    // Docker can tell of an OOM kill (its event, the state's flag) just after the
    // exit: a SIGKILL under a memory limit waits a moment for it.
    const limited = spec.container.resources?.limits?.memory !== undefined;
    const deadline = performance.now() + OOM_SETTLE_MS;
    while (!oomKilled && limited && exitCode === 137 && performance.now() < deadline) {
      await sleep(25);
      oomKilled = oomSeen() || (await inspect())?.State.OOMKilled === true;
    }
    if (oomKilled) {
      const limit = spec.container.resources?.limits?.memory;
      return {
        reason: "OOMKilled",
        message:
          `container was OOMKilled: it went over its memory limit` +
          `${limit ? ` of ${limit}` : ""} and was killed (exit code ${exitCode}); ` +
          "raise resources.limits.memory or lower its usage" +
          logSuffix(logs),
        exitCode,
        oomKilled: true,
        logs,
      };
    }
    const dockerError = info?.State.Error ? ` (${info.State.Error})` : "";
    return {
      reason: `ExitCode${exitCode}`,
      message: `container exited with code ${exitCode}${dockerError}${logSuffix(logs)}`,
      exitCode,
      oomKilled: false,
      logs,
    };
  }
}

/**
 * The pid, if this process sees the engine's processes (same host, same pid
 * namespace): its cgroup path names the container. Otherwise undefined, and
 * probes go through the published port.
 */
export async function ownPid(pid: number, containerId: string): Promise<number | undefined> {
  try {
    const cgroup = await readFile(`/proc/${pid}/cgroup`, "utf8");
    return cgroup.includes(containerId) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The tail of a failure message: the container's last log lines, or that it wrote none. */
export function logSuffix(logs: string[]): string {
  return logs.length ? `; last log lines:\n${logs.join("\n")}` : "; it wrote no logs";
}
