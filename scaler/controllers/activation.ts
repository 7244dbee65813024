/**
 * What asks a revision at zero for an instance: the gateways' activation
 * signals (`{p}activate`, "{ns}/{rev}", received on a subscriber of its own
 * and kept until the next pass takes them) and their activation keys
 * (`{p}activate:{ns}:{rev}`, SET NX PX while a request waits for a revision
 * without an endpoint), read on each pass for the revisions with none ready.
 */
import type { Redis } from "ioredis";
import { parseRevisionRef } from "../../src/fleet/keys.ts";
import type { Logger } from "../../src/logging.ts";
import { type GatewayKeys, gatewayKeys } from "../../src/traffic/keys.ts";
import type { ScalerMetrics } from "../metrics.ts";

export interface ActivationOptions {
  /** Commands (activation keys) and the source of the subscriber. */
  redis: Redis;
  prefix: string;
  metrics: ScalerMetrics;
  logger: Logger;
  /** False once the controller stopped: signals are then ignored. */
  listening: () => boolean;
  /** A signal arrived: run a pass. */
  onSignal: () => void;
}

export class Activation {
  readonly #o: ActivationOptions;
  readonly #gw: GatewayKeys;
  /** Activation signals received since the last pass. */
  readonly #signals = new Set<string>();
  #sub: Redis | undefined;

  constructor(options: ActivationOptions) {
    this.#o = options;
    this.#gw = gatewayKeys(options.prefix);
  }

  async subscribe(): Promise<void> {
    const sub = this.#o.redis.duplicate({ connectionName: "skiff-scaler:activate" });
    // Each failed reconnect attempt: the outage itself is logged once (RedisHealth).
    sub.on("error", (err: Error & { code?: string }) =>
      this.#o.logger.debug({ err: err.code ?? err.message }, "activation subscriber error"),
    );
    sub.on("message", (_channel: string, ref: string) => this.#onSignal(ref));
    this.#sub = sub;
    await sub.subscribe(this.#gw.activateChannel);
  }

  close(): void {
    this.#sub?.disconnect();
    this.#sub = undefined;
  }

  /** The signals received since the last take(), left in place. */
  peek(): ReadonlySet<string> {
    return this.#signals;
  }

  /** The signals received since the last call. */
  take(): Set<string> {
    const signalled = new Set(this.#signals);
    this.#signals.clear();
    return signalled;
  }

  /** Which of `refs` ("{ns}/{rev}") have an activation key set. */
  async keys(refs: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    if (refs.length === 0) return out;
    const pipe = this.#o.redis.pipeline();
    for (const ref of refs) {
      const r = parseRevisionRef(ref)!;
      pipe.exists(this.#gw.activate(r.namespace, r.revision));
    }
    const replies = (await pipe.exec()) ?? [];
    refs.forEach((ref, i) => {
      const [err, n] = replies[i] ?? [];
      if (!err && Number(n) > 0) out.add(ref);
    });
    return out;
  }

  #onSignal(ref: string): void {
    if (!this.#o.listening() || !parseRevisionRef(ref)) return;
    this.#o.metrics.activations.inc();
    this.#signals.add(ref);
    this.#o.logger.info({ revision: ref }, "activation signal");
    this.#o.onSignal();
  }
}
