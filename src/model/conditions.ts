/**
 * Knative-style status conditions. Each resource has a "happy" condition
 * (Ready) that summarises its dependents: Ready is False as soon as one
 * dependent is False, Unknown while any is Unknown or missing, True when all
 * are True. lastTransitionTime changes only when a condition's status does.
 * Functions return new arrays (sorted by type, as Knative keeps them).
 */
import type { Condition, ConditionStatus } from "./types.ts";

export interface ConditionSet {
  happy: string;
  dependents: readonly string[];
}

/** Which conditions make each kind Ready (Configuration Ready mirrors its latest revision). */
export const ConditionSets = {
  service: { happy: "Ready", dependents: ["ConfigurationsReady", "RoutesReady"] },
  configuration: { happy: "Ready", dependents: [] },
  revision: { happy: "Ready", dependents: ["ResourcesAvailable", "ContainerHealthy"] },
  route: { happy: "Ready", dependents: ["AllTrafficAssigned", "IngressReady"] },
} as const satisfies Record<string, ConditionSet>;

export interface ConditionUpdate {
  type: string;
  status: ConditionStatus;
  reason?: string;
  message?: string;
  severity?: Condition["severity"];
}

export function getCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

function sortByType(list: Condition[]): Condition[] {
  return list.sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}

/** Sets one condition; keeps lastTransitionTime when the status is unchanged. */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  update: ConditionUpdate,
  now: Date = new Date(),
): Condition[] {
  const prior = getCondition(conditions, update.type);
  const next: Condition = {
    type: update.type,
    status: update.status,
    lastTransitionTime:
      prior !== undefined && prior.status === update.status
        ? prior.lastTransitionTime
        : now.toISOString(),
  };
  if (update.reason) next.reason = update.reason;
  if (update.message) next.message = update.message;
  if (update.severity) next.severity = update.severity;
  const rest = (conditions ?? []).filter((c) => c.type !== update.type);
  return sortByType([...rest, next]);
}

export const markTrue = (conditions: readonly Condition[] | undefined, type: string, now?: Date) =>
  setCondition(conditions, { type, status: "True" }, now);

export const markFalse = (
  conditions: readonly Condition[] | undefined,
  type: string,
  reason: string,
  message: string,
  now?: Date,
) => setCondition(conditions, { type, status: "False", reason, message }, now);

/**
 * What the happy condition should be given its dependents: the first False
 * dependent wins (its reason and message are carried up), then the first
 * Unknown or missing one; True only when all are True (or there are none).
 */
export function aggregateReady(
  conditions: readonly Condition[] | undefined,
  dependents: readonly string[],
): Omit<ConditionUpdate, "type"> {
  const found = dependents.map((type) => ({ type, c: getCondition(conditions, type) }));
  const failed = found.find((d) => d.c?.status === "False");
  if (failed?.c) return { status: "False", reason: failed.c.reason, message: failed.c.message };
  const pending = found.find((d) => d.c === undefined || d.c.status === "Unknown");
  if (pending !== undefined) {
    return {
      status: "Unknown",
      reason: pending.c?.reason ?? `${pending.type}Missing`,
      message: pending.c?.message ?? `${pending.type} has not been reported yet`,
    };
  }
  return { status: "True" };
}

/** Recomputes the happy condition from its dependents. */
export function withAggregateReady(
  conditions: readonly Condition[] | undefined,
  set: ConditionSet,
  now?: Date,
): Condition[] {
  if (set.dependents.length === 0) return [...(conditions ?? [])];
  return setCondition(
    conditions,
    { type: set.happy, ...aggregateReady(conditions, set.dependents) },
    now,
  );
}

/** Every condition of the set that is missing becomes Unknown (a freshly created object). */
export function initializeConditions(
  set: ConditionSet,
  conditions: readonly Condition[] | undefined = [],
  now: Date = new Date(),
): Condition[] {
  let out = [...conditions];
  for (const type of [set.happy, ...set.dependents]) {
    if (getCondition(out, type) === undefined) {
      out = setCondition(out, { type, status: "Unknown" }, now);
    }
  }
  return out;
}
