/**
 * Redis keys and channels the gateways write and the scaler reads: the
 * contract between the two (docs/architecture.md lists every key). Routing
 * tables have their keys in src/control/routing.ts, endpoints and agents in
 * src/fleet/keys.ts; the counters' schema is in counters.ts.
 *
 *   {p}activate:{ns}:{rev}                  STRING  gateway id, SET NX PX: a revision at zero was asked for
 *   channel {p}activate                     "{ns}/{rev}", published only by the SET that won
 *   {p}slot-leases:{ns}:{rev}:{instance}    ZSET    lease id -> expiry (Redis clock, ms): hard-limit slots in use
 *   {p}slot-waiters:{ns}:{rev}              STRING  PX: some gateway holds requests waiting for a slot
 *   channel {p}slots                        "{ns}/{rev}": a slot was freed while someone waited
 *   {p}metrics:gw:{gatewayId}               HASH    "{ns}/{rev}" -> RevisionCounters JSON, PX = counter TTL
 *   {p}metrics:gateways                     ZSET    gateway id -> ms of its last publish
 */

export interface GatewayKeys {
  activate(namespace: string, revision: string): string;
  activateChannel: string;
  slotLeases(namespace: string, revision: string, instanceId: string): string;
  slotWaiters(namespace: string, revision: string): string;
  slotsChannel: string;
  metrics(gatewayId: string): string;
  gateways: string;
}

export function gatewayKeys(prefix: string): GatewayKeys {
  return {
    activate: (ns, rev) => `${prefix}activate:${ns}:${rev}`,
    activateChannel: `${prefix}activate`,
    slotLeases: (ns, rev, instance) => `${prefix}slot-leases:${ns}:${rev}:${instance}`,
    slotWaiters: (ns, rev) => `${prefix}slot-waiters:${ns}:${rev}`,
    slotsChannel: `${prefix}slots`,
    metrics: (id) => `${prefix}metrics:gw:${id}`,
    gateways: `${prefix}metrics:gateways`,
  };
}

/**
 * What a gateway publishes for one revision every period (field "{ns}/{rev}"
 * of `{p}metrics:gw:{gatewayId}`). Cumulative fields only grow while `since`
 * stays the same; a new `since` means the counters restarted from zero.
 *
 * Fleet concurrency over [t1, t2] = sum over gateways of
 * (concurrencyMs(t2) - concurrencyMs(t1)) / (t2 - t1); request rate likewise
 * from `requests`. `avgInflight` is the same average over this gateway's
 * last period, for a reader that samples once per period.
 */
export interface RevisionCounters {
  /** Format version. */
  v: 1;
  /** Wall-clock ms when the numbers were sampled. */
  at: number;
  /** Wall-clock ms when these cumulative counters started at zero. */
  since: number;
  /** Length of the window `avgInflight` and `windowRequests` cover, ms. */
  periodMs: number;
  /** Requests accepted and not finished, now (includes queued ones). */
  inflight: number;
  /** Of those, waiting for an instance or a hard-limit slot, now. */
  queued: number;
  /** Time-weighted average of `inflight` over the last period. */
  avgInflight: number;
  /** Requests accepted since `since` (arrivals). */
  requests: number;
  /** Requests finished since `since`, whatever their outcome. */
  completed: number;
  /** Requests accepted during the last period. */
  windowRequests: number;
  /** Integral of `inflight` over time since `since`, in request-milliseconds. */
  concurrencyMs: number;
  /** Requests in flight per instance id, now (only instances with some). */
  instances: Record<string, number>;
}
