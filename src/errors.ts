/**
 * One error hierarchy for all of Skiff. Every error has a stable `code` (what
 * scripts and tests match on), the HTTP status it maps to, and for validation
 * failures a list of causes naming the exact field. Each maps once to a
 * Kubernetes Status object (`toStatus`, what the deploy API answers) and back
 * (`SkiffError.fromStatus`, what the CLI makes of the answer), and once to a
 * CLI exit code (`exitCodeOf`).
 */

/** Kubernetes StatusReason values we emit, keyed by our stable codes. */
export const ErrorCodes = {
  BAD_REQUEST: { status: 400, reason: "BadRequest" },
  UNAUTHORIZED: { status: 401, reason: "Unauthorized" },
  FORBIDDEN: { status: 403, reason: "Forbidden" },
  NOT_FOUND: { status: 404, reason: "NotFound" },
  METHOD_NOT_ALLOWED: { status: 405, reason: "MethodNotAllowed" },
  ALREADY_EXISTS: { status: 409, reason: "AlreadyExists" },
  EXPIRED: { status: 410, reason: "Expired" },
  CONFLICT: { status: 409, reason: "Conflict" },
  TOO_LARGE: { status: 413, reason: "RequestEntityTooLarge" },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, reason: "UnsupportedMediaType" },
  INVALID: { status: 422, reason: "Invalid" },
  TOO_MANY_REQUESTS: { status: 429, reason: "TooManyRequests" },
  UNAVAILABLE: { status: 503, reason: "ServiceUnavailable" },
  /** This replica does not lead (e.g. a scaler write fenced by a newer leader). */
  NOT_LEADER: { status: 503, reason: "ServiceUnavailable" },
  /** The client went away before the answer (nginx's 499: nobody reads it). */
  CLIENT_GONE: { status: 499, reason: "ClientClosedRequest" },
  /** A command line that cannot be run as written (CLI flags, arguments). */
  USAGE: { status: 400, reason: "BadRequest" },
  TIMEOUT: { status: 504, reason: "Timeout" },
  INTERNAL: { status: 500, reason: "InternalError" },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** One precise complaint about one field (Kubernetes StatusCause). */
export interface Cause {
  /** Dotted path into the submitted object, e.g. `spec.traffic[1].percent`. */
  field: string;
  message: string;
  /** Kubernetes cause reason, e.g. FieldValueInvalid, FieldValueRequired. */
  reason?: string;
}

/** A Kubernetes Status object (metav1.Status): every error the deploy API answers. */
export interface Status {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message: string;
  reason: string;
  code: number;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    causes?: { reason: string; message: string; field: string }[];
  };
}

/** What `fromStatus` reads: any part of a Status may be missing (a proxy's error page has none). */
export interface StatusLike {
  message?: unknown;
  reason?: unknown;
  code?: unknown;
  details?: { name?: unknown; kind?: unknown; causes?: unknown } | null;
}

export interface ErrorOptions {
  causes?: Cause[];
  /** The object the error is about, for Status.details. */
  kind?: string;
  name?: string;
  cause?: unknown;
}

export class SkiffError extends Error {
  readonly code: ErrorCode;
  readonly causes: Cause[];
  readonly kind: string | undefined;
  readonly resourceName: string | undefined;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SkiffError";
    this.code = code;
    this.causes = options.causes ?? [];
    this.kind = options.kind;
    this.resourceName = options.name;
  }

  get status(): number {
    return ErrorCodes[this.code].status;
  }

  get reason(): string {
    return ErrorCodes[this.code].reason;
  }

  /** The Kubernetes Status the API answers for this error. */
  toStatus(): Status {
    const body: Status = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      code: this.status,
    };
    if (this.kind || this.resourceName || this.causes.length) {
      body.details = {};
      if (this.resourceName) body.details.name = this.resourceName;
      if (this.kind) {
        body.details.group = "serving.knative.dev";
        body.details.kind = this.kind;
      }
      if (this.causes.length) {
        body.details.causes = this.causes.map((c) => ({
          reason: c.reason ?? "FieldValueInvalid",
          message: c.message,
          field: c.field,
        }));
      }
    }
    return body;
  }

  /**
   * The error a Status stands for (the inverse of `toStatus`): its code from
   * the reason and HTTP code, its message, causes, kind and name kept. Codes
   * that share a reason and status come back as the first one listed
   * (USAGE as BAD_REQUEST, NOT_LEADER as UNAVAILABLE). `httpStatus` stands in
   * for a missing `code`; `fallbackMessage` for a missing message.
   */
  static fromStatus(
    status: StatusLike | undefined,
    httpStatus?: number,
    fallbackMessage?: string,
  ): SkiffError {
    const s: StatusLike = status && typeof status === "object" ? status : {};
    const code = typeof s.code === "number" && s.code > 0 ? s.code : (httpStatus ?? 500);
    const reason = typeof s.reason === "string" ? s.reason : "";
    const message =
      typeof s.message === "string" && s.message
        ? s.message
        : (fallbackMessage ?? `the API answered HTTP ${code}${reason ? ` ${reason}` : ""}`);
    const options: ErrorOptions = { causes: causesOf(s.details?.causes) };
    if (typeof s.details?.kind === "string") options.kind = s.details.kind;
    if (typeof s.details?.name === "string") options.name = s.details.name;
    return new SkiffError(codeOf(code, reason), message, options);
  }
}

const CODES = Object.keys(ErrorCodes) as ErrorCode[];

/** Our code for an HTTP status and a Status reason: both, else the reason, else the status. */
function codeOf(status: number, reason: string): ErrorCode {
  const match =
    CODES.find((c) => ErrorCodes[c].status === status && ErrorCodes[c].reason === reason) ??
    CODES.find((c) => ErrorCodes[c].reason === reason) ??
    CODES.find((c) => ErrorCodes[c].status === status);
  if (match) return match;
  // A status Skiff never sends (a proxy's 502): 5xx is the server side's trouble, 4xx the request's.
  return status >= 500 ? "UNAVAILABLE" : "BAD_REQUEST";
}

function causesOf(value: unknown): Cause[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((c): c is Record<string, unknown> => typeof c === "object" && c !== null)
    .map((c) => {
      const cause: Cause = {
        field: typeof c.field === "string" ? c.field : "",
        message: typeof c.message === "string" ? c.message : String(c.message ?? ""),
      };
      if (typeof c.reason === "string") cause.reason = c.reason;
      return cause;
    });
}

export class BadRequestError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("BAD_REQUEST", message, options);
  }
}

export class UnauthorizedError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("UNAUTHORIZED", message, options);
  }
}

export class ForbiddenError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("FORBIDDEN", message, options);
  }
}

export class NotFoundError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_FOUND", message, options);
  }
}

export class AlreadyExistsError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("ALREADY_EXISTS", message, options);
  }
}

/** A write lost a race or named a stale resourceVersion. */
export class ConflictError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("CONFLICT", message, options);
  }
}

export class TooLargeError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("TOO_LARGE", message, options);
  }
}

export class UnsupportedMediaTypeError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("UNSUPPORTED_MEDIA_TYPE", message, options);
  }
}

/** The submitted object is well-formed but breaks a rule; `causes` name the fields. */
export class ValidationError extends SkiffError {
  constructor(message: string, causes: Cause[], options: Omit<ErrorOptions, "causes"> = {}) {
    super("INVALID", message, { ...options, causes });
  }

  /** Build from causes alone: the message lists them, so it stands on its own. */
  static of(causes: Cause[], options: Omit<ErrorOptions, "causes"> = {}): ValidationError {
    const what =
      options.kind && options.name ? `${options.kind} "${options.name}" is invalid` : "invalid";
    const list = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join("; ");
    return new ValidationError(`${what}: ${list}`, causes, options);
  }
}

/** A resourceVersion older than what the API can serve (Kubernetes 410 Expired). */
export class ExpiredError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("EXPIRED", message, options);
  }
}

export class TooManyRequestsError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("TOO_MANY_REQUESTS", message, options);
  }
}

export class UnavailableError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("UNAVAILABLE", message, options);
  }
}

export function isSkiffError(err: unknown): err is SkiffError {
  return err instanceof SkiffError;
}

/** What a zod issue looks like to us (structural, so this file needs no zod). */
export interface IssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
}

/** `prefix` + a zod path as a Kubernetes field path: `spec.containers[0].image`. */
export function fieldPath(prefix: string | undefined, path: readonly PropertyKey[]): string {
  let field = prefix ?? "";
  for (const key of path) {
    if (typeof key === "number") field += `[${key}]`;
    else field += field ? `.${String(key)}` : String(key);
  }
  return field;
}

/**
 * zod issues as causes, the one conversion every component uses: a missing
 * value is FieldValueRequired, anything else FieldValueInvalid.
 */
export function causesFromIssues(issues: readonly IssueLike[], prefix?: string): Cause[] {
  return issues.map((issue) => ({
    field: fieldPath(prefix, issue.path),
    message: issue.message,
    reason: issue.code === "invalid_type" ? "FieldValueRequired" : "FieldValueInvalid",
  }));
}

/** This replica does not lead: its write was refused (fenced) or it may not act. */
export class NotLeaderError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_LEADER", message, options);
  }
}

/** The client closed the connection before the answer; nothing to send, nobody to blame. */
export class ClientGoneError extends SkiffError {
  constructor(message = "the client closed the connection", options?: ErrorOptions) {
    super("CLIENT_GONE", message, options);
  }
}

/** A command line that cannot run as written; the CLI prints it with a hint and exits 2. */
export class UsageError extends SkiffError {
  constructor(message: string, options?: ErrorOptions) {
    super("USAGE", message, options);
  }
}

/**
 * How a CLI process ends for an error: 2 for a command line it cannot run
 * (like commander's own usage errors), 1 for everything else.
 */
export function exitCodeOf(err: unknown): number {
  return err instanceof SkiffError && err.code === "USAGE" ? 2 : 1;
}
