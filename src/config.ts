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
  configLayers,
  envLayer,
  fileLayer,
  type Layer,
  type LoadConfigOptions,
  loadConfig,
  mergeConfig,
  mergeLayers,
  type Origin,
  parseConfig,
  readConfigFile,
  SETTINGS,
  uniformLayer,
} from "./config/load.ts";
export { type ConfigInput, configSchema, type SkiffConfig } from "./config/schema.ts";
