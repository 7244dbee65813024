/**
 * Global configuration: defaults < config file (YAML/JSON) < environment <
 * flags, the same for every server command. One schema (src/config/schema.ts,
 * one section per component) validates it once at the boundary, names each
 * setting's environment variable and flags, and generates
 * docs/configuration.md; every component receives a fully typed, defaulted
 * object and never re-checks.
 */
export { type Layer, mergeLayers, uniformLayer } from "./config/layers.ts";
export { configLayers, loadConfig, parseConfig } from "./config/load.ts";
export { SETTINGS, type SkiffConfig } from "./config/schema.ts";
