#!/usr/bin/env bash
# Cached Python venvs holding real Python clients, for the acceptance tests:
# the Pyroscope SDKs (tests/python/cpu_burner.py pushes profiles with them) and
# the ADBC Flight SQL driver (tests/python/flight_sql_client.py queries with it);
# DuckDB + chdb for the query benchmark (scripts/bench-query.sh, not a test); and
# the deploy/ validators (tests/python/validate_deploy.py: kubernetes-validate's
# Kubernetes schemas, check-jsonschema's vendored Compose specification schema).
#
# Usage: scripts/python-env.sh [pyroscope-1.4.0|pyroscope-0.8.16|flightsql|querybench|deploy]
#   With a name: makes that venv. Without: makes the two Pyroscope ones (0.8.16,
#   then 1.4.0), as before flightsql existed; name flightsql, querybench or
#   deploy to make those.
#   Stdout carries only the venvs' python paths, one line each, so the last
#   line is the chosen venv's python; pip's chatter goes to stderr.
#
# Venvs live in ${CARGO_TARGET_DIR:-<repo>/target}/pyenv/<name>. A venv whose
# marker file names the wanted package is reused without running anything.
# Builds are serialized with flock on pyenv/.lock, so concurrent callers are
# safe. Env: PYTHON (default python3) picks the interpreter for new venvs.
set -euo pipefail

declare -A PACKAGES=(
  [pyroscope-1.4.0]="pyroscope-io==1.4.0"
  [pyroscope-0.8.16]="pyroscope-io==0.8.16"
  [flightsql]="adbc-driver-flightsql==1.13.0 pyarrow==26.0.1"
  [querybench]="duckdb==2.0.1 chdb==4.4.0 pyarrow==26.0.1"
  [deploy]="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 jsonschema==4.26.0 PyYAML==6.0.3"
)
# What each venv must be able to import before it is marked ready.
declare -A IMPORTS=(
  [pyroscope-1.4.0]="pyroscope"
  [pyroscope-0.8.16]="pyroscope"
  [flightsql]="adbc_driver_flightsql.dbapi, pyarrow"
  [querybench]="duckdb, chdb, pyarrow"
  [deploy]="kubernetes_validate, check_jsonschema, jsonschema, yaml"
)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
[[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"  # cargo reads a relative one from the cwd
pyenv_dir="$target_dir/pyenv"
python="${PYTHON:-python3}"

if [[ $# -eq 0 ]]; then
  names=(pyroscope-0.8.16 pyroscope-1.4.0)
elif [[ $# -eq 1 && -n "$1" && -n "${PACKAGES[$1]+x}" ]]; then
  names=("$1")
else
  echo "usage: $0 [pyroscope-1.4.0|pyroscope-0.8.16|flightsql|querybench|deploy]" >&2
  exit 2
fi

# True when the venv is complete: the marker is written last, after a check.
ready() { [[ -x "$pyenv_dir/$1/bin/python" && "$(cat "$pyenv_dir/$1/.stackdrift-ready" 2>/dev/null)" == "${PACKAGES[$1]}" ]]; }

build() {
  local venv="$pyenv_dir/$1" pkg="${PACKAGES[$1]}" pkgs
  read -ra pkgs <<< "$pkg"
  echo "python-env: creating $venv ($pkg)" >&2
  command -v "$python" >/dev/null || { echo "python-env: interpreter '$python' not found (set PYTHON)" >&2; exit 1; }
  rm -rf "$venv"  # a half-built or outdated venv
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "${pkgs[@]}" >&2
  # Check that the packages import (their native libraries load) and have the pinned
  # versions before marking the venv ready.
  "$venv/bin/python" -c "import ${IMPORTS[$1]}"'
import sys, importlib.metadata as m
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    v = m.version(name)
    if v != want:
        sys.exit("%s %s installed, not %s" % (name, v, want))' \
    "${pkgs[@]}" >&2
  echo "$pkg" > "$venv/.stackdrift-ready"
}

for name in "${names[@]}"; do
  if ! ready "$name"; then
    mkdir -p "$pyenv_dir"
    exec 9>"$pyenv_dir/.lock"
    flock -w 900 9 || { echo "python-env: timed out waiting for $pyenv_dir/.lock" >&2; exit 1; }
    ready "$name" || build "$name"  # another caller may have built it while we waited
    exec 9>&-
  fi
  echo "$pyenv_dir/$name/bin/python"
done
