/**
 * The agent's options: the configuration's `agent` section (src/config/agent.ts,
 * where its defaults and ranges live) plus what only code passes in.
 */
import { z } from "zod";
import { agentSection } from "../src/config/agent.ts";
import { imagesSection } from "../src/config/images.ts";
import type { SkiffConfig } from "../src/config.ts";
import {
  domainSchema,
  loggerSchema,
  parseOptions,
  redisPrefixSchema,
  redisUrlSchema,
  registrySchema,
  urlSchemeSchema,
} from "../src/options.ts";
import type { WorkerdPoolOptionsInput } from "./isolate/index.ts";

export const AgentOptionsSchema = agentSection.safeExtend({
  redisUrl: redisUrlSchema,
  redisPrefix: redisPrefixSchema,
  /**
   * The cluster's gateway secret isolates demand (x-skiff-gateway-auth);
   * default: read from Redis (src/cluster.ts), as gateways do.
   */
  gatewaySecret: z.string().min(16).optional(),
  /** Each namespace's workerd sandbox: uid range, cgroup limits (agent/isolate/options.ts `sandbox`). */
  isolateSandbox: z
    .custom<WorkerdPoolOptionsInput["sandbox"]>((v) => typeof v === "object")
    .optional(),
  /** Used in the URLs of Route/Service status the agent recomputes. */
  domain: domainSchema,
  urlScheme: urlSchemeSchema,
  logger: loggerSchema.optional(),
  registry: registrySchema.optional(),
  /** The cluster's image registries (config `images`): where missing images are pulled from. */
  images: imagesSection.prefault({}),
});

export type AgentOptionsInput = z.input<typeof AgentOptionsSchema>;
export type AgentOptions = z.output<typeof AgentOptionsSchema>;

export function parseAgentOptions(input: unknown): AgentOptions {
  return parseOptions(AgentOptionsSchema, input, "AgentOptions");
}

/** The agent's options from the configuration (file, env and flags already merged). */
export function agentOptionsFromConfig(config: SkiffConfig): AgentOptionsInput {
  const options: Record<string, unknown> = {
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    domain: config.domain,
    urlScheme: config.urlScheme,
    images: config.images,
  };
  // Only what is set: unset optional settings keep the agent's own choice.
  for (const [key, value] of Object.entries(config.agent)) {
    if (value !== undefined) options[key] = value;
  }
  return options as AgentOptionsInput;
}
