/**
 * `--wait`: until a Service's current generation is Ready, failed, or the
 * timeout. Watches the Service, so the answer comes as soon as the API
 * writes it; polls only an API that does not stream watches.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { NotFoundError, SkiffError, type StatusLike, UnavailableError } from "../../src/errors.ts";
import type { Service } from "../../src/model/types.ts";
import type { ApiClient, WatchEvent } from "./client.ts";
import { condition } from "./output.ts";

export async function waitForReady(
  api: ApiClient,
  svc: Service,
  timeoutSeconds: number,
  progress: boolean,
): Promise<Service> {
  const name = svc.metadata.name;
  const deadline = Date.now() + timeoutSeconds * 1000;
  const readiness = new Readiness(name, timeoutSeconds, progress);
  let current = svc;
  if (readiness.done(current)) return current;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw readiness.timeout();
    // The API ends the stream at the deadline; the signal only guards against one that does not.
    const guard = AbortSignal.timeout(left + 5_000);
    let events: AsyncIterable<WatchEvent<Service>> | undefined;
    try {
      events = await api.watch("services", name, { timeoutSeconds: left / 1000, signal: guard });
    } catch (err) {
      if (guard.aborted) throw readiness.timeout();
      throw err;
    }
    if (!events) return pollUntilReady(api, current, deadline, readiness);
    try {
      for await (const event of events) {
        if (event.type === "ERROR") {
          const status = event.object as unknown as StatusLike;
          // The API ended the watch early (e.g. too slow, store interrupted): watch again,
          // unless the token itself is refused now.
          if (status.code === 401 || status.code === 403)
            throw SkiffError.fromStatus(status, status.code, "watch refused");
          break;
        }
        if (event.type === "DELETED")
          throw new NotFoundError(`service "${name}" was deleted while waiting`, {
            kind: "services",
            name,
          });
        current = event.object;
        if (readiness.done(current)) return current;
      }
    } catch (err) {
      if (guard.aborted) throw readiness.timeout();
      if (err instanceof SkiffError) throw err;
      // The connection broke (API restart): watch again until the deadline.
    }
  }
}

/** Readiness of a Service's current generation, with a progress line per change. */
class Readiness {
  readonly #name: string;
  readonly #timeoutSeconds: number;
  readonly #progress: boolean;
  readonly #started = Date.now();
  #last = "";

  constructor(name: string, timeoutSeconds: number, progress: boolean) {
    this.#name = name;
    this.#timeoutSeconds = timeoutSeconds;
    this.#progress = progress;
  }

  /** True when Ready; throws when the generation failed. */
  done(current: Service): boolean {
    const ready = condition(current, "Ready");
    const observed = current.status.observedGeneration === current.metadata.generation;
    const line = ready
      ? `${ready.status}${ready.reason ? ` ${ready.reason}` : ""}: ${ready.message ?? ""}`
      : "";
    if (this.#progress && line && line !== this.#last) {
      const t = ((Date.now() - this.#started) / 1000).toFixed(1).padStart(5);
      process.stderr.write(`${t}s ${line}\n`);
    }
    if (line) this.#last = line;
    if (observed && ready?.status === "True") return true;
    if (observed && ready?.status === "False") {
      throw new UnavailableError(
        `service "${this.#name}" failed: ${ready.message ?? ready.reason}; check: skiff service describe ${this.#name}`,
        { kind: "services", name: this.#name },
      );
    }
    return false;
  }

  timeout(): SkiffError {
    return new SkiffError(
      "TIMEOUT",
      `service "${this.#name}" not ready after ${this.#timeoutSeconds}s (last: ${this.#last || "no status"}); check: skiff service describe ${this.#name}`,
      { kind: "services", name: this.#name },
    );
  }
}

/** For an API without watch: re-read every 300 ms. */
async function pollUntilReady(
  api: ApiClient,
  svc: Service,
  deadline: number,
  readiness: Readiness,
): Promise<Service> {
  let current = svc;
  for (;;) {
    if (readiness.done(current)) return current;
    if (Date.now() >= deadline) throw readiness.timeout();
    await sleep(300);
    current = await api.get("services", svc.metadata.name);
  }
}
