#!/usr/bin/env bash
# Run the skiff CLI under Node >= 22.12 (bootstrapping Node 24 if needed):
#   bash scripts/run.sh up        # what `npm start` does
#   bash scripts/run.sh service list
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/node-env.sh"
exec node "$root/deploy/cli/main.ts" "$@"
