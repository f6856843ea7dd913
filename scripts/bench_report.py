"""Turns the figures scripts/bench.sh collected into one Markdown table (figure, measured,
target, met?), prints it, and replaces the part of BENCHMARKS.md between the `bench.sh`
markers with it.

Usage: bench_report.py FIGURES_JSON BENCHMARKS_MD
"""

import json
import sys

BEGIN = "<!-- bench.sh:begin -->"
END = "<!-- bench.sh:end -->"


def fmt(x, digits=2):
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 100):
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def met(ok):
    return "yes" if ok else "**no**"


def table(f):
    run = f["run"]
    rows = []  # (figure, measured, target, met)
    # The floor is measured before and after the ingest runs; ingest is held against the
    # faster of the two (the stricter ratio).
    floors = [f[k] for k in ("floor", "floor_after") if k in f]
    best = max(floors, key=lambda x: x["decode_samples_per_sec"])
    floor = best["decode_samples_per_sec"]
    measured = " and ".join(f"{fmt(x['decode_samples_per_sec'], 0)}" for x in floors)
    rows.append(
        (
            "decode floor (gunzip + prost protobuf decode, all cores; before and after)",
            f"{measured} samples/s ({fmt(best['decode_profiles_per_sec'], 0)} profiles/s at best)",
            "",
            "",
        )
    )
    if "flat_samples_per_sec" in best:
        flat = max(x.get("flat_samples_per_sec", 0) for x in floors)
        rows.append(
            (
                "the ingester's decoder (gunzip + flat protobuf decode, all cores)",
                f"{fmt(flat, 0)} samples/s = {flat / floor:.2f}× the floor",
                "",
                "",
            )
        )
    # CPU one profile's prost decode takes (the floor's threads over its rate).
    decode_cpu_s = best["threads"] / best["decode_profiles_per_sec"]
    for proto in ("connect", "grpc", "ingest"):
        r = f.get(f"ingest_{proto}")
        if not r:
            continue
        ratio = r["samples_per_sec"] / floor
        name = "/ingest" if proto == "ingest" else proto
        rows.append(
            (
                f"ingest over {name}, {run['clients']} clients",
                f"{fmt(r['samples_per_sec'], 0)} samples/s = {ratio:.2f} of the floor",
                "≥ 0.50 of the floor",
                met(ratio >= 0.5),
            )
        )
        cpu = f.get(f"ingest_{proto}_server_cpu_s")
        if cpu and r.get("pushes_ok"):
            per_push = cpu / r["pushes_ok"]
            rows.append(
                (
                    f"ingester CPU per push over {name}",
                    f"{per_push * 1e3:.2f} ms = {per_push / decode_cpu_s:.2f} prost decodes",
                    "",
                    "",
                )
            )
        rows.append(
            (
                f"acknowledgement latency over {name}",
                f"p50 {fmt(r['p50_ms'], 0)} ms, p99 {fmt(r['p99_ms'], 0)} ms",
                "p99 ≤ 1,000 ms",
                met(r["p99_ms"] <= 1000),
            )
        )
    rss = f["ingester_rss_mib"]
    sustained = f.get("ingester_sustained_rss_mib")
    if sustained is None:
        # Runs before the split: one peak over the whole process life.
        rows.append(("ingester peak RSS under that load", f"{rss:,} MiB", "≤ 512 MiB", met(rss <= 512)))
    else:
        rows.append(
            (
                "ingester peak RSS under sustained load (after the warm-ups)",
                f"{sustained:,} MiB (whole life, cold start included: {rss:,} MiB)",
                "≤ 512 MiB",
                met(sustained <= 512),
            )
        )
    for hours, label in ((1, "1 h"), (24, "24 h"), (168, "7 d")):
        q = f[f"flame_{hours}h"]
        best = min(q["duckdb_s"], q["chdb_s"])
        ratio = q["stackdrift_s"] / best
        target, ok = "", ""
        if hours == 24:
            target, ok = "≤ 0.5× the faster peer", met(ratio <= 0.5)
        rows.append(
            (
                f"flame graph, {label} ({q['distinct_stacks']:,} stacks)",
                f"{q['stackdrift_s'] * 1000:.1f} ms; DuckDB {q['duckdb_s'] * 1000:.1f} ms, "
                f"chdb {q['chdb_s'] * 1000:.1f} ms → {ratio:.2f}× the faster",
                target,
                ok,
            )
        )
    week = f["flame_168h"]["stackdrift_s"] / f["flame_24h"]["stackdrift_s"]
    rows.append(("flame graph, 7 d vs 24 h", f"{week:.2f}×", "≤ 2×", met(week <= 2)))
    b = f["backfill"]
    samples = b["pprof_samples"]
    ours = f["storage"]["samples"] + f["storage"]["stacks"]
    gz = b["gzip_pprof_bytes"]
    ch = f["chdb_size"]["samples"] + f["chdb_size"]["stacks"]
    rows.append(
        (
            "storage per pprof sample (samples + stacks, compacted)",
            f"{ours / samples:.2f} B; gzipped pprof {gz / samples:.2f} B → {ours / gz:.3f}×",
            "≤ 0.25× gzipped pprof",
            met(ours / gz <= 0.25),
        )
    )
    rows.append(
        (
            "storage vs chdb MergeTree, same rows",
            f"{ours / 2**20:.1f} MiB vs {ch / 2**20:.1f} MiB → {ours / ch:.2f}×",
            "≤ 1× chdb",
            met(ours <= ch),
        )
    )
    rows.append(
        (
            "hourly rollups (extra, for flame graphs)",
            f"{f['storage']['rollups'] / 2**20:.1f} MiB ({f['storage']['rollups'] / samples:.2f} B per sample)",
            "",
            "",
        )
    )
    d = f["detector"]
    pct = d["cpu_per_1000_series_windows"] / 60 * 100
    rows.append(
        (
            f"detector CPU ({d['services']} series × {d['windows']} one-minute windows)",
            f"{d['cpu_per_1000_series_windows']:.2f} CPU-s per 1,000 series-windows = "
            f"{pct:.1f} % of a core for 1,000 series",
            "< 5 % of a core",
            met(pct < 5),
        )
    )
    c, dr = f["compaction"], f["detector_role"]
    rows.append(
        (
            "peak RSS per role",
            f"ingester {f['ingester_rss_mib']:,} MiB (backfill {f['backfill_ingester_rss_mib']:,}), "
            f"compactor {c['rss_mib']:,} MiB, querier {f['querier_rss_mib']:,} MiB, "
            f"detector {dr['rss_mib']:,} MiB",
            "",
            "",
        )
    )
    out = [
        f"{run['date']}, commit `{run['commit']}`, {run['machine']}; `scripts/bench.sh "
        f"{run['scale']}` ({run['seconds']} s after the build): {run['secs']} s ingest runs, "
        f"7 days of 10 s CPU profiles of one service with {run['stacks']:,} stacks each "
        f"({samples:,} pprof samples, compacted in {c['seconds']} s), median of {run['runs']} "
        f"timed runs per engine after a warm-up.",
        "",
        "| figure | measured | target | met? |",
        "|---|---|---|---|",
    ]
    out += [f"| {a} | {b_} | {t} | {m} |" for a, b_, t, m in rows]
    return "\n".join(out) + "\n"


def main():
    figures, md = sys.argv[1:3]
    f = json.load(open(figures))
    text = table(f)
    print()
    print(text)
    doc = open(md).read()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc = f"{head}{BEGIN}\n{text}{END}{tail}"
    else:
        doc = doc.rstrip("\n") + f"\n\n{BEGIN}\n{text}{END}\n"
    open(md, "w").write(doc)
    print(f"(written into {md})")


if __name__ == "__main__":
    main()
