#!/usr/bin/env python3
"""Queries stackdrift over Arrow Flight SQL with the real ADBC driver (adbc-driver-flightsql).

Runs one SQL query as a statement and as a prepared statement, reads the catalog metadata,
tries a DDL statement both ways, and prints one JSON document with what it saw:

  {"statement": [rows], "prepared": [rows], "tables": [...], "table_types": [...],
   "samples_schema": [...], "info": {...},
   "ddl_error": "..." or null, "ddl_statement_error": "..." or null}

Rows are lists of dicts (column name -> value). The tenant goes in the x-scope-orgid call
header, set with the driver's rpc.call_header option.
"""

import argparse
import json
import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow
from adbc_driver_flightsql import DatabaseOptions


def run_statement(conn, sql):
    """Runs `sql` as a plain (unprepared) statement: GetFlightInfo(CommandStatementQuery),
    then DoGet on its ticket. (DB-API's cursor.execute always prepares first.)"""
    with adbc_driver_manager.AdbcStatement(conn.adbc_connection) as stmt:
        stmt.set_sql_query(sql)
        stream, _ = stmt.execute_query()
        return pyarrow.RecordBatchReader.from_stream(stream).read_all()


def error_of(f):
    """The error `f()` raises, as "Type: message", or None."""
    try:
        f()
    except Exception as e:  # noqa: BLE001 - any error is what we report
        return "%s: %s" % (type(e).__name__, e)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", required=True, help="grpc://HOST:PORT")
    parser.add_argument("--tenant", required=True, help="sent as x-scope-orgid")
    parser.add_argument("--sql", required=True, help="the query to run")
    parser.add_argument("--ddl", default="CREATE TABLE t AS SELECT 1", help="must be refused")
    args = parser.parse_args()

    header = DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "x-scope-orgid"
    out = {}
    with flightsql.connect(args.uri, db_kwargs={header: args.tenant}) as conn:
        out["statement"] = run_statement(conn, args.sql).to_pylist()

        # The same as a prepared statement: CreatePreparedStatement, then
        # GetFlightInfo(CommandPreparedStatementQuery) and DoGet.
        with conn.cursor() as cur:
            cur.adbc_prepare(args.sql)
            cur.execute(args.sql)
            out["prepared"] = cur.fetch_arrow_table().to_pylist()

        # Catalog metadata: GetCatalogs, GetDbSchemas, GetTables (with schemas).
        tables = []
        for catalog in conn.adbc_get_objects().read_all().to_pylist():
            for schema in catalog["catalog_db_schemas"] or []:
                for table in schema["db_schema_tables"] or []:
                    tables.append(
                        {
                            "catalog": catalog["catalog_name"],
                            "schema": schema["db_schema_name"],
                            "table": table["table_name"],
                            "type": table["table_type"],
                            "columns": [c["column_name"] for c in table["table_columns"] or []],
                        }
                    )
        out["tables"] = tables
        out["table_types"] = conn.adbc_get_table_types()
        schema = conn.adbc_get_table_schema("samples")
        out["samples_schema"] = [{"name": f.name, "type": str(f.type)} for f in schema]
        # GetSqlInfo.
        out["info"] = {str(k): v for k, v in conn.adbc_get_info().items()}

        # Writes are refused, prepared (as DB-API does) or not; report the driver's errors.
        def ddl_dbapi():
            with conn.cursor() as cur:
                cur.execute(args.ddl)
                cur.fetchall()

        out["ddl_error"] = error_of(ddl_dbapi)
        out["ddl_statement_error"] = error_of(lambda: run_statement(conn, args.ddl))

    json.dump(out, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
