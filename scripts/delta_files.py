"""The live data files of a Delta table on a local directory, read from its `_delta_log`.

DuckDB and chdb have no Delta reader here (their Delta extensions are downloaded at run time),
so the benchmark scripts give them the file list the log holds instead of a glob: a glob would
also count files a compaction replaced and a vacuum has not deleted yet, or files an ingester
uploaded whose commit failed.

The state is the newest checkpoint (the version in `_last_checkpoint`, single-part or
multi-part Parquet) plus every JSON commit after it, applied in order: `add` puts a path in,
`remove` takes it out. Paths in the log are URL-encoded and relative to the table.

As a module: `active_files`, and the same list as DuckDB (`duckdb_list`) and ClickHouse
(`clickhouse_path`) want it.

Usage: delta_files.py TABLE_DIR [paths|bytes|count]
Prints the absolute paths, one per line (default), their total size in bytes, or their count.
"""

import glob
import json
import os
import sys
import urllib.parse


def active_files(table):
    """Absolute paths of the files the table's latest version references, sorted."""
    log = os.path.join(table, "_delta_log")
    live = set()
    after = -1
    last = os.path.join(log, "_last_checkpoint")
    if os.path.exists(last):
        with open(last) as f:
            after = json.load(f)["version"]
        import pyarrow.parquet as pq

        for part in sorted(glob.glob(os.path.join(log, "%020d.checkpoint*.parquet" % after))):
            for row in pq.read_table(part, columns=["add"]).column("add").to_pylist():
                if row:
                    live.add(row["path"])
    commits = []
    for path in glob.glob(os.path.join(log, "*.json")):
        name = os.path.basename(path).split(".")[0]
        if name.isdigit() and int(name) > after:
            commits.append((int(name), path))
    if after < 0 and not commits:
        raise SystemExit(f"{table}: no Delta log")
    for _, path in sorted(commits):
        with open(path) as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    live.add(action["add"]["path"])
                elif "remove" in action:
                    live.discard(action["remove"]["path"])
    return sorted(os.path.join(table, urllib.parse.unquote(p)) for p in live)


def duckdb_list(table):
    """The table's live files as a DuckDB list literal, for `read_parquet([...])`."""
    return "[" + ", ".join("'%s'" % p for p in active_files(table)) + "]"


def clickhouse_path(table):
    """A ClickHouse `file()` path naming exactly the table's live files: `TABLE/{a,b,...}`."""
    prefix = table.rstrip("/") + "/"
    return prefix + "{" + ",".join(p[len(prefix) :] for p in active_files(table)) + "}"


def main():
    table = sys.argv[1]
    what = sys.argv[2] if len(sys.argv) > 2 else "paths"
    files = active_files(table)
    if what == "bytes":
        print(sum(os.path.getsize(p) for p in files))
    elif what == "count":
        print(len(files))
    elif what == "paths":
        print("\n".join(files))
    else:
        raise SystemExit(f"unknown output {what!r}: paths, bytes or count")


if __name__ == "__main__":
    main()
