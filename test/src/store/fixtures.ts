/** Minimal valid stored objects for store tests (the store does not validate specs). */
import { randomUUID } from "node:crypto";
import {
  API_VERSION,
  type ObjectMeta,
  type Revision,
  type Service,
} from "../../../src/model/types.ts";

interface MetaExtra {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function meta(namespace: string, name: string, extra: MetaExtra): ObjectMeta {
  return {
    name,
    namespace,
    uid: randomUUID(),
    generation: 1,
    resourceVersion: "",
    creationTimestamp: "2026-01-01T00:00:00Z",
    ...extra,
  };
}

export function service(namespace: string, name: string, extra: MetaExtra = {}): Service {
  return {
    apiVersion: API_VERSION,
    kind: "Service",
    metadata: meta(namespace, name, extra),
    spec: {
      template: {
        metadata: {},
        spec: {
          containerConcurrency: 0,
          timeoutSeconds: 300,
          containers: [{ image: "example/hello" }],
        },
      },
      traffic: [{ latestRevision: true, percent: 100 }],
    },
    status: {},
  };
}

export function revision(namespace: string, name: string, extra: MetaExtra = {}): Revision {
  return {
    apiVersion: API_VERSION,
    kind: "Revision",
    metadata: meta(namespace, name, extra),
    spec: { containerConcurrency: 0, timeoutSeconds: 300, worker: { source: "export default {}" } },
    status: {},
  };
}

/** A promise and the function that resolves it, for lining up concurrent callbacks. */
export function gate(): { opened: Promise<void>; open: () => void } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}
