/** Temporary folders a test file makes as it goes (state, HOME, XDG_CONFIG_HOME), removed together at its end. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TempDirs {
  /** A fresh folder `{prefix}-{label}-XXXXXX` under the system's temporary folder. */
  make(label: string): string;
  /** Remove every folder made so far. */
  removeAll(): void;
}

export function tempDirs(prefix: string): TempDirs {
  const made: string[] = [];
  return {
    make(label) {
      const dir = mkdtempSync(join(tmpdir(), `${prefix}-${label}-`));
      made.push(dir);
      return dir;
    },
    removeAll() {
      for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
    },
  };
}
