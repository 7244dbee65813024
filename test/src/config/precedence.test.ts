/**
 * Every server command takes a setting from its flag, else its environment
 * variable, else the config file, else the default: one table, one row per
 * command (and a few kinds of value), each checked at all four levels.
 */
import { describe, expect, it } from "vitest";
import { agentOptionsFromConfig, parseAgentOptions } from "../../../agent/options.ts";
import type { ServerCommand } from "../../../src/config/meta.ts";
import { loadConfig, type SkiffConfig } from "../../../src/config.ts";
import { configFiles, flags } from "./support.ts";

const file = configFiles();

interface Row {
  command: ServerCommand;
  /** Where the value lands in the configuration. */
  read: (c: SkiffConfig) => unknown;
  dflt: unknown;
  yaml: string;
  fromFile: unknown;
  env: [string, string];
  fromEnv: unknown;
  argv: string[];
  fromFlag: unknown;
}

const ROWS: Row[] = [
  {
    command: "api",
    read: (c) => c.api.port,
    dflt: 8090,
    yaml: "api:\n  port: 9001\n",
    fromFile: 9001,
    env: ["SKIFF_API_PORT", "9002"],
    fromEnv: 9002,
    argv: ["--port", "9003"],
    fromFlag: 9003,
  },
  {
    command: "gateway",
    read: (c) => c.gateway.port,
    dflt: 8080,
    yaml: "gateway:\n  port: 9011\n",
    fromFile: 9011,
    env: ["SKIFF_GATEWAY_PORT", "9012"],
    fromEnv: 9012,
    argv: ["--port", "9013"],
    fromFlag: 9013,
  },
  {
    command: "gateway",
    read: (c) => c.gateway.trustForwardedHeaders,
    dflt: false,
    yaml: "gateway:\n  trustForwardedHeaders: false\n",
    fromFile: false,
    env: ["SKIFF_GATEWAY_TRUST_FORWARDED_HEADERS", "false"],
    fromEnv: false,
    argv: ["--trust-forwarded-headers"],
    fromFlag: true,
  },
  {
    command: "agent",
    read: (c) => c.agent.port,
    dflt: 8091,
    yaml: "agent:\n  port: 9021\n",
    fromFile: 9021,
    env: ["SKIFF_AGENT_PORT", "9022"],
    fromEnv: 9022,
    argv: ["--port", "9023"],
    fromFlag: 9023,
  },
  {
    command: "agent",
    read: (c) => c.agent.containerFirewall?.blockCidrs,
    dflt: undefined,
    yaml: "agent:\n  containerFirewall:\n    blockCidrs: [10.0.0.0/24]\n",
    fromFile: ["10.0.0.0/24"],
    env: ["SKIFF_AGENT_CONTAINER_FIREWALL_BLOCK_CIDRS", "10.0.1.0/24, 10.0.2.0/24"],
    fromEnv: ["10.0.1.0/24", "10.0.2.0/24"],
    argv: ["--container-firewall", "10.0.3.0/24"],
    fromFlag: ["10.0.3.0/24"],
  },
  {
    command: "scaler",
    read: (c) => c.scaler.port,
    dflt: 8092,
    yaml: "scaler:\n  port: 9031\n",
    fromFile: 9031,
    env: ["SKIFF_SCALER_PORT", "9032"],
    fromEnv: 9032,
    argv: ["--port", "9033"],
    fromFlag: 9033,
  },
  {
    command: "scaler",
    read: (c) => c.autoscaler.stableWindow,
    dflt: 60_000,
    yaml: "autoscaler:\n  stableWindow: 30s\n",
    fromFile: 30_000,
    env: ["SKIFF_AUTOSCALER_STABLE_WINDOW", "20s"],
    fromEnv: 20_000,
    argv: ["--stable-window", "10000"],
    fromFlag: 10_000,
  },
  {
    command: "up",
    read: (c) => c.gateway.port,
    dflt: 8080,
    yaml: "gateway:\n  port: 9041\n",
    fromFile: 9041,
    env: ["SKIFF_GATEWAY_PORT", "9042"],
    fromEnv: 9042,
    argv: ["--gateway-port", "9043"],
    fromFlag: 9043,
  },
  {
    command: "up",
    read: (c) => c.agent.containers,
    dflt: true,
    yaml: "agent:\n  containers: true\n",
    fromFile: true,
    env: ["SKIFF_AGENT_CONTAINERS", "true"],
    fromEnv: true,
    argv: ["--no-containers"],
    fromFlag: false,
  },
];

describe("configuration precedence: default < file < env < flag", () => {
  it.each(ROWS)("skiff $command $argv.0 / $env.0", (row) => {
    const env = Object.fromEntries([row.env]);
    const path = file(row.yaml);
    const none = flags(row.command, []);
    expect(row.read(loadConfig({ env: {}, overrides: none }))).toEqual(row.dflt);
    expect(row.read(loadConfig({ file: path, env: {}, overrides: none }))).toEqual(row.fromFile);
    expect(row.read(loadConfig({ file: path, env, overrides: none }))).toEqual(row.fromEnv);
    const given = flags(row.command, row.argv);
    expect(row.read(loadConfig({ file: path, env, overrides: given }))).toEqual(row.fromFlag);
  });

  it("an absent flag overrides nothing: the file's and the environment's values stand", () => {
    const path = file("agent:\n  host: 127.0.0.9\n  heartbeatIntervalMs: 700\n");
    const config = loadConfig({
      file: path,
      env: { SKIFF_AGENT_PORT: "9191" },
      overrides: flags("agent", ["--address", "127.0.0.2"]),
    });
    expect(config.agent).toMatchObject({
      host: "127.0.0.9",
      port: 9191,
      heartbeatIntervalMs: 700,
      address: "127.0.0.2",
      containers: true,
      dockerSocket: "/var/run/docker.sock",
    });
  });

  it("a number written as text in the file is taken as the number", () => {
    const path = file('api:\n  port: "9300"\nquotas:\n  services: "7"\n');
    const config = loadConfig({ file: path, env: {} });
    expect([config.api.port, config.quotas.services]).toEqual([9_300, 7]);
  });

  it("SKIFF_CONFIG names the file when --config does not", () => {
    const path = file("scaler:\n  leaseMs: 2500\n");
    expect(loadConfig({ env: { SKIFF_CONFIG: path } }).scaler.leaseMs).toBe(2_500);
  });
});

describe("skiff agent's options", () => {
  it("come from the file, then SKIFF_AGENT_*, then flags", () => {
    const path = file(
      [
        'redisPrefix: "file:"',
        "agent:",
        "  port: 9100",
        "  heartbeatIntervalMs: 500",
        "  heartbeatTtlMs: 4000",
        "  drainDelayMs: 250",
        "  labels: { zone: a }",
        "  containerStandby: { maxStandbys: 2 }",
      ].join("\n"),
    );
    const config = loadConfig({
      file: path,
      env: {
        SKIFF_AGENT_PORT: "9200",
        SKIFF_AGENT_DRAIN_DELAY_MS: "300",
        SKIFF_AGENT_ID: "agent-env",
        SKIFF_REDIS_PREFIX: "env:",
      },
      overrides: flags("agent", [
        "--id",
        "agent-flag",
        "--no-containers",
        "--cpu",
        "2000",
        "--label",
        "tier=gold",
        "--heartbeat-ttl",
        "3000",
      ]),
    });
    const o = parseAgentOptions(agentOptionsFromConfig(config));
    expect(o).toMatchObject({
      id: "agent-flag",
      redisPrefix: "env:",
      port: 9200,
      heartbeatIntervalMs: 500,
      heartbeatTtlMs: 3_000,
      drainDelayMs: 300,
      containers: false,
      capacity: { cpuMillis: 2_000 },
      labels: { zone: "a", tier: "gold" },
      containerStandby: { maxStandbys: 2, retentionMs: 300_000 },
    });
  });
});
