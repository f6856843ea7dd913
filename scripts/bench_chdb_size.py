"""Bytes chdb's MergeTree takes for the same rows as stackdrift's `samples` and `stacks`.

Loads every row of the two Delta tables' live Parquet files (the ones their Delta logs
reference, see `delta_files.py`; the partition columns come from the Hive-style paths) into
two MergeTree tables of a chdb session under WORK_DIR, with the column types chdb infers
from the files (LowCardinality for the partition columns) and the default codec (LZ4), sorted as a ClickHouse user would for these queries: samples by
(tenant, service_name, profile_type, time, stack_id), stacks by (tenant, service_name,
stack_id). Merges each table into as few parts as it will (OPTIMIZE ... FINAL) and reports
the active parts' bytes on disk.

Usage: bench_chdb_size.py DATA_DIR WORK_DIR
Prints one JSON line: {"samples": bytes, "stacks": bytes, "rows": sample rows}.
"""

import json
import sys

from chdb import session

from delta_files import clickhouse_path


def main():
    data, work = sys.argv[1:3]
    s = session.Session(work)
    s.query("CREATE DATABASE IF NOT EXISTS bench")
    tables = {
        "samples": (
            f"file('{clickhouse_path(data + '/samples')}', Parquet)",
            "(tenant, service_name, profile_type, time, stack_id)",
        ),
        "stacks": (
            f"file('{clickhouse_path(data + '/stacks')}', Parquet)",
            "(tenant, service_name, stack_id)",
        ),
    }
    out = {}
    for name, (source, order) in tables.items():
        s.query(f"DROP TABLE IF EXISTS bench.{name}")
        s.query(
            f"CREATE TABLE bench.{name} ENGINE = MergeTree ORDER BY {order} "
            f"AS SELECT * FROM {source}"
        )
        s.query(f"OPTIMIZE TABLE bench.{name} FINAL")
        res = s.query(
            "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts "
            f"WHERE database = 'bench' AND table = '{name}' AND active",
            "CSV",
        )
        size, rows = (int(x) for x in str(res).strip().split(","))
        out[name] = size
        if name == "samples":
            out["rows"] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
