#!/usr/bin/env bash
# Run the skiff CLI (the prebuilt bundle, bin/skiff.js) under Node >= 22.12 (bootstrapping Node 24 if needed):
#   bash scripts/run.sh up        # what `npm start` does
#   bash scripts/run.sh service list
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/node-env.sh"
exec node "$root/bin/skiff.js" "$@"
