/**
 * The instances a runtime tracks, by instance id and by container id, with
 * their published ports reserved. An id is claimed for the whole of a start()
 * so that a second start() of it fails and a stop() that comes before its
 * container exists waits for it (and stops it as soon as it is tracked).
 */
import { AlreadyExistsError } from "../../src/errors.ts";
import type { InstanceFailure } from "../errors.ts";
import type { RuntimeContext } from "./context.ts";
import type { Endpoint, InstanceInfo, InstanceState, StopOptions } from "./runtime-types.ts";
import type { InstanceSpec } from "./spec.ts";

export interface Tracked extends Endpoint {
  spec: InstanceSpec;
  containerId: string;
  state: InstanceState;
  failure?: InstanceFailure;
  dying: boolean;
  forgotten: boolean;
  oomSeen: boolean;
  /** Settles when the container exited or stop() was called: wakes the readiness loop. */
  interrupted: Promise<void>;
  interrupt: () => void;
  probeTimer?: NodeJS.Timeout;
  livenessTimer?: NodeJS.Timeout;
  /** Set when the liveness probe killed it: what its exit is reported as. */
  livenessFailure?: string;
  stopping?: Promise<void>;
  /** The container's main process on this host, once seen running (for netns probes). */
  pid?: number;
  /** The image it runs (kept on a standby: a resume must run what the spec resolves to now). */
  imageId?: string;
}

export class InstanceTable {
  readonly #ctx: RuntimeContext;
  readonly byId = new Map<string, Tracked>();
  readonly byContainer = new Map<string, Tracked>();
  readonly #claimed = new Set<string>();
  /** stop() calls for instances whose start() has not tracked a container yet. */
  readonly #pendingStops = new Map<string, { options: StopOptions; done: () => void }>();

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
  }

  /** Reserve `id` for a start(); AlreadyExistsError while it runs or starts. */
  claim(id: string): void {
    if (this.byId.has(id) || this.#claimed.has(id)) {
      throw new AlreadyExistsError(
        `instance ${id} is already running on this agent; stop it first`,
        {
          kind: "Instance",
          name: id,
        },
      );
    }
    this.#claimed.add(id);
  }

  /** The start() of `id` is over (tracked or failed): stops waiting on it settle. */
  release(id: string): void {
    this.#claimed.delete(id);
    const pending = this.#pendingStops.get(id);
    if (pending) {
      this.#pendingStops.delete(id);
      pending.done();
    }
  }

  isClaimed(id: string): boolean {
    return this.#claimed.has(id);
  }

  /**
   * A stop() of an instance whose start() is between claiming the id and
   * tracking its container: the stop happens as soon as it is tracked (or the
   * start fails first). Resolves then.
   */
  deferStop(id: string, options: StopOptions): Promise<void> {
    let pending = this.#pendingStops.get(id);
    const settled = new Promise<void>((resolve) => {
      const previous = pending?.done;
      pending = {
        options,
        done: () => {
          previous?.();
          resolve();
        },
      };
    });
    if (pending) this.#pendingStops.set(id, pending);
    return settled;
  }

  track(
    spec: InstanceSpec,
    containerId: string,
    endpoint: Endpoint,
    state: InstanceState,
  ): Tracked {
    let interrupt!: () => void;
    const interrupted = new Promise<void>((resolve) => {
      interrupt = resolve;
    });
    const t: Tracked = {
      ...endpoint,
      spec,
      containerId,
      state,
      dying: false,
      forgotten: false,
      oomSeen: false,
      interrupted,
      interrupt,
    };
    this.byId.set(spec.instanceId, t);
    this.byContainer.set(containerId, t);
    this.#ctx.ports.reserve(endpoint.port);
    const pending = this.#pendingStops.get(spec.instanceId);
    if (pending) {
      this.#pendingStops.delete(spec.instanceId);
      t.stopping = this.#ctx.stopper.stopTracked(t, pending.options).finally(pending.done);
    }
    return t;
  }

  /** Untrack, keeping the port reserved (its container still publishes it: a standby). */
  untrack(t: Tracked): void {
    t.forgotten = true;
    if (this.byId.get(t.spec.instanceId) === t) this.byId.delete(t.spec.instanceId);
    this.byContainer.delete(t.containerId);
  }

  /** Untrack and free the port (idempotent). */
  forget(t: Tracked): void {
    if (t.forgotten) return;
    clearTimeout(t.probeTimer);
    clearTimeout(t.livenessTimer);
    this.untrack(t);
    this.#ctx.ports.release(t.port);
    t.interrupt();
  }

  /** Forget it and remove its container. */
  async discard(t: Tracked): Promise<void> {
    this.forget(t);
    await this.#ctx.owned.remove(t.containerId);
  }

  info(t: Tracked): InstanceInfo {
    return {
      instanceId: t.spec.instanceId,
      containerId: t.containerId,
      state: t.state,
      host: t.host,
      port: t.port,
      protocol: t.protocol,
      namespace: t.spec.namespace,
      revision: t.spec.revision,
    };
  }
}
