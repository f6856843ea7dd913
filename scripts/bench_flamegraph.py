"""Times one merged flame graph three ways over the same Parquet files, for BENCHMARKS.md.

stackdrift answers `querier.v1.QuerierService/SelectMergeStacktraces` (Connect, protobuf: sum
per stack, join the stacks' frames, build the tree, level-encode it). DuckDB and chdb run the
equivalent aggregation over the same files of the Delta tables (sum of `value` per `stack_id`
in the range, joined with each stack's frames) and return it as Arrow, without building a tree.
They read the files the Delta log references (`delta_files.py`), as stackdrift does, not a glob
of the table directory. Every engine's total weight must agree, or the script fails.

Usage: bench_flamegraph.py URL DATA_DIR PROFILE_TYPE SERVICE START_MS END_MS [RUNS]
Prints one JSON line: median seconds per engine and the totals.
"""

import json
import statistics
import sys
import time
import urllib.request

import chdb
import duckdb

from delta_files import clickhouse_path, duckdb_list


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_int(num, value):
    return varint(num << 3) + varint(value)


def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i


def fields(buf):
    """Top-level (field number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            ln, i = read_varint(buf, i)
            v, i = buf[i : i + ln], i + ln
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def stackdrift(url, ptype, service, start, end):
    body = (
        field_bytes(1, ptype.encode())
        + field_bytes(2, ('{service_name="%s"}' % service).encode())
        + field_int(3, start)
        + field_int(4, end)
        + field_int(5, 16384)
        + field_int(6, 1)
    )
    req = urllib.request.Request(
        url + "/querier.v1.QuerierService/SelectMergeStacktraces",
        data=body,
        headers={"content-type": "application/proto"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        data = resp.read()
    for num, _, v in fields(data):
        if num == 1:  # flamegraph
            for n2, _, v2 in fields(v):
                if n2 == 3:  # total
                    return v2
    return 0


def duck_query(data, ptype, service, start, end):
    return f"""
        WITH w AS (
            SELECT stack_id, sum(value) AS weight
            FROM read_parquet({duckdb_list(data + '/samples')}, hive_partitioning = true)
            WHERE service_name = '{service}' AND profile_type = '{ptype}'
              AND time BETWEEN to_timestamp({start} / 1000.0) AND to_timestamp({end} / 1000.0)
            GROUP BY stack_id),
        s AS (
            SELECT stack_id, any_value(frames) AS frames
            FROM read_parquet({duckdb_list(data + '/stacks')}, hive_partitioning = true)
            WHERE service_name = '{service}'
            GROUP BY stack_id)
        SELECT w.weight, s.frames FROM w JOIN s USING (stack_id)"""


def chdb_query(data, ptype, service, start, end):
    return f"""
        WITH w AS (
            SELECT stack_id, sum(value) AS weight
            FROM file('{clickhouse_path(data + '/samples')}', Parquet)
            WHERE _path LIKE '%/service_name={service}/%' AND profile_type = '{ptype}'
              AND time BETWEEN fromUnixTimestamp64Milli(toInt64({start}))
                           AND fromUnixTimestamp64Milli(toInt64({end}))
            GROUP BY stack_id),
        s AS (
            SELECT stack_id, any(frames) AS frames
            FROM file('{clickhouse_path(data + '/stacks')}', Parquet)
            WHERE _path LIKE '%/service_name={service}/%'
            GROUP BY stack_id)
        SELECT w.weight, s.frames FROM w INNER JOIN s ON w.stack_id = s.stack_id"""


def timed(fn, runs):
    fn()  # warm-up: file cache, plan caches
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main():
    url, data, ptype, service, start, end = sys.argv[1:7]
    start, end = int(start), int(end)
    runs = int(sys.argv[7]) if len(sys.argv) > 7 else 5

    sd_secs, sd_total = timed(lambda: stackdrift(url, ptype, service, start, end), runs)

    con = duckdb.connect()
    dq = duck_query(data, ptype, service, start, end)
    duck_secs, duck_table = timed(lambda: con.execute(dq).to_arrow_table(), runs)
    if hasattr(duck_table, "read_all"):
        duck_table = duck_table.read_all()
    duck_total = sum(duck_table.column("weight").to_pylist())

    cq = chdb_query(data, ptype, service, start, end)
    import pyarrow as pa

    def run_chdb():
        res = chdb.query(cq, "ArrowStream")
        return res

    ch_secs, ch_res = timed(run_chdb, runs)
    ch_table = pa.ipc.open_stream(ch_res.bytes()).read_all()
    ch_total = sum(ch_table.column("weight").to_pylist())

    stacks = duck_table.num_rows
    if not (sd_total == duck_total == ch_total):
        sys.exit(
            "totals disagree: stackdrift %d, duckdb %d, chdb %d" % (sd_total, duck_total, ch_total)
        )
    print(
        json.dumps(
            {
                "stackdrift_s": round(sd_secs, 4),
                "duckdb_s": round(duck_secs, 4),
                "chdb_s": round(ch_secs, 4),
                "total": sd_total,
                "distinct_stacks": stacks,
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
