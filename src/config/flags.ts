/**
 * The server commands' configuration flags, generated from the schema: each
 * setting names its flag per command (SettingMeta.flags), and a flag given
 * on the command line becomes a layer above the file and the environment.
 * Only commander's types are imported: the commands that use this are
 * loaded lazily, and the client CLI never loads it.
 */
import type { Command } from "commander";
import { type Layer, setPath } from "./layers.ts";
import type { ServerCommand } from "./meta.ts";
import { SETTINGS } from "./schema.ts";
import { defaultText, fromText, type Setting } from "./walk.ts";

export interface ConfigFlag {
  setting: Setting;
  /** In commander syntax: "--port <port>", "--no-containers". */
  flag: string;
  /** "--port", "--no-containers". */
  long: string;
  /** Where commander puts the value: "port", "containers". */
  attribute: string;
  /** A `--no-...` flag: only given when false. */
  negated: boolean;
  /** A map flag (KEY=VALUE), repeatable. */
  repeatable: boolean;
}

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The configuration flags of one command, in the schema's order. */
export function configFlags(command: ServerCommand): ConfigFlag[] {
  const out: ConfigFlag[] = [];
  for (const setting of SETTINGS) {
    const flag = setting.meta?.flags?.[command];
    if (!flag) continue;
    const long = flag.split(" ")[0]!;
    const negated = long.startsWith("--no-");
    out.push({
      setting,
      flag,
      long,
      attribute: camel(long.slice(negated ? 5 : 2)),
      negated,
      repeatable: setting.type === "record",
    });
  }
  return out;
}

/** One line of help: what it does, its default and its environment variable. */
function help(f: ConfigFlag): string {
  const s = f.setting;
  const dflt = f.negated ? undefined : defaultText(s);
  const extra = [
    ...(dflt === undefined ? [] : [`default ${dflt}`]),
    ...(s.env ? [`env ${s.env}`] : []),
    ...(f.repeatable ? ["repeatable"] : []),
  ];
  const what = s.meta?.description ?? s.key;
  const text = f.negated ? `sets ${s.key} to false: ${what}` : what;
  return `${text}${extra.length ? ` (${extra.join("; ")})` : ""}`;
}

const collect = (value: string, prev: string[] = []) => [...prev, value];

/** Add --config and the command's configuration flags (no commander defaults: absent flags override nothing). */
export function addConfigFlags(cmd: Command, command: ServerCommand): Command {
  cmd.option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG");
  for (const f of configFlags(command)) {
    if (f.repeatable) cmd.option(f.flag, help(f), collect);
    else cmd.option(f.flag, help(f));
  }
  return cmd;
}

/** The flags given to a command (commander's parsed options), as a configuration layer. */
export function flagLayer(command: ServerCommand, opts: Record<string, unknown>): Layer {
  const layer: Layer = { values: {}, origins: new Map() };
  for (const f of configFlags(command)) {
    const given = opts[f.attribute];
    if (given === undefined) continue;
    let value: unknown;
    if (f.negated) {
      // commander sets true when the --no- flag is absent: only an explicit false overrides.
      if (given !== false) continue;
      value = false;
    } else if (given === true) {
      value = true; // a boolean flag without a value
    } else if (typeof given === "string" || Array.isArray(given)) {
      value = fromText(given as string | string[], f.setting);
    } else {
      value = given;
    }
    setPath(layer.values, f.setting.path, value);
    layer.origins.set(f.setting.key, { kind: "flag", flag: f.long });
  }
  return layer;
}
