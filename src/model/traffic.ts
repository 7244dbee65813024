/**
 * Traffic targets (Service and Route `spec.traffic`) with Knative's rules and
 * defaults: `latestRevision` defaults to true exactly when no revisionName is
 * given; a missing percent counts as 0; percents sum to exactly 100; tags are
 * unique DNS-1035 labels that fit in a host label next to the name.
 */
import type { Cause } from "../errors.ts";
import {
  child,
  Issues,
  item,
  readArray,
  readBool,
  readInt,
  readObject,
  readString,
} from "./fields.ts";
import { type ModelLimitsInput, resolveLimits } from "./limits.ts";
import { checkDns1035Label, checkDns1123Subdomain, checkTagHostLabel, MAX_LABEL } from "./names.ts";
import type { TrafficTarget } from "./types.ts";

export type TrafficOwner = "service" | "route";

export interface TrafficOptions {
  /** A Service routes only to its own configuration, so configurationName is not allowed. */
  owner: TrafficOwner;
  /** Path of the list in the submitted object (default `spec.traffic`). */
  fieldPrefix?: string;
  /** The Service/Route name, to check that `{tag}-{name}` fits in a host label. */
  name?: string;
  limits?: ModelLimitsInput;
}

/** What an empty Service traffic list means: everything to the latest ready revision. */
export function defaultServiceTraffic(): TrafficTarget[] {
  return [{ latestRevision: true, percent: 100 }];
}

export const TARGET_SHAPE = {
  known: ["tag", "revisionName", "configurationName", "latestRevision", "percent"] as const,
  unsupported: { url: "it is set in status for tagged targets; remove it from spec" },
};

/** Internal reader used by the Service parser. */
export function readTraffic(
  value: unknown,
  field: string,
  issues: Issues,
  opts: { owner: TrafficOwner; name?: string; maxTargets: number },
): TrafficTarget[] | undefined {
  const list = readArray(value, field, issues, { maxItems: opts.maxTargets });
  if (list === undefined) {
    if (value === undefined || value === null)
      return opts.owner === "service" ? defaultServiceTraffic() : [];
    return undefined;
  }
  if (list.length === 0) return opts.owner === "service" ? defaultServiceTraffic() : [];
  const before = issues.count;
  const out: TrafficTarget[] = [];
  const tags = new Map<string, number>();
  let sum = 0;
  let percentsOk = true;

  list.forEach((raw, i) => {
    const at = item(field, i);
    const obj = readObject(raw, at, issues, TARGET_SHAPE, { required: true });
    if (obj === undefined) {
      percentsOk = false;
      return;
    }
    const target: TrafficTarget = {};

    const tag = readString(obj.tag, child(at, "tag"), issues);
    if (tag !== undefined) {
      const bad = checkDns1035Label(tag);
      const prior = tags.get(tag);
      if (bad !== undefined) issues.add(child(at, "tag"), bad);
      else if (prior !== undefined) {
        issues.add(
          child(at, "tag"),
          `duplicate tag "${tag}" (also at ${child(item(field, prior), "tag")}); tags must be unique`,
          "FieldValueDuplicate",
        );
      } else {
        tags.set(tag, i);
        if (opts.name !== undefined) {
          const long = checkTagHostLabel(tag, opts.name);
          if (long !== undefined) issues.add(child(at, "tag"), long, "FieldValueTooLong");
        }
      }
      target.tag = tag;
    }

    const revisionName = readString(obj.revisionName, child(at, "revisionName"), issues);
    if (revisionName !== undefined) {
      const bad = checkDns1123Subdomain(revisionName);
      if (bad !== undefined) issues.add(child(at, "revisionName"), bad);
      else if (revisionName.length > MAX_LABEL) {
        issues.add(
          child(at, "revisionName"),
          `must be no more than ${MAX_LABEL} characters (got ${revisionName.length})`,
          "FieldValueTooLong",
        );
      }
      target.revisionName = revisionName;
    }

    const configurationName = readString(
      obj.configurationName,
      child(at, "configurationName"),
      issues,
    );
    if (configurationName !== undefined) {
      if (opts.owner === "service") {
        issues.add(
          child(at, "configurationName"),
          "not allowed in a Service's traffic (a Service routes only to its own configuration); " +
            "use latestRevision: true to follow the newest ready revision, or revisionName to pin one",
          "FieldValueForbidden",
        );
      } else {
        const bad = checkDns1035Label(configurationName);
        if (bad !== undefined) issues.add(child(at, "configurationName"), bad);
        if (revisionName !== undefined) {
          issues.add(
            at,
            'set either "revisionName" or "configurationName", not both',
            "FieldValueForbidden",
          );
        }
      }
      target.configurationName = configurationName;
    } else if (opts.owner === "route" && revisionName === undefined) {
      issues.add(
        at,
        'set "revisionName" (a fixed revision) or "configurationName" (its latest ready revision)',
        "FieldValueRequired",
      );
    }

    const latest = readBool(obj.latestRevision, child(at, "latestRevision"), issues);
    if (latest === true && revisionName !== undefined) {
      issues.add(
        child(at, "latestRevision"),
        `latestRevision: true follows the newest ready revision and cannot be combined with revisionName "${revisionName}"; remove one of them`,
        "FieldValueForbidden",
      );
    }
    if (latest === false && revisionName === undefined) {
      issues.add(
        child(at, "latestRevision"),
        configurationName !== undefined
          ? "latestRevision: false cannot be used with configurationName; set revisionName to pin a revision"
          : "latestRevision: false needs a revisionName to pin; set revisionName, or use latestRevision: true",
        "FieldValueRequired",
      );
    }
    target.latestRevision = latest ?? revisionName === undefined;

    const percent = readInt(obj.percent, child(at, "percent"), issues, { min: 0, max: 100 });
    if (percent !== undefined) {
      target.percent = percent;
      sum += percent;
    } else if (obj.percent !== undefined && obj.percent !== null) {
      percentsOk = false;
    }
    out.push(target);
  });

  if (percentsOk && sum !== 100) {
    issues.add(
      field,
      `traffic percents sum to ${sum}, but must sum to exactly 100 (a target without percent counts as 0)`,
    );
  }
  return issues.count === before ? out : undefined;
}

/**
 * Validates and defaults a traffic list. For a Service (`owner: "service"`)
 * an empty or missing list becomes `[{ latestRevision: true, percent: 100 }]`;
 * for a Route it stays empty.
 */
export function validateTraffic(
  list: unknown,
  opts: TrafficOptions,
): { traffic: TrafficTarget[] | undefined; causes: Cause[] } {
  const issues = new Issues();
  const { maxTrafficTargets } = resolveLimits(opts.limits);
  const traffic = readTraffic(list, opts.fieldPrefix ?? "spec.traffic", issues, {
    owner: opts.owner,
    name: opts.name,
    maxTargets: maxTrafficTargets,
  });
  return { traffic: issues.count === 0 ? traffic : undefined, causes: issues.causes };
}

/**
 * Causes for targets whose revisionName does not exist (the store answers
 * `exists`). Pure, so the deploy API can run it inside its transaction.
 */
export function missingRevisionCauses(
  traffic: readonly TrafficTarget[],
  exists: (revisionName: string) => boolean,
  fieldPrefix = "spec.traffic",
): Cause[] {
  const causes: Cause[] = [];
  traffic.forEach((t, i) => {
    if (t.revisionName !== undefined && !exists(t.revisionName)) {
      causes.push({
        field: child(item(fieldPrefix, i), "revisionName"),
        message: `revision "${t.revisionName}" does not exist; name an existing revision (skiff revision list) or use latestRevision: true`,
        reason: "FieldValueNotFound",
      });
    }
  });
  return causes;
}
