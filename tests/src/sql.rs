//! Per-function totals through SQL over the `samples` and `stacks` tables.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;

/// Runs `sql` and returns the first column as strings and the second and third as `i64`.
pub async fn rows3(ctx: &SessionContext, sql: &str) -> Vec<(String, i64, i64)> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in batches {
        let names = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let names = names.as_string::<i32>();
        let a = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Int64).unwrap();
        let c = arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Int64).unwrap();
        let (a, c) = (a.as_primitive::<Int64Type>(), c.as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            out.push((
                names.value(i).to_owned(),
                if a.is_null(i) { 0 } else { a.value(i) },
                if c.is_null(i) { 0 } else { c.value(i) },
            ));
        }
    }
    out
}

/// The documented per-function totals query: aggregate samples by stack first, then join the
/// (deduplicated) stacks. Columns: `function`, `self_value`, `total_value`.
pub fn function_totals_sql(tenant: &str, service: &str, profile_type: &str) -> String {
    format!(
        "WITH w AS ( \
           SELECT tenant, service_name, stack_id, SUM(value) AS v FROM samples \
           WHERE tenant = '{tenant}' AND service_name = '{service}' \
             AND profile_type = '{profile_type}' \
           GROUP BY tenant, service_name, stack_id), \
         j AS (SELECT st.leaf, st.functions, w.v FROM w JOIN stacks st \
           ON st.tenant = w.tenant AND st.service_name = w.service_name \
              AND st.stack_id = w.stack_id), \
         s AS (SELECT leaf AS function, SUM(v) AS self FROM j GROUP BY leaf), \
         t AS (SELECT f AS function, SUM(v) AS total FROM \
                 (SELECT unnest(functions) AS f, v FROM j) GROUP BY f) \
         SELECT t.function AS function, COALESCE(s.self, 0) AS self_value, \
           t.total AS total_value FROM t LEFT JOIN s ON s.function = t.function"
    )
}

/// `function → (self, total)` for one tenant, service and profile type, with
/// [`function_totals_sql`].
pub async fn function_totals(
    ctx: &SessionContext,
    tenant: &str,
    service: &str,
    profile_type: &str,
) -> BTreeMap<String, (i64, i64)> {
    rows3(ctx, &function_totals_sql(tenant, service, profile_type))
        .await
        .into_iter()
        .map(|(f, s, t)| (f, (s, t)))
        .collect()
}

/// `function → (self, total)` from the JSON rows of [`function_totals_sql`] as the SQL API
/// answers them.
pub fn totals_from_json(rows: &serde_json::Value) -> BTreeMap<String, (i64, i64)> {
    rows.as_array()
        .unwrap_or_else(|| panic!("not an array of rows: {rows}"))
        .iter()
        .map(|r| {
            (
                r["function"].as_str().unwrap().to_owned(),
                (
                    r["self_value"].as_i64().unwrap(),
                    r["total_value"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}
