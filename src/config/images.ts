/**
 * Image registries (shared by the deploy API, which resolves tags to digests
 * when it creates a Revision, and every agent, which pulls missing images):
 * credentials by registry host, like Kubernetes' imagePullSecrets. Only the
 * registries listed here are ever contacted: a tenant naming an image on
 * another host gets a clear error, not a request from inside the cluster to
 * wherever it pointed.
 */
import { z } from "zod";
import { setting } from "./meta.ts";
import { msSchema } from "./values.ts";

const registryEntry = z
  .object({
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    /** Plain HTTP (always so for a registry on loopback, as Docker does). */
    insecure: z.boolean().optional(),
  })
  .strict();

export const imagesSection = z.object({
  registries: setting(
    z
      .record(
        z
          .string()
          .regex(
            /^[a-zA-Z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/,
            "use a registry host[:port], e.g. ghcr.io or 127.0.0.1:5000",
          ),
        registryEntry,
      )
      .default({}),
    {
      description:
        'Registries images may come from, by host as in image references ("docker.io" for Docker Hub, "ghcr.io", "registry.example:5000"), each {} or {username, password, insecure}; a missing image on an unlisted registry is not pulled and its tag not resolved.',
      defaultText: "none: local images only",
      env: false,
    },
  ),
  pullTimeoutMs: setting(msSchema(1).default(300_000), {
    description: "An agent gives up pulling an image after this long.",
  }),
  resolveTimeoutMs: setting(msSchema(1).default(10_000), {
    description:
      "The deploy API gives up resolving a new revision's image tag to a digest after this long.",
  }),
});

export type ImagesConfig = z.output<typeof imagesSection>;
