/**
 * Where the CLI finds the API: flag > environment > config file > default.
 * `skiff login` and `skiff up` write the config file (mode 0600: it holds a token).
 * `skiff up` writes it only when it is absent or already points at the same
 * install (see `ownsSettings`), never redirecting another install's CLI.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

export const DEFAULT_API_URL = "https://127.0.0.1:8090";

export interface CliSettings {
  apiUrl?: string;
  token?: string;
  /** A CA (PEM file) to trust for an https:// API, e.g. the one `skiff up --api-tls` generated. */
  caFile?: string;
  /** The cluster id of the install `skiff up` wrote these settings for (src/cluster.ts). */
  cluster?: string;
}

/** What `skiff up` may do with the CLI settings file. */
export type SettingsOwnership =
  | { write: true; previous: CliSettings }
  | { write: false; previous: CliSettings; reason: string };

/**
 * Whether the settings file at `path` belongs to this install: absent, or
 * naming this cluster, or (written by `skiff login`, no cluster) this API URL.
 * A file that cannot be read as settings is someone's: left alone.
 */
export function ownsSettings(
  path: string,
  mine: { apiUrl: string; cluster: string },
): SettingsOwnership {
  if (!existsSync(path)) return { write: true, previous: {} };
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    data = undefined;
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return { write: false, previous: {}, reason: "it is not a settings file Skiff can read" };
  }
  const previous = data as CliSettings;
  if (previous.cluster) {
    return previous.cluster === mine.cluster
      ? { write: true, previous }
      : {
          write: false,
          previous,
          reason: `it points at another Skiff install (cluster ${previous.cluster}, API ${previous.apiUrl ?? "unset"})`,
        };
  }
  if (!previous.apiUrl || previous.apiUrl === mine.apiUrl) return { write: true, previous };
  return {
    write: false,
    previous,
    reason: `it points at another API (${previous.apiUrl})`,
  };
}

export function settingsPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SKIFF_CONFIG_FILE) return env.SKIFF_CONFIG_FILE;
  const base = env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "skiff", "cli.json");
}

export function readSettings(path = settingsPath()): CliSettings {
  try {
    const data = JSON.parse(readFileSync(path, "utf8")) as CliSettings;
    return typeof data === "object" && data ? data : {};
  } catch {
    return {};
  }
}

export function writeSettings(settings: CliSettings, path = settingsPath()): string {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify(settings, null, 2)}\n`, { mode: 0o600 });
  return path;
}

export function resolveSettings(
  flags: { apiUrl?: string | undefined; token?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): Required<Pick<CliSettings, "apiUrl">> & CliSettings {
  const file = readSettings(settingsPath(env));
  // An empty variable counts as unset, as in most shells' tools.
  const apiUrl = flags.apiUrl || env.SKIFF_API_URL || file.apiUrl || DEFAULT_API_URL;
  const token = flags.token || env.SKIFF_TOKEN || file.token;
  // The saved CA goes with the saved URL only: another API is not vouched for by it.
  const caFile = env.SKIFF_CA_FILE || (apiUrl === file.apiUrl ? file.caFile : undefined);
  return { apiUrl, ...(token ? { token } : {}), ...(caFile ? { caFile } : {}) };
}
