//! Reads what the detector tests from the tables: per series, window, version and stack the
//! summed weight, and the functions of each stack.

use std::sync::Arc;

use arrow::array::{Array, AsArray, ListArray, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::prelude::{Expr, SessionContext, cast, col, lit};
use stackdrift_storage::Store;

use crate::DetectorError;
use crate::series::SeriesKey;

/// One aggregated row: a stack's weight in one window of one series and version.
#[derive(Debug, Clone)]
pub struct Row {
    /// Series.
    pub key: SeriesKey,
    /// `version` label value.
    pub version: Option<String>,
    /// Window index (`time / window`).
    pub window: i64,
    /// Stack ID.
    pub stack: i64,
    /// Summed value.
    pub value: f64,
}

/// Reads windows from the `samples` and `stacks` tables.
#[derive(Debug)]
pub struct Source {
    store: Arc<Store>,
    window_us: i64,
    group_by: Vec<String>,
}

fn ts(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

/// Column `i` as a plain string array (tables may hand out dictionary or view strings).
fn strings(batch: &arrow::array::RecordBatch, i: usize) -> Result<StringArray, DetectorError> {
    as_strings(batch.column(i))
}

fn as_strings(a: &dyn Array) -> Result<StringArray, DetectorError> {
    let c = arrow::compute::cast(a, &DataType::Utf8)
        .map_err(|e| DetectorError::Internal(format!("string column: {e}")))?;
    c.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| DetectorError::Internal("string column".into()))
}

impl Source {
    /// A source reading `window_us` windows, grouping series by `group_by` labels.
    pub fn new(store: Arc<Store>, window_us: i64, group_by: Vec<String>) -> Self {
        Self {
            store,
            window_us,
            group_by,
        }
    }

    /// All rows of windows `from..to` (indexes), optionally for one series only.
    pub async fn windows(
        &self,
        from: i64,
        to: i64,
        only: Option<&SeriesKey>,
    ) -> Result<Vec<Row>, DetectorError> {
        let ctx = SessionContext::new();
        self.store.register(&ctx, None).await?;
        let df = ctx.table("samples").await?;
        let has = |name: &str| df.schema().field_with_unqualified_name(name).is_ok();
        let label = |name: &str, alias: String| -> Expr {
            if has(name) {
                col(name).alias(alias)
            } else {
                cast(lit(ScalarValue::Utf8(None)), DataType::Utf8).alias(alias)
            }
        };
        let mut filter = col("time")
            .gt_eq(ts(from * self.window_us))
            .and(col("time").lt(ts(to * self.window_us)));
        if let Some(k) = only {
            filter = filter
                .and(col("tenant").eq(lit(k.tenant.as_str())))
                .and(col("service_name").eq(lit(k.service.as_str())))
                .and(col("profile_type").eq(lit(k.profile_type.as_str())));
            for (name, value) in self.group_by.iter().zip(&k.groups) {
                filter = filter.and(match (has(name), value) {
                    (true, Some(v)) => col(name.as_str()).eq(lit(v.as_str())),
                    (true, None) => col(name.as_str()).is_null(),
                    (false, Some(_)) => lit(false),
                    (false, None) => lit(true),
                });
            }
        }
        let mut group = vec![col("tenant"), col("service_name"), col("profile_type")];
        for (i, g) in self.group_by.iter().enumerate() {
            group.push(label(g, format!("g{i}")));
        }
        group.push(label("version", "version".into()));
        group.push((cast(col("time"), DataType::Int64) / lit(self.window_us)).alias("w"));
        group.push(col("stack_id"));
        let df = df.filter(filter)?.aggregate(
            group,
            vec![cast(sum(col("value")), DataType::Float64).alias("v")],
        )?;
        let n = self.group_by.len();
        let mut rows = Vec::new();
        for batch in df.collect().await? {
            let tenant = strings(&batch, 0)?;
            let service = strings(&batch, 1)?;
            let pt = strings(&batch, 2)?;
            let groups: Vec<StringArray> = (0..n)
                .map(|i| strings(&batch, 3 + i))
                .collect::<Result<_, _>>()?;
            let version = strings(&batch, 3 + n)?;
            let w = batch.column(4 + n).as_primitive::<Int64Type>();
            let stack = batch.column(5 + n).as_primitive::<Int64Type>();
            let v = batch.column(6 + n).as_primitive::<Float64Type>();
            for r in 0..batch.num_rows() {
                let opt = |a: &StringArray| (!a.is_null(r)).then(|| a.value(r).to_owned());
                rows.push(Row {
                    key: SeriesKey {
                        tenant: tenant.value(r).to_owned(),
                        service: service.value(r).to_owned(),
                        profile_type: pt.value(r).to_owned(),
                        groups: groups.iter().map(&opt).collect(),
                    },
                    version: opt(&version),
                    window: w.value(r),
                    stack: stack.value(r),
                    value: v.value(r),
                });
            }
        }
        Ok(rows)
    }

    /// Every stack of one service: ID and distinct functions, leaf first.
    pub async fn stacks(
        &self,
        tenant: &str,
        service: &str,
    ) -> Result<Vec<(i64, Vec<String>)>, DetectorError> {
        let ctx = SessionContext::new();
        self.store.register(&ctx, None).await?;
        let df = ctx
            .table("stacks_raw")
            .await?
            .filter(
                col("tenant")
                    .eq(lit(tenant))
                    .and(col("service_name").eq(lit(service))),
            )?
            .select_columns(&["stack_id", "functions"])?;
        let mut out = Vec::new();
        for batch in df.collect().await? {
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let lists = batch
                .column(1)
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| DetectorError::Internal("functions is not a list".into()))?;
            for r in 0..batch.num_rows() {
                let values = lists.value(r);
                let names = as_strings(values.as_ref())?;
                out.push((
                    ids.value(r),
                    names.iter().flatten().map(str::to_owned).collect(),
                ));
            }
        }
        Ok(out)
    }
}
