#!/usr/bin/env bash
# Builds the web UI: compiles ui/src/*.ts with the pinned TypeScript (ui/package.json,
# installed under target/ by scripts/browser-env.sh) into one script, app.js, and copies
# index.html and style.css beside it.
#
# Usage: scripts/build-ui.sh [OUT_DIR]   (default: ui/dist)
#
# ui/dist is committed and embedded in the binary (querier/src/ui.rs), so a plain
# `cargo build` needs neither Node.js nor npm: run this after changing ui/src and commit
# ui/dist with it. The output depends only on the sources and the compiler version, so the
# browser test (stackdrift/tests/detector.rs) builds into a temporary directory and checks
# that ui/dist is byte for byte the same.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo_root/ui/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

tsc=$("$repo_root/scripts/browser-env.sh" ui | sed -n 's/^tsc=//p')
[[ -n "$tsc" ]] || { echo "build-ui: no tsc from scripts/browser-env.sh" >&2; exit 1; }

node "$tsc" -p "$repo_root/ui/tsconfig.json" --outFile "$out/app.js"
cp "$repo_root/ui/src/index.html" "$repo_root/ui/src/style.css" "$out/"
echo "build-ui: wrote $out/app.js, index.html, style.css" >&2
