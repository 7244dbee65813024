/**
 * The configuration: one schema, one section per component, from which the
 * loader reads files, environment and flags and the reference
 * (docs/configuration.md) is generated.
 */
import { z } from "zod";
import { agentSection } from "./agent.ts";
import { apiSection, limitsSection, quotasSection } from "./api.ts";
import { autoscalerSection } from "./autoscaler.ts";
import { gatewaySection } from "./gateway.ts";
import { imagesSection } from "./images.ts";
import { everyCommand, setting } from "./meta.ts";
import { scalerSection } from "./scaler.ts";
import { domainSchema, redisPrefixSchema, redisUrlSchema, urlSchemeSchema } from "./values.ts";
import { type Setting, settingsOf } from "./walk.ts";

const sentinelPart = (description: string, flag?: string) =>
  setting(z.string().min(1).optional(), {
    description,
    ...(flag ? { flags: everyCommand(flag) } : {}),
  });

export const configSchema = z.object({
  redisUrl: setting(redisUrlSchema, {
    description:
      "Redis holding every object, routing table and counter. `skiff up` without one runs its own.",
    env: "REDIS_URL",
    flags: everyCommand("--redis-url <url>"),
  }),
  redisSentinels: sentinelPart(
    "Redis Sentinel: HOST:PORT,HOST:PORT of the sentinels (with redisMaster); every component then follows a failover. The master's user and password are redisUrl's.",
    "--redis-sentinels <host:port,...>",
  ),
  redisMaster: sentinelPart(
    "The master group the sentinels monitor (with redisSentinels).",
    "--redis-master <name>",
  ),
  redisSentinelUsername: sentinelPart("The sentinels' own user, when they want one."),
  redisSentinelPassword: sentinelPart("The sentinels' own password."),
  redisPrefix: setting(redisPrefixSchema, {
    description: "Prefix of every Redis key, so several Skiff installs can share one Redis.",
    flags: everyCommand("--redis-prefix <prefix>"),
  }),
  domain: setting(domainSchema, {
    description: "Hosts are {service}.{namespace}.{domain}; localhost needs no DNS set-up.",
    flags: everyCommand("--domain <domain>"),
  }),
  urlScheme: setting(urlSchemeSchema, {
    description: "Scheme of the URLs Skiff reports (status.url).",
  }),
  api: setting(apiSection.prefault({}), {
    description: "The deploy API (`skiff api`, and the one in `skiff up`).",
  }),
  gateway: setting(gatewaySection.prefault({}), {
    description: "The gateway (`skiff gateway`, and the one in `skiff up`).",
  }),
  agent: setting(agentSection.prefault({}), {
    description: "The node agent (`skiff agent`, and the one in `skiff up`).",
  }),
  images: setting(imagesSection.prefault({}), {
    description:
      "Image registries: which ones images may be pulled from, their credentials, and the pull and tag-resolution timeouts.",
  }),
  autoscaler: setting(autoscalerSection.prefault({}), {
    description:
      "Global autoscaler settings (Knative's config-autoscaler); per-revision annotations override them.",
  }),
  scaler: setting(scalerSection.prefault({}), {
    description:
      "The scaler (`skiff scaler`, and the one in `skiff up`): admin listener, leader lease, resync and revision GC (`scaler.gc`: Knative's config-gc).",
  }),
  limits: setting(limitsSection.prefault({}), {
    description:
      "What the deploy API accepts, and the container limits written into templates that set none (Knative's config-defaults).",
  }),
  quotas: setting(quotasSection.prefault({}), {
    description:
      "Per-namespace quotas, enforced by the deploy API (403 beyond) and, for queued requests, by each gateway (429): the defaults for every namespace, overrides under namespaces.",
  }),
  log: setting(
    z
      .object({
        level: setting(z.string().default("info"), {
          description: "Log level: trace, debug, info, warn, error, fatal.",
        }),
      })
      .prefault({}),
    { description: "Logging of every component." },
  ),
});

export type SkiffConfig = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Every setting (leaf key) of the configuration, in declaration order. */
export const SETTINGS: readonly Setting[] = settingsOf(configSchema);
