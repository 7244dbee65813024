/** The one instance error type: its failure, its place in src/errors.ts' hierarchy, its flags. */
import { describe, expect, test } from "vitest";
import { InstanceError } from "../../agent/errors.ts";
import { SkiffError } from "../../src/errors.ts";

describe("InstanceError", () => {
  test("carries the failure for the report and a stable code per reason", () => {
    const err = new InstanceError(
      { reason: "ImageNotFound", message: "image x not found locally" },
      { instanceId: "i-1" },
    );
    expect(err).toBeInstanceOf(SkiffError);
    expect(err.code).toBe("NOT_FOUND");
    expect(err.message).toBe("image x not found locally");
    expect(err.failure.reason).toBe("ImageNotFound");
    expect(err.instanceId).toBe("i-1");
    expect(new InstanceError({ reason: "ReadinessTimeout", message: "m" }).code).toBe("TIMEOUT");
    expect(new InstanceError({ reason: "RevisionNotFound", message: "m" }).code).toBe("NOT_FOUND");
    expect(new InstanceError({ reason: "WorkerModuleError", message: "m" }).code).toBe("INVALID");
    expect(new InstanceError({ reason: "ExitCode3", message: "m" }).code).toBe("UNAVAILABLE");
  });

  test("a failure is the revision's own and final unless said otherwise", () => {
    const plain = new InstanceError({ reason: "StartFailed", message: "m" });
    expect(plain.health).toBe(true);
    expect(plain.retryable).toBe(false);
    const notItsFault = new InstanceError(
      { reason: "RuntimeUnavailable", message: "m" },
      { retryable: true, health: false },
    );
    expect(notItsFault.health).toBe(false);
    expect(notItsFault.retryable).toBe(true);
  });
});
