#!/usr/bin/env bash
# What the web UI's build and its browser test need, installed once and cached:
# the TypeScript compiler (pinned in ui/package.json + ui/package-lock.json), and, for the
# browser test (tests/browser/ui_test.mjs, run by stackdrift/tests/detector.rs), Debian's
# Chromium and playwright-core (pinned in tests/browser/package.json + package-lock.json).
#
# Usage: scripts/browser-env.sh [ui|all]
#   ui:  only the TypeScript compiler (scripts/build-ui.sh calls this).
#   all (default): the compiler, Chromium and playwright-core.
#   Stdout carries only KEY=VALUE lines (tsc=…, and with `all` chromium=… and
#   node_modules=…, the directory to put on NODE_PATH); npm's and apt's chatter goes to
#   stderr.
#
# npm packages are installed with `npm ci` (exactly the lock file's versions, no install
# scripts) into ${CARGO_TARGET_DIR:-<repo>/target}/browser-env/{ui,test}, never into the
# source tree. A directory whose marker file holds the hash of its lock file is reused
# without running anything. Chromium comes from `apt-get install chromium` when
# /usr/bin/chromium is missing (needs root; `apt-get update` runs only if the install
# fails). Installs are serialized with flock on browser-env/.lock, so concurrent callers are
# safe. Env: CHROMIUM overrides the browser path (then nothing is installed for it).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
[[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"  # cargo reads a relative one from the cwd
env_dir="$target_dir/browser-env"

what="${1:-all}"
case "$what" in
  ui|all) ;;
  *) echo "usage: $0 [ui|all]" >&2; exit 2 ;;
esac

# name -> directory holding package.json and package-lock.json
declare -A SOURCES=([ui]="$repo_root/ui" [test]="$repo_root/tests/browser")

lock_hash() { sha256sum "${SOURCES[$1]}/package-lock.json" | cut -d' ' -f1; }
npm_ready() { [[ "$(cat "$env_dir/$1/.stackdrift-ready" 2>/dev/null)" == "$(lock_hash "$1")" ]]; }
chromium_path() { echo "${CHROMIUM:-/usr/bin/chromium}"; }
chromium_ready() { [[ -x "$(chromium_path)" ]]; }

with_lock() {
  mkdir -p "$env_dir"
  exec 9>"$env_dir/.lock"
  flock -w 900 9 || { echo "browser-env: timed out waiting for $env_dir/.lock" >&2; exit 1; }
  "$@"
  exec 9>&-
}

npm_install() {
  local name="$1" dir="$env_dir/$1" src="${SOURCES[$1]}"
  npm_ready "$name" && return 0  # another caller installed it while we waited
  command -v npm >/dev/null || { echo "browser-env: npm not found (install Node.js 20+)" >&2; exit 1; }
  echo "browser-env: npm ci in $dir ($(basename "$src")/package-lock.json)" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  lock_hash "$name" > "$dir/.stackdrift-ready"
}

chromium_install() {
  chromium_ready && return 0
  if [[ -n "${CHROMIUM:-}" ]]; then
    echo "browser-env: CHROMIUM=$CHROMIUM is not an executable" >&2
    exit 1
  fi
  echo "browser-env: installing Debian's chromium with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y chromium >&2; then
    apt-get update >&2
    apt-get install -y chromium >&2
  fi
  chromium_ready || { echo "browser-env: $(chromium_path) missing after the install" >&2; exit 1; }
}

npm_ready ui || with_lock npm_install ui
echo "tsc=$env_dir/ui/node_modules/typescript/bin/tsc"
if [[ "$what" == all ]]; then
  npm_ready test || with_lock npm_install test
  chromium_ready || with_lock chromium_install
  echo "chromium=$(chromium_path)"
  echo "node_modules=$env_dir/test/node_modules"
fi
