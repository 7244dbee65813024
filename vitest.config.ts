import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Real Redis, Docker and workerd: give slow machines room, never hang forever.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: files run in parallel, but not so many that timings go wild.
    maxWorkers: 2,
  },
});
