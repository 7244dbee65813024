/**
 * Route status as Knative shows it: the service URL, and the spec's traffic
 * with `latestRevision` targets resolved to a concrete revision name and
 * tagged targets given their own URL.
 */
import { serviceHost, tagHost } from "./names.ts";
import type { TrafficTarget } from "./types.ts";

export interface ResolveTrafficOptions {
  /** The Service's latest ready revision; undefined while none is ready. */
  latestReadyRevisionName?: string;
  /** For Route targets naming other configurations: their latest ready revision. */
  latestReadyFor?: (configurationName: string) => string | undefined;
  /** Service/Route name used in host names. */
  name: string;
  namespace: string;
  domain: string;
  /** Default "http". */
  scheme?: string;
}

/** `http://{name}.{namespace}.{domain}` */
export function serviceUrl(
  name: string,
  namespace: string,
  domain: string,
  scheme = "http",
): string {
  return `${scheme}://${serviceHost(name, namespace, domain)}`;
}

/** `http://{tag}-{name}.{namespace}.{domain}` */
export function tagUrl(
  tag: string,
  name: string,
  namespace: string,
  domain: string,
  scheme = "http",
): string {
  return `${scheme}://${tagHost(tag, name, namespace, domain)}`;
}

/**
 * The status form of a traffic list, shaped as Knative's
 * GetRevisionTrafficTargets reports it: every target flattened to a
 * revisionName (no configurationName), `latestRevision` and `percent` always
 * present, a `url` on tagged targets, and targets naming the same tag,
 * revision and latestRevision merged into one. A latestRevision target whose
 * latest ready revision is not known yet keeps no revisionName: callers
 * report the Route as not ready until every target has one.
 */
export function resolveTraffic(
  traffic: readonly TrafficTarget[],
  opts: ResolveTrafficOptions,
): TrafficTarget[] {
  const scheme = opts.scheme ?? "http";
  const out: TrafficTarget[] = [];
  for (const t of traffic) {
    const target: TrafficTarget = {};
    if (t.tag !== undefined) target.tag = t.tag;
    // Targets that already carry a revisionName (pinned, or resolved by the caller) keep it.
    let revisionName = t.revisionName;
    if (revisionName === undefined) {
      revisionName =
        t.configurationName !== undefined && opts.latestReadyFor !== undefined
          ? opts.latestReadyFor(t.configurationName)
          : opts.latestReadyRevisionName;
    }
    if (revisionName !== undefined) target.revisionName = revisionName;
    target.latestRevision = t.latestRevision ?? t.revisionName === undefined;
    target.percent = t.percent ?? 0;
    if (t.tag !== undefined)
      target.url = tagUrl(t.tag, opts.name, opts.namespace, opts.domain, scheme);
    const same =
      revisionName !== undefined &&
      out.find(
        (o) =>
          o.tag === target.tag &&
          o.revisionName === revisionName &&
          o.latestRevision === target.latestRevision,
      );
    if (same) same.percent = (same.percent ?? 0) + target.percent;
    else out.push(target);
  }
  return out;
}

/** True when every target has a concrete revision (nothing waits for a first ready revision). */
export function allTrafficAssigned(resolved: readonly TrafficTarget[]): boolean {
  return resolved.every((t) => t.revisionName !== undefined);
}
