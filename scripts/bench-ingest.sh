#!/usr/bin/env bash
# Ingest benchmark: stackdrift's push throughput and acknowledgement latency next to the
# decode-only floor (gunzip + pprof protobuf decode of the same payloads on the same cores),
# all in one run on this machine. Prints a Markdown table for BENCHMARKS.md.
#
# Usage: scripts/bench-ingest.sh [SECONDS_PER_RUN] [CLIENTS]    (defaults: 20, 256)
# Clients wait for each answer, and an answer waits for its batch commit (~0.5 s), so it
# takes a few hundred clients to load the server rather than measure the flush interval.
#
# Builds release binaries (stackdrift, stackdrift-loadgen), starts `stackdrift all` on a
# temporary directory with the ingestion rate limit off, runs the load generator once per
# protocol, and reads the server's peak RSS (VmHWM) from /proc: up to the end of each warm-up
# (cold start included) and, reset there, over the sustained run that follows.
#
# The speed of a shared VM drifts by up to ±20 % over minutes, so each protocol's ratio is
# taken against the floor measured right around its run: the two decodes (flate2 + prost and
# libdeflate + prost, SECONDS/4 each, with the server idle) before and after it, averaged.
# The full floor at the start gives the table's decode rows.
set -euo pipefail

secs="${1:-20}"
clients="${2:-256}"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup

echo "== decode floor ($(nproc) threads, ${secs}s per phase)" >&2
"$lg" --floor --threads "$(nproc)" --duration "$secs" > "$work/floor.out"
floor="$(result "$work/floor.out")"

bench_start_server

# The two denominators, measured now: "decode_samples_per_sec libdeflate_samples_per_sec".
quick_floor() {
  "$lg" --floor --denominators-only --threads "$(nproc)" \
    --duration "$(python3 -c "print(max(2.0, $secs / 4))")" > "$work/quick.out"
  local r
  r="$(result "$work/quick.out")"
  echo "$(field "$r" decode_samples_per_sec) $(field "$r" decode_libdeflate_samples_per_sec)"
}

declare -A runs before after
echo "== decode floor before connect" >&2
prev="$(quick_floor)"
for proto in connect grpc ingest; do
  echo "== $proto: $clients clients, ${secs}s" >&2
  bench_push_run "$server_pid" 5 "$work/$proto.out" \
    --url "http://$addr" --protocol "$proto" --clients "$clients" --duration "$secs"
  runs[$proto]="$(result "$work/$proto.out")"
  echo "== decode floor after $proto" >&2
  before[$proto]="$prev"
  prev="$(quick_floor)"
  after[$proto]="$prev"
done
rows="$(curl -s "http://$addr/api/v1/sql" -d 'SELECT COUNT(*) AS n FROM samples' | tr -d '[]{}' | cut -d: -f2)"

floor_decode="$(field "$floor" decode_samples_per_sec)"
floor_norm="$(field "$floor" normalize_samples_per_sec)"
floor_ld="$(field "$floor" decode_libdeflate_samples_per_sec)"

echo
echo "Ingest, $(date -u +%Y-%m-%d), $(machine); load generator on the same cores;"
echo "$clients clients, ${secs} s per protocol, default flush interval (500 ms); $rows sample rows stored."
echo
echo "| Run | pushes/s | samples/s | decode floor around the run, samples/s | vs decode floor | vs libdeflate + prost | ack p50 / p99 / max (ms) | refused | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '| decode floor (gunzip with flate2 + prost decode) | %s | %s | | 1.00 | | | | |\n' \
  "$(field "$floor" decode_profiles_per_sec)" "$floor_decode"
printf '| gunzip with libdeflate (the ingester'"'"'s) + prost decode | %s | %s | | %.2f | 1.00 | | | |\n' \
  "$(field "$floor" decode_libdeflate_profiles_per_sec)" "$floor_ld" \
  "$(python3 -c "print($floor_ld / $floor_decode)")"
printf '| gunzip + flat decode (the ingester'"'"'s decoder) | %s | %s | | %.2f | | | | |\n' \
  "$(field "$floor" flat_profiles_per_sec)" "$(field "$floor" flat_samples_per_sec)" \
  "$(python3 -c "print($(field "$floor" flat_samples_per_sec) / $floor_decode)")"
printf '| decode + normalize (stack hashing) | %s | %s | | %.2f | | | | |\n' \
  "$(field "$floor" normalize_profiles_per_sec)" "$floor_norm" \
  "$(python3 -c "print($floor_norm / $floor_decode)")"
printf '| decode + normalize, every stack known (the ingester'"'"'s steady state) | %s | %s | | %.2f | | | | |\n' \
  "$(field "$floor" normalize_known_profiles_per_sec)" "$(field "$floor" normalize_known_samples_per_sec)" \
  "$(python3 -c "print($(field "$floor" normalize_known_samples_per_sec) / $floor_decode)")"
for proto in connect grpc ingest; do
  r="${runs[$proto]}"
  sps="$(field "$r" samples_per_sec)"
  read -r b_dec b_ld <<< "${before[$proto]}"
  read -r a_dec a_ld <<< "${after[$proto]}"
  printf '| ingest over %s | %s | %s | %.0f (%.0f before, %.0f after) | %.2f | %.2f | %s / %s / %s | %s | %s |\n' "$proto" \
    "$(field "$r" pushes_per_sec)" "$sps" \
    "$(python3 -c "print(($b_dec + $a_dec) / 2)")" "$b_dec" "$a_dec" \
    "$(python3 -c "print($sps / (($b_dec + $a_dec) / 2))")" \
    "$(python3 -c "print($sps / (($b_ld + $a_ld) / 2))")" \
    "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" max_ms)" \
    "$(field "$r" pushes_refused)" "$(field "$r" errors)"
done
echo
echo "Server peak RSS (VmHWM) under sustained load (the runs, after each warm-up): ${bench_sustained_peak_mib} MiB;"
echo "over the whole process life, cold start included: ${bench_life_peak_mib} MiB."
