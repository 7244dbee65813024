/**
 * Where the CLI finds the API: flag > environment > config file > default.
 * `skiff login` and `skiff up` write the config file (mode 0600: it holds a token).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

export const DEFAULT_API_URL = "http://127.0.0.1:8090";

export interface CliSettings {
  apiUrl?: string;
  token?: string;
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
  return token ? { apiUrl, token } : { apiUrl };
}
