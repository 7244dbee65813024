/**
 * Request bodies of the Knative objects tests send (what a client writes: no
 * status, no server-set metadata), for a container or a worker revision
 * template. Tests that need an odd body start from one of these and change it.
 */

export const SERVING_API_VERSION = "serving.knative.dev/v1";

/** A JSON object as the API takes it; tests change fields freely. */
// biome-ignore lint/suspicious/noExplicitAny: request bodies, checked by the API under test
export type Manifest = Record<string, any>;

export interface TemplateInput {
  /** A container revision from this image (the default when no `worker` is given). */
  image?: string;
  /** A worker revision from this source. */
  worker?: string;
  /** The worker's source language (the API's default, JavaScript, when absent). */
  language?: string;
  /** Environment of the container or worker, in this order. */
  env?: Record<string, string>;
  /** Further fields of the container (readinessProbe, resources, ...). */
  container?: Manifest;
  /** Template annotations (e.g. autoscaling.knative.dev/min-scale). */
  annotations?: Record<string, string>;
  containerConcurrency?: number;
  /** Further fields of the template's spec (timeoutSeconds, ...). */
  spec?: Manifest;
}

const DEFAULT_IMAGE = "example/hello";

/** The revision template: `{ metadata?, spec }`. */
export function template(t: TemplateInput = {}): Manifest {
  const env =
    t.env === undefined
      ? {}
      : { env: Object.entries(t.env).map(([name, value]) => ({ name, value })) };
  const runtime =
    t.worker === undefined
      ? { containers: [{ image: t.image ?? DEFAULT_IMAGE, ...env, ...t.container }] }
      : {
          worker: {
            ...(t.language === undefined ? {} : { language: t.language }),
            source: t.worker,
            ...env,
          },
        };
  return {
    ...(t.annotations === undefined ? {} : { metadata: { annotations: t.annotations } }),
    spec: {
      ...(t.containerConcurrency === undefined
        ? {}
        : { containerConcurrency: t.containerConcurrency }),
      ...runtime,
      ...t.spec,
    },
  };
}

/** A Service body; `traffic` as in its spec. */
export function serviceManifest(
  name: string,
  t: TemplateInput & { traffic?: unknown[] } = {},
): Manifest {
  const { traffic, ...rest } = t;
  return {
    apiVersion: SERVING_API_VERSION,
    kind: "Service",
    metadata: { name },
    spec: { template: template(rest), ...(traffic === undefined ? {} : { traffic }) },
  };
}

/** A Configuration body. */
export function configurationManifest(name: string, t: TemplateInput = {}): Manifest {
  return {
    apiVersion: SERVING_API_VERSION,
    kind: "Configuration",
    metadata: { name },
    spec: { template: template(t) },
  };
}
