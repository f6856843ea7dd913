# Shared by the bench scripts (source it; it is not run on its own): release binaries, a
# temporary work directory removed on exit, a `stackdrift all` started on it, JSON helpers.
#
# After `bench_setup`: $repo, $sd, $lg, $work. After `bench_start_server ARGS...`: $addr
# (host:port) and $server_pid; the server is stopped on exit.

bench_setup() {
  repo="$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)"
  local target="${CARGO_TARGET_DIR:-$repo/target}"
  cd "$repo"
  echo "== building release binaries" >&2
  cargo build --release -p stackdrift -p stackdrift-loadgen >&2
  sd="$target/release/stackdrift"
  lg="$target/release/stackdrift-loadgen"
  work="$(mktemp -d)"
  server_pid=""
  trap bench_cleanup EXIT
}

bench_cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}

# Starts `stackdrift all` on $work/data with the extra ARGS and waits for its address.
bench_start_server() {
  bench_start_role all "$work/data" --ingestion-rate-bytes 0 "$@"
}

# Starts `stackdrift ROLE` on DIR with the extra ARGS, logging to $work/ROLE.log; sets
# $server_pid (stopped on exit) and, once the server logs it, $addr.
bench_start_role() {
  local name="$1" dir="$2"
  shift 2
  echo "== starting stackdrift $name" >&2
  "$sd" "$name" --listen 127.0.0.1:0 --storage-url "$dir" "$@" --log-format json \
    --log-level warn,stackdrift=info 2> "$work/$name.log" &
  server_pid=$!
  addr=""
  for _ in $(seq 1 600); do
    addr="$(grep -o '"addr":"[^"]*"' "$work/$name.log" | head -1 | cut -d'"' -f4 || true)"
    [[ -n "$addr" ]] && break
    sleep 0.1
  done
  [[ -n "$addr" ]] || { cat "$work/$name.log" >&2; echo "$name did not start" >&2; exit 1; }
}

# The last `RESULT {json}` line of a load generator output file.
result() { grep '^RESULT ' "$1" | tail -1 | sed 's/^RESULT //'; }
# One field of a JSON object.
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# The machine, for the tables' headings.
machine() {
  local cpu mem
  cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  mem="$(awk '/^MemTotal:/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "$(nproc) cores ($cpu), $mem"
}

# Peak RSS (VmHWM) of process PID in MiB: the highest resident size since it started or since
# `bench_reset_peak_rss PID`.
bench_peak_rss() { awk '/^VmHWM:/ {print int($2/1024)}' "/proc/$1/status"; }

# Resets VmHWM of PID to its current RSS (Linux: `5` written to /proc/PID/clear_refs).
bench_reset_peak_rss() { echo 5 > "/proc/$1/clear_refs"; }

# CPU seconds (user + system) process PID has used so far.
bench_cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# Peaks over every `bench_push_run` against one server: whole life (cold start included) and
# the sustained runs only (after each warm-up). Set both to 0 when starting a new server.
bench_life_peak_mib=0
bench_sustained_peak_mib=0

# bench_push_run PID WARMUP_SECS OUT LOADGEN_ARGS...: runs the load generator against the
# server PID with `--warmup WARMUP_SECS`, writing its output to OUT. Peak RSS is read as the
# warm-up ends and reset there, so the cold start and the sustained run get their own peaks
# (folded into $bench_life_peak_mib and $bench_sustained_peak_mib); $warmup_end_cpu_s is the
# server's CPU seconds when the warm-up ended, where the load generator starts counting pushes.
bench_push_run() {
  local pid="$1" warm="$2" out="$3" peak
  shift 3
  "$lg" --warmup "$warm" "$@" > "$out" &
  local lg_pid=$!
  # The warm-up starts once the payload pool is generated (the `pool:` line).
  for _ in $(seq 1 600); do
    grep -q '^pool:' "$out" 2>/dev/null && break
    sleep 0.1
  done
  sleep "$warm"
  warmup_end_cpu_s="$(bench_cpu_secs "$pid")"
  peak="$(bench_peak_rss "$pid")"
  bench_reset_peak_rss "$pid"
  bench_life_peak_mib=$(( peak > bench_life_peak_mib ? peak : bench_life_peak_mib ))
  wait "$lg_pid"
  peak="$(bench_peak_rss "$pid")"
  bench_life_peak_mib=$(( peak > bench_life_peak_mib ? peak : bench_life_peak_mib ))
  bench_sustained_peak_mib=$(( peak > bench_sustained_peak_mib ? peak : bench_sustained_peak_mib ))
  echo "   server peak RSS after the warm-up: ${peak} MiB (whole life so far: ${bench_life_peak_mib} MiB)" >&2
}
