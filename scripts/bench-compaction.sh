#!/usr/bin/env bash
# Compaction benchmark: one partition-day of FILES small files (86,400 = a day of 1-second
# ingest flushes) is compacted by `stackdrift compactor --once`; then the same day is
# downsampled to 1-minute buckets. Prints a Markdown table for BENCHMARKS.md: files and bytes
# before and after, time and peak RSS of each pass.
#
# Usage: scripts/bench-compaction.sh [FILES=86400] [STACKS_PER_PROFILE=50]
#   FILES=2000 is a small-scale run (about a minute).
#
# The files are written straight into the tables by `stackdrift-loadgen --write-day-files`
# (one generated CPU profile per file, yesterday UTC, 1,000 files per Delta commit) rather
# than by 86,400 ingest commits: the compactor sees the same files either way.
set -euo pipefail

files="${1:-86400}"
stacks="${2:-50}"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup
data="$work/data"

echo "== writing $files files of one partition-day" >&2
"$lg" --write-day-files "$files" --storage-url "$data" --services 1 \
  --stacks-per-profile "$stacks" > "$work/write.out"
written="$(result "$work/write.out")"
gz_bytes="$(field "$written" gzip_pprof_bytes)"
rows="$(field "$written" rows)"

# One compactor pass: its summary line for samples, wall seconds and peak RSS.
pass() {
  local name="$1"; shift
  /usr/bin/time -f '%e %M' -o "$work/$name.time" \
    "$sd" compactor --once --storage-url "$data" --log-level warn "$@" \
    > "$work/$name.out" 2> "$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
  grep '^samples: ' "$work/$name.out"
}

echo "== compaction pass (raw rows, 1-hour windows)" >&2
compact_line="$(pass compact --downsample off)"
echo "== downsampling pass (1-minute buckets)" >&2
down_line="$(pass downsample --downsample 1s=1m)"

python3 - "$compact_line" "$down_line" "$work/compact.time" "$work/downsample.time" \
  "$files" "$rows" "$gz_bytes" "$(machine)" <<'EOF'
import re, sys
compact, down, ct, dt, files, rows, gz, machine = sys.argv[1:]
def parse(line):
    m = re.match(r"samples: (\d+) files \((\d+) bytes\) -> (\d+) files \((\d+) bytes\)", line)
    return tuple(int(x) for x in m.groups())
def timing(path):
    secs, kib = open(path).read().split()[-2:]
    return float(secs), int(kib) / 1024
c, d = parse(compact), parse(down)
(cs, cm), (ds, dm) = timing(ct), timing(dt)
mib = lambda b: f"{b / 1048576:.1f} MiB"
print(f"Compaction of one partition-day, {int(files):,} files, {int(rows):,} sample rows "
      f"(gzipped pprof input {mib(int(gz))}); {machine}\n")
print("| pass | files before | files after | bytes before | bytes after | time | peak RSS |")
print("|---|---|---|---|---|---|---|")
print(f"| compaction (1 h windows) | {c[0]:,} | {c[2]:,} | {mib(c[1])} | {mib(c[3])} | {cs:.1f} s | {cm:.0f} MiB |")
print(f"| downsampling (1 min buckets) | {d[0]:,} | {d[2]:,} | {mib(d[1])} | {mib(d[3])} | {ds:.1f} s | {dm:.0f} MiB |")
print(f"\nTarget: at most 48 files per partition-day after compaction: "
      f"{'met' if c[2] <= 48 else 'NOT met'} ({c[2]} files).")
EOF
