/**
 * A console traffic form turned into the Service's new spec.traffic. Only the
 * form's shape is checked here (numbers, bounded sizes); what the targets mean
 * (percent sums, tag names, revisions of this service) is checked where every
 * write is checked, in the API's write path (../write.ts).
 *
 * Fields, per revision row (the latest-revision row is named "@latest"):
 *   percent.{row}  whole percent, empty for 0
 *   tag.{row}      tags separated by spaces or commas
 * or `pin={revision}`: all traffic to one revision, existing tags kept at 0%.
 */
import { type Cause, ValidationError } from "../../../src/errors.ts";
import type { TrafficTarget } from "../../../src/model/types.ts";
import { LATEST } from "./data.ts";

/** More rows than any service shows (its revisions are bounded by the revision quota). */
const MAX_ROWS = 500;
const MAX_TAGS_PER_ROW = 10;

type Form = Record<string, string | File | (string | File)[]>;

function text(value: Form[string] | undefined): string {
  return typeof value === "string" ? value : "";
}

export function pinTraffic(revision: string, current: TrafficTarget[]): TrafficTarget[] {
  const tagged = current.filter((t) => t.tag).map((t) => ({ ...t, percent: 0 }));
  return [{ revisionName: revision, percent: 100 }, ...tagged];
}

export function trafficFromForm(form: Form, service: string): TrafficTarget[] {
  const causes: Cause[] = [];
  const rows = new Map<string, { percent: number; tags: string[] }>();
  for (const [field, value] of Object.entries(form)) {
    const m = /^(percent|tag)\.(.+)$/.exec(field);
    if (!m) continue;
    const row = m[2]!;
    if (!rows.has(row)) {
      if (rows.size >= MAX_ROWS) {
        causes.push({ field: "traffic", message: `more than ${MAX_ROWS} targets` });
        break;
      }
      rows.set(row, { percent: 0, tags: [] });
    }
    const target = rows.get(row)!;
    const v = text(value).trim();
    if (m[1] === "percent") {
      if (v === "") continue;
      if (!/^\d{1,3}$/.test(v) || Number(v) > 100) {
        causes.push({
          field: `traffic[${row}].percent`,
          message: "must be a whole number from 0 to 100",
        });
      } else target.percent = Number(v);
    } else {
      const tags = v.split(/[\s,]+/).filter(Boolean);
      if (tags.length > MAX_TAGS_PER_ROW) {
        causes.push({
          field: `traffic[${row}].tag`,
          message: `at most ${MAX_TAGS_PER_ROW} tags per revision`,
        });
      } else target.tags = tags;
    }
  }
  if (causes.length > 0) throw ValidationError.of(causes, { kind: "services", name: service });
  const out: TrafficTarget[] = [];
  for (const [row, { percent, tags }] of rows) {
    if (percent === 0 && tags.length === 0) continue;
    const base: TrafficTarget = row === LATEST ? { latestRevision: true } : { revisionName: row };
    if (tags.length === 0) out.push({ ...base, percent });
    tags.forEach((tag, i) => {
      out.push({ ...base, tag, percent: i === 0 ? percent : 0 });
    });
  }
  return out;
}
