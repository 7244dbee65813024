/**
 * The gateway's in-memory copy of the routing tables (src/control/routing.ts),
 * and the weighted pick made for every request. Lookups and picks touch only
 * memory: the hot path makes no Redis round trip for routing.
 */
import type { RoutingEntry, RoutingTarget } from "../src/control/routing.ts";

export interface CompiledRoute {
  readonly host: string;
  readonly entry: RoutingEntry;
  /** Running sums of the targets' percents, for the weighted pick. */
  readonly cumulative: readonly number[];
  readonly total: number;
}

export function compileRoute(host: string, entry: RoutingEntry): CompiledRoute {
  const cumulative: number[] = [];
  let total = 0;
  for (const t of entry.targets) {
    total += Math.max(0, t.percent);
    cumulative.push(total);
  }
  return { host, entry, cumulative, total };
}

/**
 * One target, each with probability percent / total: a uniform draw in
 * [0, total) lands in exactly one target's interval. Targets at 0% are never
 * picked; a host whose percents are all 0 picks nothing.
 */
export function pickTarget(
  route: CompiledRoute,
  random: () => number = Math.random,
): RoutingTarget | undefined {
  const { cumulative, total } = route;
  if (total <= 0) return undefined;
  const targets = route.entry.targets;
  if (targets.length === 1) return targets[0];
  const r = random() * total;
  for (let i = 0; i < cumulative.length; i++) {
    if (r < (cumulative[i] as number)) return targets[i];
  }
  // Only reachable through floating point at the very top of the range.
  for (let i = targets.length - 1; i >= 0; i--) {
    if ((targets[i] as RoutingTarget).percent > 0) return targets[i];
  }
  return undefined;
}

/** `Hello.Default.LOCALHOST.:8080` -> `hello.default.localhost` (port, case and final dot ignored). */
export function normalizeHost(header: string | undefined): string | undefined {
  if (!header) return undefined;
  let host = header.trim().toLowerCase();
  if (host.startsWith("[")) {
    // An IPv6 literal is never a service host; keep it whole for the 404 message.
    const end = host.indexOf("]");
    host = end > 0 ? host.slice(0, end + 1) : host;
  } else {
    const colon = host.indexOf(":");
    if (colon >= 0) host = host.slice(0, colon);
  }
  if (host.endsWith(".")) host = host.slice(0, -1);
  return host || undefined;
}

export class RouteTable {
  readonly #hosts = new Map<string, CompiledRoute>();

  get size(): number {
    return this.#hosts.size;
  }

  get(host: string): CompiledRoute | undefined {
    return this.#hosts.get(host);
  }

  /** Set or (undefined) remove a host's entry. */
  set(host: string, entry: RoutingEntry | undefined): void {
    if (entry) this.#hosts.set(host, compileRoute(host, entry));
    else this.#hosts.delete(host);
  }

  hosts(): IterableIterator<string> {
    return this.#hosts.keys();
  }
}
