/**
 * Why an instance could not start or stopped running, in the shape a Revision
 * condition wants: a short CamelCase `reason` (Knative's spelling where it has
 * one: ExitCode3, OOMKilled) and a `message` a person can act on.
 */
import { type ErrorCode, SkiffError } from "../../src/errors.ts";

export type FailureReason =
  | "ImageNotFound"
  | "ImagePullFailed"
  | "StartFailed"
  | "ReadinessTimeout"
  | "OOMKilled"
  | "Stopped"
  | `ExitCode${number}`;

export interface InstanceFailure {
  reason: FailureReason;
  message: string;
  /** The container's exit code, when it ran and exited. */
  exitCode?: number;
  oomKilled?: boolean;
  /** The last lines the container wrote (stdout and stderr interleaved). */
  logs?: string[];
}

const CODES: Partial<Record<string, ErrorCode>> = {
  ImageNotFound: "NOT_FOUND",
  ReadinessTimeout: "TIMEOUT",
};

/** start() rejects with this; `failure` is what belongs on the Revision's status. */
export class InstanceError extends SkiffError {
  readonly failure: InstanceFailure;
  readonly instanceId: string;

  constructor(instanceId: string, failure: InstanceFailure, options: { cause?: unknown } = {}) {
    super(CODES[failure.reason] ?? "UNAVAILABLE", failure.message, options);
    this.name = "InstanceError";
    this.instanceId = instanceId;
    this.failure = failure;
  }
}

/** The readable message Docker put on a failed API call. */
export function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; reason?: string; message?: string };
  return (e?.json?.message ?? e?.message ?? e?.reason ?? String(err)).trim();
}

export function dockerStatus(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}
