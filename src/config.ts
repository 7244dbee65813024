/**
 * Global configuration: defaults < config file (YAML/JSON) < environment <
 * flags, the same for every server command. One schema (src/config/schema.ts,
 * one section per component) validates it once at the boundary, names each
 * setting's environment variable and flags, and generates
 * docs/configuration.md; every component receives a fully typed, defaulted
 * object and never re-checks.
 */
export {
  configFromEnv,
  envLayer,
  fileLayer,
  type Layer,
  mergeConfig,
  mergeLayers,
  type Origin,
  readConfigFile,
  uniformLayer,
} from "./config/layers.ts";
export {
  configLayers,
  type LoadConfigOptions,
  loadConfig,
  parseConfig,
} from "./config/load.ts";
export { type ConfigInput, configSchema, SETTINGS, type SkiffConfig } from "./config/schema.ts";
