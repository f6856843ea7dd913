#!/usr/bin/env bash
# Query benchmark: one merged flame graph for one service over HOURS of 10 s profiles, from
# stackdrift (Grafana's SelectMergeStacktraces) next to DuckDB and chdb running the equivalent
# aggregation over the same Parquet files, in one run on this machine. Prints a Markdown table
# for BENCHMARKS.md.
#
# Usage: [COMPACT=1] scripts/bench-query.sh [HOURS=24] [STACKS_PER_PROFILE=1000] [RUNS=5]
#   24 h of 10 s profiles with 1,000 stacks each is 8,640 profiles, ~8.6 M sample rows of the
#   CPU type. HOURS=2 is a small-scale run (a few minutes).
#
# Builds release binaries, makes the `querybench` venv (DuckDB, chdb; scripts/python-env.sh),
# starts `stackdrift all` on a temporary directory (profiles of any age accepted, scheduled
# compaction off), backfills with `stackdrift-loadgen --backfill-hours`, runs the compactor
# once and vacuums what it replaced (COMPACT=0 skips this: raw ingest files only), then times
# scripts/bench_flamegraph.py.
set -euo pipefail

hours="${1:-24}"
stacks="${2:-1000}"
runs="${3:-5}"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup
echo "== python venv (duckdb, chdb)" >&2
py="$(scripts/python-env.sh querybench | tail -1)"

bench_start_server --max-profile-age-secs 0 --compaction-interval-secs 1000000

echo "== backfilling ${hours} h of 10 s profiles, ${stacks} stacks each" >&2
"$lg" --url "http://$addr" --backfill-hours "$hours" --interval-secs 10 --services 1 \
  --stacks-per-profile "$stacks" --clients 256 > "$work/backfill.out"
backfill="$(result "$work/backfill.out")"
start_ms="$(field "$backfill" start_ms)"
end_ms="$(field "$backfill" end_ms)"
cpu_type="process_cpu:cpu:nanoseconds:cpu:nanoseconds"
service="$(curl -s "http://$addr/api/v1/sql" -d 'SELECT DISTINCT service_name AS s FROM samples' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["s"])')"
rows="$(curl -s "http://$addr/api/v1/sql" \
  -d "SELECT count(*) AS n FROM samples WHERE profile_type = '$cpu_type'" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["n"])')"
if [[ "${COMPACT:-1}" == 1 ]]; then
  # As a deployment would: the compactor merges each closed hour into one sorted file with
  # its hourly stack totals. A second pass a minute later vacuums the replaced files, so the
  # Parquet files DuckDB and chdb read are exactly the live ones.
  echo "== compacting (stackdrift compactor --once), then vacuum after 65 s" >&2
  compact_args=(compactor --once --storage-url "$work/data" --compaction-settle 1m
    --vacuum-grace 1m --log-level warn)
  "$sd" "${compact_args[@]}" > "$work/compact1.out"
  sleep 65
  "$sd" "${compact_args[@]}" > "$work/compact2.out"
  cat "$work/compact1.out" "$work/compact2.out" >&2
fi
files="$("$py" scripts/delta_files.py "$work/data/samples" count)"

echo "== timing the flame graph (${runs} runs each, median)" >&2
times="$("$py" scripts/bench_flamegraph.py "http://$addr" "$work/data" "$cpu_type" "$service" \
  "$start_ms" "$end_ms" "$runs")"
rss="$(awk '/^VmHWM:/ {print int($2/1024)}' "/proc/$server_pid/status")"

sd_s="$(field "$times" stackdrift_s)"
duck_s="$(field "$times" duckdb_s)"
ch_s="$(field "$times" chdb_s)"
echo
echo "Flame graph, $(date -u +%Y-%m-%d), $(machine); ${hours} h of 10 s profiles"
echo "of one service, $rows CPU sample rows in $files Parquet files, $(field "$times" distinct_stacks) distinct stacks;"
echo "median of ${runs} runs after a warm-up; server peak RSS ${rss} MiB."
echo
echo "| Engine | seconds | vs faster of DuckDB and chdb |"
echo "|---|---|---|"
best="$(python3 -c "print(min($duck_s, $ch_s))")"
printf '| stackdrift (SelectMergeStacktraces, tree + level encoding) | %s | %.2f |\n' "$sd_s" \
  "$(python3 -c "print($sd_s / $best)")"
printf '| DuckDB 2.0.1 (read_parquet, sum per stack, join frames) | %s | %.2f |\n' "$duck_s" \
  "$(python3 -c "print($duck_s / $best)")"
printf '| chdb 4.4.0 (file(), sum per stack, join frames) | %s | %.2f |\n' "$ch_s" \
  "$(python3 -c "print($ch_s / $best)")"
