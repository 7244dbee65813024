/**
 * What the container runtime's parts share: the validated options, the engine,
 * the runtime's event emitter, and each other. The facade (runtime.ts) wires
 * them once in its constructor; no part calls another before that is done.
 */
import type { EventEmitter } from "node:events";
import type Docker from "dockerode";
import type { LimitFunction } from "p-limit";
import type { ContainerEvents } from "./events.ts";
import type { ExitWatcher } from "./exits.ts";
import type { ImageResolver } from "./images.ts";
import type { InstanceTable } from "./instances.ts";
import type { ClusterNetwork } from "./network.ts";
import type { OwnedContainers } from "./owned.ts";
import type { PortAllocator } from "./ports.ts";
import type { ReadinessProber } from "./readiness.ts";
import type { RuntimeOptions } from "./runtime-options.ts";
import type { RuntimeEvents } from "./runtime-types.ts";
import type { SandboxPool } from "./sandboxes.ts";
import type { StandbyPool } from "./standby-pool.ts";
import type { Stopper } from "./stopping.ts";

export interface RuntimeContext {
  options: Readonly<RuntimeOptions>;
  docker: Docker;
  /** The ContainerRuntime itself: parts emit its events. */
  emitter: EventEmitter<RuntimeEvents>;
  ports: PortAllocator;
  images: ImageResolver;
  events: ContainerEvents;
  network: ClusterNetwork;
  owned: OwnedContainers;
  table: InstanceTable;
  exits: ExitWatcher;
  readiness: ReadinessProber;
  standbys: StandbyPool;
  sandboxes: SandboxPool;
  stopper: Stopper;
  /** At most `startConcurrency` docker starts in flight (creates are not gated). */
  startGate: LimitFunction;
  /** Whether close() was called. */
  closed(): boolean;
}

/** Milliseconds between two performance.now() readings, to 0.1 ms. */
export function elapsed(from: number, to: number): number {
  return Math.round((to - from) * 10) / 10;
}
