/**
 * How many requests one gateway holds waiting for instances: in all (its
 * maxQueued) and per namespace (the cluster's quotas.queuedRequests), so that
 * one tenant's burst against revisions at zero cannot take every place in
 * the gateway's queue from the others.
 */
import { TooManyRequestsError } from "../src/errors.ts";
import { QueueFullError } from "./errors.ts";

export interface NamespaceQueueQuota {
  /** Waiting requests per namespace. */
  default: number;
  /** Per-namespace overrides. */
  namespaces: Record<string, number>;
}

export class QueueBudget {
  /** Requests waiting across every revision. */
  queued = 0;
  readonly max: number;
  readonly #quota: NamespaceQueueQuota;
  readonly #byNamespace = new Map<string, number>();

  constructor(max: number, quota: NamespaceQueueQuota = { default: max, namespaces: {} }) {
    this.max = max;
    this.#quota = quota;
  }

  /** Requests of `namespace` waiting now. */
  queuedIn(namespace: string): number {
    return this.#byNamespace.get(namespace) ?? 0;
  }

  /** Why one more request of `namespace` may not wait, or undefined when it may. */
  refusal(namespace: string): Error | undefined {
    const limit = this.#quota.namespaces[namespace] ?? this.#quota.default;
    if (this.queuedIn(namespace) >= limit) {
      return new TooManyRequestsError(
        `namespace ${namespace} already has ${limit} requests waiting for instances at this gateway (its queuedRequests quota); retry later, or raise quotas.queuedRequests (for this namespace: quotas.namespaces.${namespace}.queuedRequests)`,
      );
    }
    if (this.queued >= this.max) {
      return new QueueFullError(
        `the gateway already holds ${this.max} requests waiting for instances across all revisions (its maxQueued limit); retry later`,
      );
    }
    return undefined;
  }

  take(namespace: string): void {
    this.queued++;
    this.#byNamespace.set(namespace, this.queuedIn(namespace) + 1);
  }

  give(namespace: string): void {
    this.queued--;
    const left = this.queuedIn(namespace) - 1;
    if (left > 0) this.#byNamespace.set(namespace, left);
    else this.#byNamespace.delete(namespace);
  }
}
