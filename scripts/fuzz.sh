#!/usr/bin/env bash
# Short coverage-guided fuzz run (cargo-fuzz / libFuzzer) of every fuzz target in fuzz/.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
#   Targets: pprof_decode ingest_legacy selector otlp_convert sql_guard (default: all).
#
# Installs cargo-fuzz into ~/.cargo/bin if it is missing, builds the targets on stable Rust
# without a sanitizer (`-s none`: the sanitizers need nightly), then runs each target in turn
# for SECONDS_PER_TARGET, one fuzzer process at a time under `nice`, starting from the
# committed corpus fuzz/corpus/<target>/. New inputs go to fuzz/target/corpus/<target>/
# (ignored by git), so a run never edits the committed corpus. A crash, timeout (> 10 s per
# input) or out-of-memory (> 2 GB RSS) stops the run with a non-zero exit; the input is left
# in fuzz/artifacts/<target>/ and can be replayed with
#   (cd fuzz && cargo fuzz run -s none --codegen-units 16 <target> artifacts/<target>/<file>)
# Not part of .ci/run (CI has one build); see docs/RELIABILITY.md, "Fuzzing".
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(pprof_decode ingest_legacy selector otlp_convert sql_guard)
fi
# The same flags for build and run, so `cargo fuzz run` does not rebuild.
flags=(-s none --codegen-units 16)

if ! cargo fuzz --version > /dev/null 2>&1; then
  echo "== installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

echo "== building fuzz targets" >&2
nice -n 10 cargo fuzz build "${flags[@]}"

failed=()
for target in "${targets[@]}"; do
  scratch="target/corpus/$target"
  mkdir -p "$scratch" "corpus/$target"
  echo "== $target: ${seconds}s" >&2
  if ! nice -n 10 cargo fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1; then
    echo "== $target FAILED: see fuzz/artifacts/$target/" >&2
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "== fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "== fuzzing: no crash in ${targets[*]}" >&2
