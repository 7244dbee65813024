/**
 * The CLI prints every error one way (format-error.ts): the message, then
 * each field cause the message does not already say. Pure: no server.
 */
import { describe, expect, it } from "vitest";
import { formatError } from "../../../deploy/cli/format-error.ts";
import { SkiffError, UsageError, ValidationError } from "../../../src/errors.ts";

describe("formatError", () => {
  it("prints an API Status's causes under its message, one per line", () => {
    const err = SkiffError.fromStatus({
      kind: "Status",
      code: 422,
      reason: "Invalid",
      message: 'Service "hello" is invalid',
      details: {
        causes: [
          { field: "spec.template.spec.containers[0].image", message: "is required" },
          { field: "", message: "too many revisions" },
        ],
      },
    } as never);
    expect(err.code).toBe("INVALID");
    expect(formatError(err)).toBe(
      'Error: Service "hello" is invalid\n' +
        "  spec.template.spec.containers[0].image: is required\n" +
        "  too many revisions",
    );
  });

  it("does not repeat causes the message already lists", () => {
    const err = ValidationError.of([{ field: "metadata.name", message: "must be a DNS label" }]);
    expect(formatError(err)).toBe("Error: invalid: metadata.name: must be a DNS label");
  });

  it("prints a usage error and a plain error by their message", () => {
    expect(formatError(new UsageError("--port x: expected a port number"))).toBe(
      "Error: --port x: expected a port number",
    );
    expect(formatError(new Error("boom"))).toBe("Error: boom");
  });
});
