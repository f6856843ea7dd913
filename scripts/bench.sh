#!/usr/bin/env bash
# The one bench command: every figure of the benchmarks issue measured in one run on this
# machine, printed as one table (figure, measured, target, met?) and written into
# BENCHMARKS.md between the `bench.sh` markers, with the machine and the date.
#
# Usage: scripts/bench.sh [small|full]      (default: small, ≤ 10 minutes after the build)
#
#   1. ingest: the decode floor (`stackdrift-loadgen --floor`: gunzip + prost protobuf decode
#      of the same payloads on all cores), then `stackdrift ingester` alone under closed-loop
#      pushes over Connect (full: also gRPC and /ingest), then the floor again; ingester peak
#      RSS and CPU seconds from /proc.
#   2. 7 days of 10 s CPU profiles of one service backfilled into a second `stackdrift
#      ingester`, compacted by `stackdrift compactor --once` (then a vacuum pass).
#   3. storage: live Parquet bytes of samples + stacks per pprof sample, next to the gzipped
#      pprof pushed and to chdb's MergeTree size for the same rows (scripts/bench_chdb_size.py).
#   4. `stackdrift querier` alone: merged flame graph for the last 1 h, 24 h and 7 d of that
#      data, next to DuckDB and chdb running the equivalent aggregation over the same files
#      (scripts/bench_flamegraph.py; the totals must agree).
#   5. detector: `stackdrift-eval` pushes a generated fleet into a third ingester and replays
#      the detector over it (CPU per 1,000 series-windows); `stackdrift detector --from --to`
#      replays the same range as its own process for the role's peak RSS.
#
# Small scale: 10 s ingest runs (900 clients), 100 stacks per profile (7 d = 6 M sample rows), 3 timed
# runs per engine, 10 services x 4 h for the detector. Full: 20 s per protocol, 900 clients,
# 1,000 stacks per profile (24 h = 8.6 M rows, 7 d = 60 M), 5 runs, 30 services x 6 h.
# Builds release binaries first (not counted in the 10 minutes) and the `querybench` venv.
set -euo pipefail

scale="${1:-small}"
case "$scale" in
  small) secs=10 clients=900 protocols="connect" stacks=100 runs=3 det_services=10 det_hours=4 ;;
  full) secs=20 clients=900 protocols="connect grpc ingest" stacks=1000 runs=5 det_services=30 det_hours=6 ;;
  *) echo "usage: $0 [small|full]" >&2; exit 2 ;;
esac
days=7
# 900 closed-loop clients keep the ingester's batches filling by size (capacity); with a few
# hundred, every push waits out the 500 ms flush age and throughput is clients / latency.
# Each client holds a connection: lift the usual 1,024 open-files limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup
eval_bin="$(dirname "$sd")/stackdrift-eval"
echo "== python venv (duckdb, chdb)" >&2
py="$(scripts/python-env.sh querybench | tail -1)"
began=$(date +%s)
figures="$work/figures.json"
echo '{}' > "$figures"
# put KEY JSON_VALUE: records one figure.
put() { python3 - "$figures" "$1" "$2" <<'EOF'
import json, sys
path, key, value = sys.argv[1:4]
d = json.load(open(path)); d[key] = json.loads(value); json.dump(d, open(path, "w"))
EOF
}
# Progress lines carry the seconds since the measurements began.
say() { echo "== [$(( $(date +%s) - began )) s] $*" >&2; }
# role NAME DIR ARGS...: starts `stackdrift NAME` on DIR; sets $addr and $role_pid.
role() {
  bench_start_role "$@"
  role_pid=$server_pid
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; server_pid=""; }
# timed OUT CMD...: runs CMD under /usr/bin/time; OUT.time gets "seconds max_rss_kib".
timed() {
  local out="$1"
  shift
  /usr/bin/time -f '%e %M %U %S' -o "$out.time" "$@" > "$out"
}

# 1. Ingest against the decode floor.
say "[1/5] decode floor ($(nproc) threads, ${secs} s per phase)"
"$lg" --floor --threads "$(nproc)" --duration "$secs" > "$work/floor.out"
put floor "$(result "$work/floor.out")"
role ingester "$work/ingest" --ingestion-rate-bytes 0
for proto in $protocols; do
  say "[1/5] ingest over $proto: $clients clients, ${secs} s"
  bench_push_run "$role_pid" 5 "$work/ingest-$proto.out" \
    --url "http://$addr" --protocol "$proto" --clients "$clients" --duration "$secs"
  put "ingest_$proto" "$(result "$work/ingest-$proto.out")"
  # Over the pushes the load generator counts: from the end of its warm-up.
  put "ingest_${proto}_server_cpu_s" "$(python3 -c "print($(bench_cpu_secs "$role_pid") - $warmup_end_cpu_s)")"
done
put ingester_rss_mib "$bench_life_peak_mib"
put ingester_sustained_rss_mib "$bench_sustained_peak_mib"
stop "$role_pid"
# One floor run moves by up to ±20 % on a shared VM: measure it again after the ingest runs;
# the report holds ingest against the faster of the two.
say "[1/5] decode floor again, after the ingest runs"
"$lg" --floor --threads "$(nproc)" --duration "$secs" > "$work/floor-after.out"
put floor_after "$(result "$work/floor-after.out")"

# 2. Seven days of one service, compacted.
say "[2/5] backfilling ${days} d of 10 s profiles, ${stacks} stacks each"
data="$work/data"
role ingester "$data" --ingestion-rate-bytes 0 --max-profile-age-secs 0
"$lg" --url "http://$addr" --backfill-hours $(( days * 24 )) --interval-secs 10 --services 1 \
  --stacks-per-profile "$stacks" --clients 256 > "$work/backfill.out"
put backfill "$(result "$work/backfill.out")"
put backfill_ingester_rss_mib "$(bench_peak_rss "$role_pid")"
stop "$role_pid"
say "[2/5] compacting (stackdrift compactor --once), then a vacuum pass"
# Downsampling off: every figure below is over full-resolution rows (hourly windows merged and
# sorted, hourly rollups beside them). With the default tiers the days older than 24 h would
# be summed into 1-minute buckets (which works at full scale since the fix in BENCHMARKS.md,
# but would make the flame graph and storage figures depend on the tiers).
compact=(compactor --once --storage-url "$data" --compaction-settle 1m --vacuum-grace 1m
  --downsample off --log-level warn)
timed "$work/compact1.out" "$sd" "${compact[@]}"
sleep 65 # the vacuum pass deletes what the first pass replaced, after the 1 min grace
timed "$work/compact2.out" "$sd" "${compact[@]}"
# The second pass may merge the last window too (it was still settling during the first): one
# more pass after the grace deletes what it replaced. The figures below read only the files the
# Delta log references (scripts/delta_files.py), so they do not depend on the vacuum's timing.
sleep 65
timed "$work/compact3.out" "$sd" "${compact[@]}"
read -r c_secs c_rss _ < "$work/compact1.out.time"
put compaction "{\"seconds\": $c_secs, \"rss_mib\": $(( c_rss / 1024 ))}"

# 3. Storage.
say "[3/5] storage: Parquet bytes, and chdb MergeTree for the same rows"
# The live files only (what the Delta log references), not every Parquet file in the directory.
parquet_bytes() { "$py" scripts/delta_files.py "$data/$1" bytes; }
put storage "{\"samples\": $(parquet_bytes samples), \"stacks\": $(parquet_bytes stacks), \"rollups\": $(parquet_bytes rollups)}"
put chdb_size "$("$py" scripts/bench_chdb_size.py "$data" "$work/chdb")"

# 4. Flame graphs over 1 h, 24 h and 7 d.
role querier "$data"
service="$(curl -s "http://$addr/api/v1/sql" -d 'SELECT DISTINCT service_name AS s FROM samples' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["s"])')"
end_ms="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backfill"]["end_ms"])' "$figures")"
cpu_type="process_cpu:cpu:nanoseconds:cpu:nanoseconds"
for range in 1 24 168; do
  say "[4/5] flame graph over the last ${range} h (${runs} runs per engine, median)"
  start_ms=$(( end_ms - range * 3600000 ))
  put "flame_${range}h" "$("$py" scripts/bench_flamegraph.py "http://$addr" "$data" "$cpu_type" \
    "$service" "$start_ms" "$end_ms" "$runs" 2> >(grep -v UserWarning | grep -v 'to_arrow_table' >&2))"
done
put querier_rss_mib "$(bench_peak_rss "$role_pid")"
stop "$role_pid"

# 5. Detector.
say "[5/5] detector: ${det_services} services x ${det_hours} h"
det="$work/detector"
role ingester "$det" --ingestion-rate-bytes 0 --max-profile-age-secs 0
det_start_us=$(( ($(date +%s) - det_hours * 3600 - 120) / 60 * 60 * 1000000 ))
"$eval_bin" --url "http://$addr" --storage-url "$det" --services "$det_services" \
  --noise-only $(( det_services / 6 )) --hours "$det_hours" --start-us "$det_start_us" \
  --json "$work/eval.json" > "$work/eval.out"
stop "$role_pid"
python3 - "$work/eval.json" > "$work/eval.fig" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps({"cpu_per_1000_series_windows": d["cpu_seconds_per_1000_series_windows"],
                  "services": d["fleet"]["services"], "windows": d["fleet"]["windows"]}))
EOF
put detector "$(cat "$work/eval.fig")"
det_end_us=$(( det_start_us + det_hours * 3600 * 1000000 ))
timed "$work/replay.out" "$sd" detector --storage-url "$det" --log-level warn \
  --from "$(( det_start_us / 1000 ))" --to "$(( det_end_us / 1000 ))"
read -r r_secs r_rss r_user r_sys < "$work/replay.out.time"
put detector_role "{\"seconds\": $r_secs, \"rss_mib\": $(( r_rss / 1024 )), \"cpu_seconds\": $(python3 -c "print($r_user + $r_sys)")}"

put run "{\"scale\": \"$scale\", \"seconds\": $(( $(date +%s) - began )), \"machine\": \"$(machine)\", \"date\": \"$(date -u +%Y-%m-%d)\", \"commit\": \"$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo '+changes')\", \"clients\": $clients, \"secs\": $secs, \"stacks\": $stacks, \"runs\": $runs}"
mkdir -p "${CARGO_TARGET_DIR:-$repo/target}/bench"
cp "$figures" "${CARGO_TARGET_DIR:-$repo/target}/bench/figures-$scale.json" # kept for a re-report
python3 scripts/bench_report.py "$figures" BENCHMARKS.md
