/** Skiff's gateway tier: Host routing, traffic splits, scale-from-zero buffering, counters. */

export { type GatewayKeys, gatewayKeys, type RevisionCounters } from "../src/traffic/keys.ts";
export { INTERNAL_HEADER_PREFIX } from "./headers.ts";
export {
  type GatewayOptions,
  type GatewayOptionsInput,
  gatewayOptionsSchema,
  parseGatewayOptions,
} from "./options.ts";
export { type Gateway, gatewayOptionsFromConfig, startGateway } from "./server.ts";
