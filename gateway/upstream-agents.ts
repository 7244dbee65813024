/**
 * The undici connection pools to instances, one per endpoint protocol:
 * HTTP/1.1 with keep-alive, and h2c made on first use.
 *
 * An isolate process being replaced (a recycle) marks its answers with
 * `x-skiff-draining: <ms until it stops>`. Until then, plus a margin, requests
 * to that origin go on one-use connections of their own pool (`reset`: the
 * request says `Connection: close`), never on a kept-alive one: a process that
 * drains closes its idle connections, and a request written onto one at that
 * instant is lost before any answer (with a body, nothing could safely retry
 * it). The kept-alive connections of the main pool meanwhile idle out on the
 * gateway's side (keepAliveTimeout, below the agent's hand-over period).
 */
import { Agent, type Dispatcher } from "undici";

export const DRAINING_HEADER = "x-skiff-draining";

/** Idle kept-alive upstream connections close after this; an isolate hand-over lasts longer. */
export const UPSTREAM_KEEPALIVE_MS = 4_000;

/** Past the announced stop: the old process's drain and exit. */
const HANDOVER_MARGIN_MS = 2_000;
/** A hand-over never lasts longer than this, whatever an answer says. */
const MAX_HANDOVER_MS = 60_000;
/** Origins remembered at once (each is an isolate process's socket). */
const MAX_DRAINING = 4_096;

export interface UpstreamRoute {
  dispatcher: Dispatcher;
  /** Close the connection after this request (a one-use connection). */
  reset: boolean;
}

export interface UpstreamAgents {
  agentFor(protocol: "http1" | "h2c"): Dispatcher;
  /** Where one request to `origin` goes: the kept-alive pool, or one-use connections during a hand-over. */
  routeFor(protocol: "http1" | "h2c", origin: string): UpstreamRoute;
  /** Whether the process behind `origin` is being replaced (its answers said so). */
  handingOver(origin: string): boolean;
  /** The process behind `origin` stops in `ms` (its `x-skiff-draining` answer). */
  draining(origin: string, ms: number): void;
  close(): Promise<void>;
}

export function createUpstreamAgents(
  now: () => number = performance.now.bind(performance),
): UpstreamAgents {
  const agentOptions = {
    keepAliveTimeout: UPSTREAM_KEEPALIVE_MS,
    // Also the most an instance's own `Keep-Alive: timeout=N` hint may stretch it
    // to: an isolate's recycle hand-over relies on no connection idling longer.
    keepAliveMaxTimeout: UPSTREAM_KEEPALIVE_MS,
    pipelining: 1,
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: { timeout: 5_000 },
  };
  const http1 = new Agent(agentOptions);
  let oneUse: Agent | undefined;
  let h2c: Agent | undefined;
  /** origin -> until (now() ms). */
  const handovers = new Map<string, number>();
  const keepAlive: UpstreamRoute = { dispatcher: http1, reset: false };

  const agentFor = (protocol: "http1" | "h2c"): Dispatcher => {
    if (protocol === "http1") return http1;
    // undici 8's Pool reads the top-level useH2c (not in its types), its Client h2Options.useH2c.
    const h2cOptions = {
      ...agentOptions,
      allowH2: true,
      useH2c: true,
      h2Options: { useH2c: true },
    };
    h2c ??= new Agent(h2cOptions);
    return h2c;
  };

  /** Whether origin's hand-over still runs (an ended one is forgotten). */
  const handingOver = (origin: string): boolean => {
    const until = handovers.get(origin);
    if (until === undefined) return false;
    if (now() < until) return true;
    handovers.delete(origin);
    return false;
  };

  return {
    agentFor,
    routeFor(protocol, origin) {
      if (protocol !== "http1") return { dispatcher: agentFor(protocol), reset: false };
      if (handovers.size === 0 || !handingOver(origin)) return keepAlive;
      oneUse ??= new Agent(agentOptions);
      return { dispatcher: oneUse, reset: true };
    },
    handingOver,
    draining(origin, ms) {
      if (!Number.isFinite(ms) || ms < 0) return;
      const until = now() + Math.min(ms, MAX_HANDOVER_MS) + HANDOVER_MARGIN_MS;
      if (!handovers.has(origin) && handovers.size >= MAX_DRAINING) {
        const t = now();
        for (const [o, u] of handovers) if (u <= t) handovers.delete(o);
        if (handovers.size >= MAX_DRAINING) return;
      }
      if ((handovers.get(origin) ?? 0) < until) handovers.set(origin, until);
    },
    async close() {
      await Promise.allSettled([http1.close(), h2c?.close(), oneUse?.close()]);
    },
  };
}
