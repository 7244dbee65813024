/**
 * A service's recent events, as `kubectl describe` shows them, from what is
 * already stored: the condition transitions of the Service and its Revisions
 * (each condition's last transition) and the last failure each instance's
 * agent reports. No event store: an older transition of the same condition,
 * or the failure of an instance that is gone, is not kept anywhere.
 */
import type { Revision, Service } from "../../src/model/types.ts";
import type { HostView } from "./console/data.ts";

/** Most events one description carries (newest first). */
export const MAX_EVENTS = 20;

export interface ServiceEvent {
  /** RFC 3339. */
  time: string;
  /** "Service/NAME", "Revision/NAME" or "Instance/ID". */
  object: string;
  /** The condition type (an instance failure names the Revision condition it belongs on). */
  type: string;
  status: string;
  reason: string | undefined;
  message: string | undefined;
}

export function serviceEvents(
  svc: Service,
  revisions: Revision[],
  hosts: HostView[],
): ServiceEvent[] {
  const events: ServiceEvent[] = [];
  for (const obj of [svc, ...revisions]) {
    for (const c of obj.status.conditions ?? []) {
      events.push({
        time: c.lastTransitionTime,
        object: `${obj.kind}/${obj.metadata.name}`,
        type: c.type,
        status: c.status,
        reason: c.reason,
        message: c.message,
      });
    }
  }
  for (const host of hosts) {
    for (const i of host.instances) {
      if (!i.lastFailure) continue;
      events.push({
        time: new Date(i.lastFailure.at).toISOString(),
        object: `Instance/${i.id}`,
        type: i.lastFailure.condition,
        status: "False",
        reason: i.lastFailure.reason,
        message: i.lastFailure.message,
      });
    }
  }
  const at = (e: ServiceEvent) => Date.parse(e.time) || 0;
  return events.sort((a, b) => at(b) - at(a)).slice(0, MAX_EVENTS);
}
