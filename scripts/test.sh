#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine:
#   bash scripts/test.sh
# Installs what is missing (Node 24 into a cache folder; redis-server and
# docker.io with apt when root), starts dockerd when none answers, installs
# npm dependencies, then format check + lint + type-check + dead code (knip)
# + doc references + every test.
# The test run starts its own private redis-server unless REDIS_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

. scripts/node-env.sh
say "node $(node --version), npm $(npm --version 2>/dev/null)"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# The registry tests run Debian's registry with htpasswd users (apache2-utils).
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
# The web console's browser test drives Debian's chromium with playwright-core.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]} (run as root, or: sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

# Docker: use a running engine, else start one (root only).
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    say "starting dockerd"
    # A killed dockerd leaves its pid file behind and the next one refuses to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
      rm -f /var/run/docker.pid
    fi
    nohup dockerd >/tmp/skiff-dockerd.log 2>&1 &
    for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/skiff-dockerd.log" >&2; tail -20 /tmp/skiff-dockerd.log >&2; exit 1; }
  else
    echo "no Docker engine answers and we are not root to start one" >&2
    exit 1
  fi
fi

say "npm install"
# `npm install` honours package-lock.json's versions. Not `npm ci`: npm 11.19
# writes lockfiles without other platforms' optional packages and then its own
# `npm ci` refuses them as out of sync.
npm install --no-audit --no-fund --loglevel=error

say "format + lint (biome)"
npx biome check --error-on-warnings .
say "type-check (tsc)"
npx tsc -p tsconfig.json
say "Prometheus rules and config (promtool)"
promtool check rules deploy/prometheus/*.rules.yml
promtool check config --syntax-only deploy/prometheus/prometheus.yml
say "dead code (knip)"
npx knip
say "doc references"
node scripts/check-links.ts

say "CLI bundle (esbuild)"
npm run --silent build:cli

say "tests (vitest)"
mkdir -p .cache
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.cache/vitest.json "$@" || status=$?
# One plain closing line that any CI can read, whatever the reporter prints.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(".cache/vitest.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' || true
exit "$status"
