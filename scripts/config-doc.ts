/** Writes docs/configuration.md from the configuration schema (`npm run docs:config`). */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { configReference } from "../src/config/docs.ts";

const out = fileURLToPath(new URL("../docs/configuration.md", import.meta.url));
writeFileSync(out, configReference());
process.stdout.write(`wrote ${out}\n`);
