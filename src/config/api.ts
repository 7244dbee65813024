/**
 * The deploy API's sections: `api` (its listener, token, body and watch
 * limits), `limits` (what a write may hold, container defaults) and `quotas`
 * (per namespace).
 */
import { z } from "zod";
import { containerDefaultsSchema } from "../model/container-defaults.ts";
import { setting } from "./meta.ts";
import { hostSchema, MiB, portSchema } from "./values.ts";

export const apiSection = z
  .object({
    host: setting(hostSchema, {
      description: "Listen address of the deploy API.",
      flags: { api: "--host <host>", up: "--api-host <host>" },
    }),
    port: setting(portSchema.default(8090), {
      description: "Listen port of the deploy API.",
      flags: { api: "--port <port>", up: "--api-port <port>" },
    }),
    token: setting(z.string().min(16, "tokens must be at least 16 characters").optional(), {
      description:
        "Admin bearer token (replaces the stored one). Prefer SKIFF_TOKEN or --token-file FILE (SKIFF_TOKEN_FILE) over --token, which every user of the host sees.",
      defaultText: "the stored one, else generated on first start",
      env: "SKIFF_TOKEN",
      flags: { api: "--token <token>", up: "--token <token>" },
    }),
    bodyLimitBytes: setting(
      z
        .number()
        .int()
        .positive()
        .default(8 * MiB),
      { description: "Largest request body accepted; 413 beyond." },
    ),
    tls: z
      .object({
        enabled: setting(z.boolean().default(true), {
          description:
            "Serve the API over HTTPS (kubectl and other Kubernetes clients send a token only over TLS). Without certFile/keyFile, a private CA and serving certificate are generated on first start and kept in dir. Plain HTTP (false) only on a loopback host.",
          flags: { api: "--no-tls", up: "--no-api-tls" },
        }),
        certFile: setting(z.string().min(1).optional(), {
          description: "The serving certificate (PEM, with its chain) instead of a generated one.",
          flags: { api: "--tls-cert-file <file>", up: "--api-tls-cert-file <file>" },
        }),
        keyFile: setting(z.string().min(1).optional(), {
          description: "The serving certificate's private key (PEM).",
          flags: { api: "--tls-key-file <file>", up: "--api-tls-key-file <file>" },
        }),
        caFile: setting(z.string().min(1).optional(), {
          description:
            "The CA that signed certFile, written into `skiff up`'s kubeconfig (else clients use their system roots).",
        }),
        dir: setting(z.string().min(1).optional(), {
          description: "Where the generated CA and serving certificate are kept.",
          defaultText: "{state folder}/tls",
        }),
      })
      .prefault({}),
    watch: z
      .object({
        maxOpen: setting(z.number().int().min(0).default(256), {
          description: "`?watch=true` streams open at once.",
        }),
        maxPerToken: setting(z.number().int().min(0).default(16), {
          description: "Watch streams open at once per token.",
        }),
        maxTimeoutSeconds: setting(z.number().int().min(1).max(86_400).default(600), {
          description: "Longest a watch stream stays open.",
        }),
        reauthMs: setting(z.number().int().min(0).default(5_000), {
          description: "How often an open watch re-checks its token.",
        }),
        maxQueuedBytes: setting(
          z
            .number()
            .int()
            .min(1024)
            .default(4 * MiB),
          { description: "Bytes queued for a slow watch client before it is cut off." },
        ),
      })
      .prefault({}),
  })
  .superRefine((api, ctx) => {
    // A token in clear text must not cross a network: plain HTTP stays on this machine.
    if (!api.tls.enabled && !isLoopbackHost(api.host)) {
      ctx.addIssue({
        code: "custom",
        path: ["tls", "enabled"],
        message: `plain HTTP (api.tls.enabled false, --no-api-tls) is only for a loopback host, not "${api.host}": serve HTTPS there, or listen on 127.0.0.1`,
      });
    }
  });

/** 127.0.0.0/8, ::1 or localhost: addresses no other machine reaches. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

const cd = containerDefaultsSchema.shape;

export const limitsSection = z.object({
  maxWorkerSourceBytes: setting(
    z
      .number()
      .int()
      .positive()
      .default(1 * MiB),
    { description: "Largest worker source (all modules together)." },
  ),
  revisionCpuLimit: setting(cd.revisionCpuLimit, {
    description:
      "CPU limit written into a container template that sets none (Knative's revision-cpu-limit); null: none.",
  }),
  revisionMemoryLimit: setting(cd.revisionMemoryLimit, {
    description: "Memory limit written into a container template that sets none; null: none.",
  }),
  revisionCpuRequest: setting(cd.revisionCpuRequest, {
    description:
      "CPU request written with a default CPU limit when the template asks for none (placement's default).",
  }),
  revisionMemoryRequest: setting(cd.revisionMemoryRequest, {
    description:
      "Memory request written with a default memory limit when the template asks for none.",
  }),
});

const quotaCount = z.number().int().min(0);

export const quotasSection = z.object({
  services: setting(quotaCount.default(100), { description: "Services per namespace." }),
  revisions: setting(quotaCount.default(2000), { description: "Revisions kept per namespace." }),
  artifactBytes: setting(quotaCount.default(256 * MiB), {
    description: "Worker bundles kept per namespace, in bytes.",
  }),
  queuedRequests: setting(quotaCount.default(10_000), {
    description:
      "Requests one gateway holds waiting for instances (a cold start, no free slot) per namespace, across its revisions; 429 beyond, so that one namespace's burst cannot take the whole of gateway.maxQueued.",
  }),
  namespaces: setting(
    z
      .record(
        z.string(),
        z
          .object({
            services: quotaCount.optional(),
            revisions: quotaCount.optional(),
            artifactBytes: quotaCount.optional(),
            queuedRequests: quotaCount.optional(),
          })
          .strict(),
      )
      .default({}),
    {
      description:
        "Per-namespace overrides: `{ big-team: { services: 500 } }` (services, revisions, artifactBytes, queuedRequests).",
      env: false,
    },
  ),
});
