/**
 * The one error hierarchy: each stable code maps to one Kubernetes Status and
 * back, one CLI exit code, and zod issues become causes with Kubernetes field
 * paths. Pure: no server.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ClientGoneError,
  causesFromIssues,
  type ErrorCode,
  ErrorCodes,
  exitCodeOf,
  NotFoundError,
  NotLeaderError,
  SkiffError,
  UsageError,
  ValidationError,
} from "../../src/errors.ts";
import { parseOrThrow } from "../../src/parse.ts";

const CODES = Object.keys(ErrorCodes) as ErrorCode[];

/** Codes that share their (status, reason) with an earlier one come back as that one. */
const ALIASES: Partial<Record<ErrorCode, ErrorCode>> = {
  USAGE: "BAD_REQUEST",
  NOT_LEADER: "UNAVAILABLE",
};

describe("SkiffError to Status", () => {
  it("maps each code to its HTTP status and Kubernetes reason", () => {
    const expected: Record<ErrorCode, [number, string]> = {
      BAD_REQUEST: [400, "BadRequest"],
      UNAUTHORIZED: [401, "Unauthorized"],
      FORBIDDEN: [403, "Forbidden"],
      NOT_FOUND: [404, "NotFound"],
      METHOD_NOT_ALLOWED: [405, "MethodNotAllowed"],
      ALREADY_EXISTS: [409, "AlreadyExists"],
      EXPIRED: [410, "Expired"],
      CONFLICT: [409, "Conflict"],
      TOO_LARGE: [413, "RequestEntityTooLarge"],
      UNSUPPORTED_MEDIA_TYPE: [415, "UnsupportedMediaType"],
      INVALID: [422, "Invalid"],
      TOO_MANY_REQUESTS: [429, "TooManyRequests"],
      UNAVAILABLE: [503, "ServiceUnavailable"],
      NOT_LEADER: [503, "ServiceUnavailable"],
      CLIENT_GONE: [499, "ClientClosedRequest"],
      USAGE: [400, "BadRequest"],
      TIMEOUT: [504, "Timeout"],
      INTERNAL: [500, "InternalError"],
    };
    for (const code of CODES) {
      const status = new SkiffError(code, `a ${code} error`).toStatus();
      expect(status, code).toEqual({
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: `a ${code} error`,
        reason: expected[code][1],
        code: expected[code][0],
      });
    }
  });

  it("puts the object and the field causes in details", () => {
    const err = ValidationError.of(
      [{ field: "spec.template.spec.containers[0].image", message: "is required" }],
      { kind: "services", name: "hello" },
    );
    expect(err.toStatus()).toMatchObject({
      code: 422,
      reason: "Invalid",
      details: {
        name: "hello",
        group: "serving.knative.dev",
        kind: "services",
        causes: [
          {
            reason: "FieldValueInvalid",
            field: "spec.template.spec.containers[0].image",
            message: "is required",
          },
        ],
      },
    });
  });
});

describe("SkiffError.fromStatus", () => {
  it("round-trips every code through its Status (aliases come back as their first code)", () => {
    for (const code of CODES) {
      const err = new SkiffError(code, `a ${code} error`, {
        kind: "services",
        name: "hello",
        causes: [{ field: "metadata.name", message: "bad", reason: "FieldValueInvalid" }],
      });
      const back = SkiffError.fromStatus(JSON.parse(JSON.stringify(err.toStatus())));
      expect(back.code, code).toBe(ALIASES[code] ?? code);
      expect(back.message).toBe(err.message);
      expect(back.kind).toBe("services");
      expect(back.resourceName).toBe("hello");
      expect(back.causes).toEqual(err.causes);
      if (!ALIASES[code]) expect(back.toStatus()).toEqual(err.toStatus());
    }
  });

  it("tells AlreadyExists from Conflict (both 409) by the reason", () => {
    expect(SkiffError.fromStatus({ code: 409, reason: "AlreadyExists" }).code).toBe(
      "ALREADY_EXISTS",
    );
    expect(SkiffError.fromStatus({ code: 409, reason: "Conflict" }).code).toBe("CONFLICT");
  });

  it("reads a body that is not a Status (a proxy's error page) by the HTTP status", () => {
    const gateway = SkiffError.fromStatus(undefined, 502, "GET /x failed with HTTP 502");
    expect(gateway.code).toBe("UNAVAILABLE");
    expect(gateway.message).toBe("GET /x failed with HTTP 502");
    expect(SkiffError.fromStatus({ message: "nope" }, 404).code).toBe("NOT_FOUND");
    expect(SkiffError.fromStatus({ code: 418, reason: "Teapot" }).code).toBe("BAD_REQUEST");
  });
});

describe("exitCodeOf", () => {
  it("is 2 for a command line that cannot run, 1 for anything else", () => {
    expect(exitCodeOf(new UsageError("--port x: expected a port number"))).toBe(2);
    expect(exitCodeOf(new NotFoundError('services "x" not found'))).toBe(1);
    expect(exitCodeOf(ValidationError.of([{ field: "a", message: "b" }]))).toBe(1);
    expect(exitCodeOf(new NotLeaderError("fenced"))).toBe(1);
    expect(exitCodeOf(new ClientGoneError())).toBe(1);
    expect(exitCodeOf(new Error("plain"))).toBe(1);
    expect(exitCodeOf("a string")).toBe(1);
  });
});

describe("causesFromIssues", () => {
  const schema = z.object({
    spec: z.object({
      containers: z.array(z.object({ image: z.string().min(1), port: z.number().optional() })),
    }),
  });

  it("names each field with a Kubernetes path: indices in brackets, keys dotted", () => {
    const r = schema.safeParse({ spec: { containers: [{ image: "", port: "80" }] } });
    expect(r.success).toBe(false);
    const causes = causesFromIssues(r.error!.issues);
    expect(causes.map((c) => c.field).sort()).toEqual([
      "spec.containers[0].image",
      "spec.containers[0].port",
    ]);
    expect(causes.find((c) => c.field === "spec.containers[0].image")?.reason).toBe(
      "FieldValueInvalid",
    );
  });

  it("prefixes the paths and calls a missing value FieldValueRequired", () => {
    const r = schema.safeParse({ spec: { containers: [{}] } });
    expect(causesFromIssues(r.error!.issues, "template")).toEqual([
      {
        field: "template.spec.containers[0].image",
        message: expect.any(String),
        reason: "FieldValueRequired",
      },
    ]);
  });

  it("parseOrThrow throws a ValidationError naming the object and each field", () => {
    expect(parseOrThrow(schema, { spec: { containers: [{ image: "a" }] } }, { kind: "X" })).toEqual(
      { spec: { containers: [{ image: "a" }] } },
    );
    let caught: unknown;
    try {
      parseOrThrow(
        schema,
        { spec: { containers: [{ image: "" }] } },
        { kind: "Revision", name: "r" },
      );
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    const err = caught as ValidationError;
    expect(err.code).toBe("INVALID");
    expect(err.message).toMatch(/^Revision "r" is invalid: spec\.containers\[0\]\.image: /);
    expect(err.toStatus().details?.causes?.[0]?.field).toBe("spec.containers[0].image");
  });
});
