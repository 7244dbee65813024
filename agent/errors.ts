/**
 * Why an instance could not start or stopped running, whatever its runtime:
 * one error type, InstanceError, whose `failure` is in the shape a Revision
 * condition wants: a short CamelCase `reason` (Knative's spelling where it has
 * one: ExitCode3, OOMKilled) and a `message` a person can act on. Its `code`
 * places it in src/errors.ts' hierarchy.
 */
import { type ErrorCode, SkiffError } from "../src/errors.ts";

export type FailureReason =
  // The container runtime.
  | "ImageNotFound"
  | "ImagePullFailed"
  | "StartFailed"
  /** Kubernetes' kubelet reason: the spec cannot run as given (runAsNonRoot with a root image). */
  | "CreateContainerConfigError"
  | "ReadinessTimeout"
  /** The liveness probe failed and the container was killed (to be restarted). */
  | "LivenessProbeFailed"
  | "OOMKilled"
  | "Stopped"
  | `ExitCode${number}`
  // The agent, before any runtime is asked.
  | "RevisionNotFound"
  | "RuntimeMismatch"
  | "RuntimeUnavailable"
  // The revision's image tag could not be resolved to a digest when it was created.
  | "ContainerMissing"
  // The isolate runtime.
  | "ArtifactMissing"
  | "WorkerStalled"
  | "WorkerModuleError"
  | "WorkerLoadFailed";

export interface InstanceFailure {
  reason: FailureReason;
  message: string;
  /** The container's exit code, when it ran and exited. */
  exitCode?: number;
  oomKilled?: boolean;
  /** The last lines the container wrote (stdout and stderr interleaved). */
  logs?: string[];
}

const CODES: Partial<Record<FailureReason, ErrorCode>> = {
  ImageNotFound: "NOT_FOUND",
  RevisionNotFound: "NOT_FOUND",
  ArtifactMissing: "NOT_FOUND",
  ReadinessTimeout: "TIMEOUT",
  RuntimeMismatch: "CONFLICT",
  WorkerModuleError: "INVALID",
  CreateContainerConfigError: "INVALID",
};

export interface InstanceErrorOptions {
  /** The instance it happened to (absent when it concerns a revision's shared load). */
  instanceId?: string;
  cause?: unknown;
  /** A later reconcile pass may try again (revision or bundle missing, runtime busy). */
  retryable?: boolean;
  /** Whether the failure belongs on the Revision's status (false: the revision is not at fault). */
  health?: boolean;
}

/** A start that failed, or an instance that stopped running; `failure` is what the status says. */
export class InstanceError extends SkiffError {
  readonly failure: InstanceFailure;
  readonly instanceId: string | undefined;
  readonly retryable: boolean;
  readonly health: boolean;

  constructor(failure: InstanceFailure, options: InstanceErrorOptions = {}) {
    super(
      CODES[failure.reason] ?? "UNAVAILABLE",
      failure.message,
      options.cause === undefined ? {} : { cause: options.cause },
    );
    this.name = "InstanceError";
    this.failure = failure;
    this.instanceId = options.instanceId;
    this.retryable = options.retryable ?? false;
    this.health = options.health ?? true;
  }
}
