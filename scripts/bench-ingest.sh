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
# protocol, and reads the server's peak RSS (VmHWM) from /proc at the end.
set -euo pipefail

secs="${1:-20}"
clients="${2:-256}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
cd "$repo"

echo "== building release binaries" >&2
cargo build --release -p stackdrift -p stackdrift-loadgen >&2
sd="$target/release/stackdrift"
lg="$target/release/stackdrift-loadgen"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

result() { grep '^RESULT ' "$1" | tail -1 | sed 's/^RESULT //'; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

echo "== decode floor ($(nproc) threads, ${secs}s per phase)" >&2
"$lg" --floor --threads "$(nproc)" --duration "$secs" > "$work/floor.out"
floor="$(result "$work/floor.out")"

echo "== starting stackdrift all" >&2
"$sd" all --listen 127.0.0.1:0 --storage-url "$work/data" --ingestion-rate-bytes 0 \
  --log-format json --log-level warn,stackdrift=info 2> "$work/server.log" &
server_pid=$!
addr=""
for _ in $(seq 1 600); do
  addr="$(grep -o '"addr":"[^"]*"' "$work/server.log" | head -1 | cut -d'"' -f4 || true)"
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "$addr" ]] || { cat "$work/server.log" >&2; echo "server did not start" >&2; exit 1; }

declare -A runs
for proto in connect grpc ingest; do
  echo "== $proto: $clients clients, ${secs}s" >&2
  "$lg" --url "http://$addr" --protocol "$proto" --clients "$clients" --duration "$secs" \
    > "$work/$proto.out"
  runs[$proto]="$(result "$work/$proto.out")"
  rss_now="$(awk '/^VmRSS:/ {print int($2/1024)}' "/proc/$server_pid/status")"
  echo "   server RSS after the run: ${rss_now} MiB" >&2
done
peak_rss="$(awk '/^VmHWM:/ {print int($2/1024)}' "/proc/$server_pid/status")"
rows="$(curl -s "http://$addr/api/v1/sql" -d 'SELECT COUNT(*) AS n FROM samples' | tr -d '[]{}' | cut -d: -f2)"

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
mem="$(awk '/^MemTotal:/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
floor_decode="$(field "$floor" decode_samples_per_sec)"
floor_norm="$(field "$floor" normalize_samples_per_sec)"

echo
echo "Ingest, $(date -u +%Y-%m-%d), $(nproc) cores ($cpu), $mem; load generator on the same cores;"
echo "$clients clients, ${secs} s per protocol, default flush interval (500 ms); $rows sample rows stored."
echo
echo "| Run | pushes/s | samples/s | vs decode floor | ack p50 / p99 / max (ms) | refused | errors |"
echo "|---|---|---|---|---|---|---|"
printf '| decode floor (gunzip + protobuf) | %s | %s | 1.00 | | | |\n' \
  "$(field "$floor" decode_profiles_per_sec)" "$floor_decode"
printf '| decode + normalize (stack hashing) | %s | %s | %.2f | | | |\n' \
  "$(field "$floor" normalize_profiles_per_sec)" "$floor_norm" \
  "$(python3 -c "print($floor_norm / $floor_decode)")"
for proto in connect grpc ingest; do
  r="${runs[$proto]}"
  sps="$(field "$r" samples_per_sec)"
  printf '| ingest over %s | %s | %s | %.2f | %s / %s / %s | %s | %s |\n' "$proto" \
    "$(field "$r" pushes_per_sec)" "$sps" "$(python3 -c "print($sps / $floor_decode)")" \
    "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" max_ms)" \
    "$(field "$r" pushes_refused)" "$(field "$r" errors)"
done
echo
echo "Server peak RSS (VmHWM) over all runs: ${peak_rss} MiB."
