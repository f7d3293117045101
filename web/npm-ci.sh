#!/bin/sh
# Installs the dashboard's npm packages exactly as package-lock.json pins them,
# once per lock: into CACHE/web-npm/<lock hash>/ (shared by every build tree),
# then points BIN/node_modules at it. Install scripts are not run (esbuild's
# binary comes in its per-platform package). Fails with a clear message when
# npm is missing or the registry cannot be reached: a capsem without its
# dashboard is never built silently.
# Usage: npm-ci.sh WEB_SOURCE_DIR CACHE_DIR BIN_DIR
set -eu
src=$1
cache=$2/web-npm
bin=$3

if ! command -v npm >/dev/null 2>&1; then
    echo "web: npm not found. The dashboard is built from npm packages: install Node.js and npm (deploy/bootstrap does), or configure with -DCAPSEM_WEB=OFF for a capsem without a dashboard." >&2
    exit 1
fi
hash=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)
dir=$cache/$hash
if [ ! -f "$dir/.complete" ]; then
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
    cp "$src/package.json" "$src/package-lock.json" "$tmp/"
    if ! (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
        rm -rf "$tmp"
        echo "web: 'npm ci' failed (is the npm registry reachable? see the npm output above). The dashboard cannot be built without its packages." >&2
        exit 1
    fi
    touch "$tmp/.complete"
    # Another build may have finished the same install meanwhile: keep theirs.
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
fi
mkdir -p "$bin"
ln -sfn "$dir/node_modules" "$bin/node_modules"
touch "$bin/npm.stamp"
