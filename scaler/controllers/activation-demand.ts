/**
 * Whether a scaling pass counts a revision as activated (the KPA's
 * `activationRequested`: demand for a revision that had no ready instance).
 *
 * A gateway's signal since the last pass is demand whatever the revision
 * shows now: an instance started from a standby (an isolate woken by its
 * agent, a paused container resumed) is often ready before the next pass
 * runs, and a KPA that saw it only as ready, without the demand, would find
 * the revision still Inactive past its grace and scale it straight back to
 * zero under the requests it was started for. The level-triggered signs (an
 * activation key, requests queued at a gateway) count only while nothing is
 * ready: they outlive the moment they stood for.
 */
export interface DemandSigns {
  /** Ready instances now. */
  ready: number;
  /** A gateway signalled the revision since the last pass. */
  signalled: boolean;
  /** An activation key of the revision is set (a gateway holds a request for it). */
  keyed: boolean;
  /** Requests queued for it at gateways, as last reported. */
  queued: number;
}

export function activationRequested(d: DemandSigns): boolean {
  return d.signalled || (d.ready === 0 && (d.keyed || d.queued > 0));
}
