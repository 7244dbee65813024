/** The field walker's bounds: did-you-mean only for short keys, a capped list of causes, short echoes. */
import { describe, expect, it } from "vitest";
import { echoKey, Issues, MAX_CAUSES, readObject, suggest } from "../../../src/model/fields.ts";
import { parseService } from "../../../src/model/validate.ts";

describe("bounded suggestions", () => {
  it("still suggests for typos", () => {
    expect(suggest("templte", ["template", "traffic"])).toBe("template");
    expect(suggest("contianers", ["containers", "worker"])).toBe("containers");
    expect(suggest("image_pull", ["imagePullPolicy"])).toBeUndefined();
  });

  it("never suggests for a key over 64 characters, whatever its length", () => {
    expect(suggest(`template${"x".repeat(60)}`, ["template"])).toBeUndefined();
    // 2 MB: used to build a 2M x 8 matrix per candidate (17.7 s, 530 MB in `skiff up`).
    expect(suggest("t".repeat(2 * 1024 * 1024), ["template", "traffic"])).toBeUndefined();
  });

  it("a 2 MB unknown key is reported with a short path and the allowed fields", () => {
    const key = "k".repeat(2 * 1024 * 1024);
    const issues = new Issues();
    readObject({ [key]: 1 }, "spec", issues, { known: ["template", "traffic"] });
    expect(issues.causes).toHaveLength(1);
    expect(issues.causes[0]!.field.length).toBeLessThan(120);
    expect(issues.causes[0]!.field).toMatch(/^spec\.k{64}\.\.\.\(2097152 characters\)$/);
    expect(issues.causes[0]!.message).toMatch(/fields allowed here are: template, traffic/);
  });

  it("keeps at most MAX_CAUSES causes and counts the rest", () => {
    const body: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) body[`unknown${i}`] = i;
    let error: Error | undefined;
    try {
      parseService(
        { apiVersion: "serving.knative.dev/v1", kind: "Service", ...body },
        { namespace: "default" },
      );
    } catch (err) {
      error = err as Error;
    }
    const causes = (error as unknown as { causes: { field: string; message: string }[] }).causes;
    expect(causes.length).toBe(MAX_CAUSES + 1);
    expect(causes.at(-1)!.message).toMatch(/and \d+ more problems not listed/);
    expect(error!.message.length).toBeLessThan(20_000);
  });

  it("inherited names (constructor, __proto__) are unknown fields, not hints", () => {
    const issues = new Issues();
    readObject(JSON.parse('{"constructor": 1, "toString": 2}'), "x", issues, {
      known: ["a"],
      unsupported: { generateName: "use name" },
    });
    expect(issues.causes.map((c) => c.reason)).toEqual(["FieldValueUnknown", "FieldValueUnknown"]);
  });

  it("echoKey leaves short keys alone", () => {
    expect(echoKey("short")).toBe("short");
  });
});
