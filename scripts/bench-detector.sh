#!/usr/bin/env bash
# Detector evaluation and cost: `stackdrift-eval` generates a fleet with known regressions,
# cost shifts and plain deploys, pushes it through the push API into a `stackdrift all`
# started here, runs the detector over the pushed range, and prints recall by regression
# size, false alarms per service-day, latency, top-1 root cause and the detector's CPU per
# 1,000 series-windows (docs/DETECTION.md explains the method and keeps the latest table).
#
# Usage: scripts/bench-detector.sh [SERVICES=30] [HOURS=24] [SEED=7]
#   scripts/bench-detector.sh 10 6 42 is the size CI runs (a few minutes).
set -euo pipefail

services="${1:-30}"
hours="${2:-24}"
seed="${3:-7}"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup
# Live detection stays idle on this past data (no backfill); the replay measures the cost.
bench_start_server --max-profile-age-secs 0
noise=$(( services / 6 ))
echo "== fleet: $services services ($noise noise-only) x $hours h, seed $seed" >&2
"$(dirname "$sd")/stackdrift-eval" --url "http://$addr" --storage-url "$work/data" \
  --services "$services" --noise-only "$noise" --hours "$hours" --seed "$seed" \
  --json "$work/report.json" | tee "$work/eval.out"
echo
echo "Machine: $(machine); $(date -u +%Y-%m-%d)"
