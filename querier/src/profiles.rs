//! The profile queries behind Grafana's Pyroscope datasource (and the exports): profile types,
//! label names and values, series, merged flame graphs, merged pprof, time series and diffs.
//!
//! ```text
//!  selector + type + range ─▶ samples (pruned by day, service, type) ─▶ SUM(value) per
//!  (service_name, stack_id) ─▶ join stacks (each distinct stack once) ─▶ FlameTree / pprof
//! ```
//!
//! Every query runs in a tenant-scoped session (the same views as the SQL API) under the
//! querier's timeout and memory limit. Times are Unix milliseconds, both ends inclusive; an
//! `end` of 0 means "no upper bound".

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, ListArray, StringArray, StructArray};
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, sum};
use datafusion::logical_expr::{Expr, JoinType, cast};
use datafusion::prelude::{DataFrame, SessionContext, col, ident, lit};
use futures::StreamExt;
use stackdrift_model::labels::{METRIC_NAME, PROFILE_TYPE, SERVICE_NAME};
use stackdrift_model::stack::Frame;
use stackdrift_model::{PprofBuilder, ProfileType};
use stackdrift_proto::pprof::Profile;
use stackdrift_proto::types::v1 as types;

use crate::error::QueryError;
use crate::flamegraph::FlameTree;
use crate::query::Querier;
use crate::rollup::{self, RollupPlan};
use crate::selector::{self, MatchOp, NOT_LABELS, Selector};

/// A time range in Unix milliseconds, both ends inclusive; `end == 0` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms (0: unbounded).
    pub end_ms: i64,
}

impl TimeRange {
    /// A range; fails when `end < start` (and `end` is set).
    pub fn new(start_ms: i64, end_ms: i64) -> Result<Self, QueryError> {
        if end_ms != 0 && end_ms < start_ms {
            return Err(QueryError::BadRequest(format!(
                "end ({end_ms}) is before start ({start_ms})"
            )));
        }
        Ok(Self { start_ms, end_ms })
    }

    /// The filter on `time`, plus the same bounds on the `day` partition column so that
    /// partitions outside the range are never listed.
    fn filter(&self) -> Expr {
        let ts = |ms: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(ms.saturating_mul(1000)),
                Some("UTC".into()),
            ))
        };
        let day = |ms: i64| {
            lit(ScalarValue::Date32(Some(
                stackdrift_storage::schema::day_of(ms.saturating_mul(1000)),
            )))
        };
        let mut e = col("time")
            .gt_eq(ts(self.start_ms))
            .and(col("day").gt_eq(day(self.start_ms)));
        if self.end_ms != 0 {
            e = e
                .and(col("time").lt_eq(ts(self.end_ms)))
                .and(col("day").lt_eq(day(self.end_ms)));
        }
        e
    }
}

/// What to select: a profile type (optional for label queries), a selector and a range.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Profile type ID, e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
    pub profile_type: Option<String>,
    /// Label matchers (all must hold).
    pub selectors: Vec<Selector>,
    /// Time range.
    pub range: TimeRange,
}

impl Selection {
    /// Parses the pieces of a request.
    pub fn parse(
        profile_type: Option<&str>,
        selectors: &[&str],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Self, QueryError> {
        let profile_type = match profile_type {
            Some(t) if !t.is_empty() => {
                t.parse::<ProfileType>()
                    .map_err(|e| QueryError::BadRequest(format!("profile type {t:?}: {e}")))?;
                Some(t.to_owned())
            }
            _ => None,
        };
        let selectors = selectors
            .iter()
            .map(|s| {
                s.parse::<Selector>()
                    .map_err(|e| QueryError::BadRequest(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            profile_type,
            selectors,
            range: TimeRange::new(start_ms, end_ms)?,
        })
    }

    /// The selected rows of `samples`. Several selectors (LabelNames' `matchers`) are ORed,
    /// as Prometheus does; the matchers within one selector are ANDed.
    /// The one service the selection is about, when its only matchers are `service_name = …`
    /// (what hourly rollups, which keep no other label, can answer).
    fn only_service(&self) -> Option<&str> {
        let [selector] = self.selectors.as_slice() else {
            return None;
        };
        let service = selector.equal_value(SERVICE_NAME)?;
        selector
            .matchers
            .iter()
            .all(|m| m.name == SERVICE_NAME && m.op == MatchOp::Equal && m.value == service)
            .then_some(service)
    }

    async fn samples(&self, ctx: &SessionContext) -> Result<DataFrame, QueryError> {
        let df = ctx.table("samples").await.map_err(df_err)?;
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let mut filter = self.range.filter();
        if let Some(t) = &self.profile_type {
            filter = filter.and(col("profile_type").eq(lit(t.as_str())));
        }
        let mut any: Option<Expr> = None;
        for s in &self.selectors {
            let e = s.to_expr(&columns).unwrap_or_else(|| lit(true));
            any = Some(match any {
                Some(a) => a.or(e),
                None => e,
            });
        }
        if let Some(e) = any {
            filter = filter.and(e);
        }
        df.filter(filter).map_err(df_err)
    }
}

/// A DataFusion error; [`Querier::limited`] fills in the memory limit of a memory error.
fn df_err(e: datafusion::error::DataFusionError) -> QueryError {
    QueryError::from_datafusion(e, 0)
}

/// Label columns of a `samples` frame (`service_name` included).
fn label_columns(df: &DataFrame) -> Vec<String> {
    df.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !NOT_LABELS.contains(&n.as_str()))
        .collect()
}

/// The expression that yields label `name`'s value for a row (`None`: no such label).
fn label_expr(name: &str, labels: &[String]) -> Option<Expr> {
    let mut columns: Vec<&str> = labels.iter().map(String::as_str).collect();
    columns.push("profile_type");
    selector::label_expr(name, &columns)
}

/// Runs `df` to completion, one batch at a time, inside the query limits.
async fn for_each_batch(
    df: DataFrame,
    mut f: impl FnMut(&RecordBatch) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    let mut stream = df.execute_stream().await.map_err(df_err)?;
    while let Some(batch) = stream.next().await {
        f(&batch.map_err(df_err)?)?;
    }
    Ok(())
}

fn strings(batch: &RecordBatch, i: usize) -> Result<StringArray, QueryError> {
    let a = arrow::compute::cast(batch.column(i), &DataType::Utf8)
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    Ok(a.as_string::<i32>().clone())
}

fn int64s(batch: &RecordBatch, i: usize) -> Result<Int64Array, QueryError> {
    let a = arrow::compute::cast(batch.column(i), &DataType::Int64)
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    Ok(a.as_primitive::<Int64Type>().clone())
}

/// Profile types with data in the range.
pub async fn profile_types(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
) -> Result<Vec<types::ProfileType>, QueryError> {
    q.limited(async {
        let ctx = q.session(tenant).await?;
        let df = sel
            .samples(&ctx)
            .await?
            .aggregate(vec![col("profile_type")], vec![])
            .map_err(df_err)?;
        let mut ids = BTreeSet::new();
        for_each_batch(df, |b| {
            let a = strings(b, 0)?;
            ids.extend(a.iter().flatten().map(str::to_owned));
            Ok(())
        })
        .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let pt: ProfileType = id.parse().ok()?;
                Some(types::ProfileType {
                    id,
                    name: pt.name,
                    sample_type: pt.sample_type,
                    sample_unit: pt.sample_unit,
                    period_type: pt.period_type,
                    period_unit: pt.period_unit,
                })
            })
            .collect())
    })
    .await
}

/// Label names with at least one value in the selection, sorted; `service_name`,
/// `__name__` and `__profile_type__` are always there when any row is.
pub async fn label_names(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
) -> Result<Vec<String>, QueryError> {
    q.limited(async {
        let ctx = q.session(tenant).await?;
        let df = sel.samples(&ctx).await?;
        let labels = label_columns(&df);
        let mut aggs = vec![count(lit(1)).alias("__rows")];
        aggs.extend(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| count(ident(l)).alias(format!("c{i}"))),
        );
        let df = df.aggregate(vec![], aggs).map_err(df_err)?;
        let mut names = BTreeSet::new();
        for_each_batch(df, |b| {
            if b.num_rows() == 0 || int64s(b, 0)?.value(0) == 0 {
                return Ok(());
            }
            for k in [SERVICE_NAME, METRIC_NAME, PROFILE_TYPE] {
                names.insert(k.to_owned());
            }
            for (i, l) in labels.iter().enumerate() {
                if int64s(b, i + 1)?.value(0) > 0 {
                    names.insert(l.clone());
                }
            }
            Ok(())
        })
        .await?;
        Ok(names.into_iter().collect())
    })
    .await
}

/// Distinct non-empty values of label `name` in the selection, sorted.
pub async fn label_values(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
    name: &str,
) -> Result<Vec<String>, QueryError> {
    if name.is_empty() {
        return Err(QueryError::BadRequest("label name is empty".into()));
    }
    q.limited(async {
        let ctx = q.session(tenant).await?;
        let df = sel.samples(&ctx).await?;
        let labels = label_columns(&df);
        let Some(e) = label_expr(name, &labels) else {
            return Ok(vec![]);
        };
        let df = df.aggregate(vec![e.alias("v")], vec![]).map_err(df_err)?;
        let mut values = BTreeSet::new();
        for_each_batch(df, |b| {
            let a = strings(b, 0)?;
            values.extend(
                a.iter()
                    .flatten()
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
            );
            Ok(())
        })
        .await?;
        Ok(values.into_iter().collect())
    })
    .await
}

/// Distinct label sets in the selection (restricted to `names` when given), each with
/// `service_name`, `__name__` and `__profile_type__`.
pub async fn series(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
    names: &[String],
) -> Result<Vec<types::Labels>, QueryError> {
    q.limited(async {
        let ctx = q.session(tenant).await?;
        let df = sel.samples(&ctx).await?;
        let labels = label_columns(&df);
        let wanted: Vec<String> = if names.is_empty() {
            let mut all = vec![
                METRIC_NAME.to_owned(),
                PROFILE_TYPE.to_owned(),
                SERVICE_NAME.to_owned(),
            ];
            all.extend(labels.iter().filter(|l| *l != SERVICE_NAME).cloned());
            all
        } else {
            names.to_vec()
        };
        let present: Vec<(String, Expr)> = wanted
            .iter()
            .filter_map(|n| Some((n.clone(), label_expr(n, &labels)?)))
            .collect();
        if present.is_empty() {
            return Ok(vec![]);
        }
        let group: Vec<Expr> = present
            .iter()
            .enumerate()
            .map(|(i, (_, e))| e.clone().alias(format!("g{i}")))
            .collect();
        let df = df.aggregate(group, vec![]).map_err(df_err)?;
        let mut sets: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
        for_each_batch(df, |b| {
            let cols: Vec<StringArray> = (0..present.len())
                .map(|i| strings(b, i))
                .collect::<Result<_, _>>()?;
            for row in 0..b.num_rows() {
                let mut set: Vec<(String, String)> = Vec::new();
                for (i, (n, _)) in present.iter().enumerate() {
                    if cols[i].is_valid(row) && !cols[i].value(row).is_empty() {
                        set.push((n.clone(), cols[i].value(row).to_owned()));
                    }
                }
                set.sort();
                sets.insert(set);
            }
            Ok(())
        })
        .await?;
        Ok(sets
            .into_iter()
            .map(|set| types::Labels {
                labels: set
                    .into_iter()
                    .map(|(name, value)| types::LabelPair { name, value })
                    .collect(),
            })
            .collect())
    })
    .await
}

/// Sums of `value` per stack in the selection: columns `service_name` (only when
/// `per_service`; otherwise the caller knows the selection is one service), `stack_id`,
/// `weight`.
async fn stack_weights(
    ctx: &SessionContext,
    sel: &Selection,
    rollup: Option<&RollupPlan>,
    per_service: bool,
) -> Result<DataFrame, QueryError> {
    let Some(profile_type) = sel.profile_type.as_deref() else {
        return Err(QueryError::BadRequest("profile_typeID is required".into()));
    };
    let raw = sel.samples(ctx).await?;
    // Grouping by the stack ID alone (an integer) is several times cheaper than by
    // (service, stack ID).
    let keys = || {
        if per_service {
            vec![col("service_name"), col("stack_id")]
        } else {
            vec![col("stack_id")]
        }
    };
    let by_stack = |df: DataFrame, value: &str| {
        df.aggregate(keys(), vec![sum(col(value)).alias("weight")])
            .map_err(df_err)
    };
    let weights = match (rollup, sel.only_service()) {
        (Some(plan), Some(service)) => {
            // Whole hours from the rollups, the rest from the raw rows.
            let at = |us: i64| {
                lit(ScalarValue::TimestampMicrosecond(
                    Some(us),
                    Some("UTC".into()),
                ))
            };
            let day = |us: i64| {
                lit(ScalarValue::Date32(Some(
                    stackdrift_storage::schema::day_of(us),
                )))
            };
            // The raw rows outside the rollup hours, one plain range scan per gap (a range
            // with holes as one OR filter would not let files and row groups be skipped).
            let mut parts: Vec<DataFrame> = Vec::new();
            for (a, b) in gaps(&plan.intervals) {
                let mut keep = Vec::new();
                if let Some(a) = a {
                    keep.push(col("time").gt_eq(at(a)));
                    keep.push(col("day").gt_eq(day(a)));
                }
                if let Some(b) = b {
                    keep.push(col("time").lt(at(b)));
                    keep.push(col("day").lt_eq(day(b - 1)));
                }
                let filter = keep.into_iter().reduce(Expr::and).unwrap_or(lit(true));
                parts.push(by_stack(
                    raw.clone().filter(filter).map_err(df_err)?,
                    "value",
                )?);
            }
            let mut in_hours: Option<Expr> = None;
            for &(a, b) in &plan.intervals {
                let e = col("hour").gt_eq(at(a)).and(col("hour").lt(at(b)));
                in_hours = Some(match in_hours {
                    Some(x) => x.or(e),
                    None => e,
                });
            }
            let first = plan.intervals.first().map_or(0, |i| i.0);
            let last = plan.intervals.last().map_or(0, |i| i.1 - 1);
            let ids: Vec<Expr> = plan.ids.iter().map(|id| lit(id.as_str())).collect();
            let rolled = ctx
                .table("_rollups")
                .await
                .map_err(df_err)?
                .filter(
                    col("service_name")
                        .eq(lit(service))
                        .and(col("day").gt_eq(day(first)))
                        .and(col("day").lt_eq(day(last)))
                        .and(col("profile_type").eq(lit(profile_type)))
                        .and(col("rollup_id").in_list(ids, false))
                        .and(in_hours.unwrap_or(lit(false))),
                )
                .map_err(df_err)?;
            let mut all = by_stack(rolled, "value")?;
            for part in parts {
                all = all.union(part).map_err(df_err)?;
            }
            by_stack(all, "weight")?
        }
        _ => by_stack(raw, "value")?,
    };
    Ok(weights)
}

/// Sums of `value` per distinct stack in the selection, joined with each stack's frames.
async fn merged_stacks(
    ctx: &SessionContext,
    sel: &Selection,
    rollup: Option<&RollupPlan>,
) -> Result<DataFrame, QueryError> {
    let weights = stack_weights(ctx, sel, rollup, true).await?;
    // `stacks_raw`, not the deduplicated view: copies of a stack (two ingesters writing it at
    // once) are skipped while reading the join, which costs less than a DISTINCT over frames.
    let mut stacks = ctx.table("stacks_raw").await.map_err(df_err)?;
    // When the selector pins one service, only its stacks are read.
    if let Some(svc) = sel
        .selectors
        .iter()
        .map(|s| s.equal_value(SERVICE_NAME))
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty() && v.iter().all(|x| *x == v[0]))
        .map(|v| v[0].to_owned())
    {
        stacks = stacks
            .filter(col("service_name").eq(lit(svc)))
            .map_err(df_err)?;
    }
    let stacks = stacks
        .select(vec![
            col("service_name").alias("st_service"),
            col("stack_id").alias("st_id"),
            col("frames"),
        ])
        .map_err(df_err)?;
    weights
        .join(
            stacks,
            JoinType::Inner,
            &["service_name", "stack_id"],
            &["st_service", "st_id"],
            None,
        )
        .map_err(df_err)?
        .select(vec![
            col("weight"),
            col("frames"),
            col("st_service"),
            col("st_id"),
        ])
        .map_err(df_err)
}

/// Calls `f(frames, weight)` for each merged stack; `frames` is the stack's frame struct
/// array (leaf first).
async fn for_each_stack(
    ctx: &SessionContext,
    sel: &Selection,
    rollup: Option<&RollupPlan>,
    mut f: impl FnMut(&StructArray, i64),
) -> Result<(), QueryError> {
    let df = merged_stacks(ctx, sel, rollup).await?;
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    for_each_batch(df, |b| {
        let weights = int64s(b, 0)?;
        let services = strings(b, 2)?;
        let ids = int64s(b, 3)?;
        // Parquet strings may come back as views: one cast per batch to plain strings.
        let frames = arrow::compute::cast(b.column(1), &frames_type())
            .map_err(|e| QueryError::Internal(format!("frames: {e}")))?;
        let frames = frames
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| QueryError::Internal("frames is not a list".into()))?;
        for row in 0..b.num_rows() {
            if weights.is_null(row) || frames.is_null(row) {
                continue;
            }
            if !seen.insert((services.value(row).to_owned(), ids.value(row))) {
                continue; // another copy of a stack already counted
            }
            let list = frames.value(row);
            let Some(st) = list.as_any().downcast_ref::<StructArray>() else {
                return Err(QueryError::Internal("a frame is not a struct".into()));
            };
            f(st, weights.value(row));
        }
        Ok(())
    })
    .await
}

/// The `frames` column's type with plain (not view) strings.
fn frames_type() -> DataType {
    DataType::List(Arc::new(arrow::datatypes::Field::new(
        "element",
        DataType::Struct(stackdrift_storage::schema::frame_fields()),
        true,
    )))
}

fn functions_of(frames: &StructArray) -> Option<&StringArray> {
    frames.column_by_name("function")?.as_string_opt::<i32>()
}

/// The merged flame graph tree of the selection.
pub async fn flame_tree(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
) -> Result<FlameTree, QueryError> {
    q.limited(async {
        let started = std::time::Instant::now();
        let (ctx, plan) = rollup_session(q, tenant, sel).await?;
        let session = started.elapsed();
        let cached = match sel.only_service() {
            Some(service) => cached_tree(q, &ctx, tenant, service, sel, plan.as_ref()).await?,
            None => None,
        };
        let tree = match cached {
            Some(tree) => Ok(tree),
            None => tree_of(&ctx, sel, plan.as_ref()).await,
        };
        tracing::debug!(
            session_ms = session.as_secs_f64() * 1e3,
            merge_ms = (started.elapsed() - session).as_secs_f64() * 1e3,
            rollup_hours = plan.as_ref().map_or(0, RollupPlan::hours),
            "flame graph merged"
        );
        tree
    })
    .await
}

/// The gaps around and between sorted, disjoint intervals: `(None, first start)`, the holes,
/// `(last end, None)` (`None`: unbounded). The selection's own range bounds the gaps further.
fn gaps(intervals: &[(i64, i64)]) -> Vec<(Option<i64>, Option<i64>)> {
    let mut out = Vec::with_capacity(intervals.len() + 1);
    let mut from = None;
    for &(a, b) in intervals {
        out.push((from, Some(a)));
        from = Some(b);
    }
    out.push((from, None));
    out
}

/// A session for `sel`, and the hours it can read from rollups (counted in the metrics).
async fn rollup_session(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
) -> Result<(SessionContext, Option<RollupPlan>), QueryError> {
    let Some(service) = sel.only_service() else {
        return Ok((q.session(tenant).await?, None));
    };
    let (ctx, files) = q.session_with_files(tenant).await?;
    let start_us = sel.range.start_ms.saturating_mul(1000);
    let end_us = (sel.range.end_ms != 0).then(|| sel.range.end_ms.saturating_mul(1000));
    let plan = rollup::plan(&files, tenant, service, start_us, end_us);
    if let Some(p) = &plan {
        q.rollup_hours(p.hours());
    }
    Ok((ctx, plan))
}

/// The flame graph of one service from its stack weights and the querier's frame cache (no
/// join with `stacks`). `None` when the cache cannot hold the service.
async fn cached_tree(
    q: &Querier,
    ctx: &SessionContext,
    tenant: &str,
    service: &str,
    sel: &Selection,
    rollup: Option<&RollupPlan>,
) -> Result<Option<FlameTree>, QueryError> {
    // Weights first: the stacks table is read after, so it holds every stack they name
    // (ingesters commit a push's new stacks before its samples).
    let started = std::time::Instant::now();
    let batches = stack_weights(ctx, sel, rollup, false)
        .await?
        .collect()
        .await
        .map_err(df_err)?;
    let weighed = started.elapsed();
    let stacks = match q.service_stacks(tenant, service).await {
        Ok(Some(stacks)) => stacks,
        Ok(None) => return Ok(None),
        Err(e) => {
            // E.g. a stacks file vacuumed after it was listed: the join still works.
            tracing::warn!(error = %e, service, "frame cache not updated, joining stacks");
            return Ok(None);
        }
    };
    let looked_up = started.elapsed();
    let mut tree = FlameTree::new();
    let mut missing = 0usize;
    for b in &batches {
        let ids = int64s(b, 0)?;
        let weights = int64s(b, 1)?;
        for row in 0..b.num_rows() {
            if weights.is_null(row) {
                continue;
            }
            match stacks.functions(ids.value(row)) {
                Some(functions) => tree.add(functions, weights.value(row)),
                None => missing += 1,
            }
        }
    }
    tracing::debug!(
        weights_ms = weighed.as_secs_f64() * 1e3,
        stacks_ms = (looked_up - weighed).as_secs_f64() * 1e3,
        tree_ms = (started.elapsed() - looked_up).as_secs_f64() * 1e3,
        stacks = stacks.len(),
        // As the join would, samples whose stack is not in `stacks` are left out.
        missing,
        "flame graph from cached frames"
    );
    Ok(Some(tree))
}

/// [`flame_tree`] in an existing (tenant-scoped) session, e.g. from a SQL table function.
pub async fn flame_tree_in(ctx: &SessionContext, sel: &Selection) -> Result<FlameTree, QueryError> {
    tree_of(ctx, sel, None).await
}

async fn tree_of(
    ctx: &SessionContext,
    sel: &Selection,
    rollup: Option<&RollupPlan>,
) -> Result<FlameTree, QueryError> {
    let mut tree = FlameTree::new();
    let mut bad = false;
    for_each_stack(ctx, sel, rollup, |frames, weight| {
        match functions_of(frames) {
            Some(names) => tree.add(names.iter().map(|n| n.unwrap_or("")), weight),
            None => bad = true,
        }
    })
    .await?;
    if bad {
        return Err(QueryError::Internal("frames lack function names".into()));
    }
    Ok(tree)
}

/// The selection merged into one pprof profile (frames with files and lines).
pub async fn merged_pprof(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
) -> Result<Profile, QueryError> {
    let pt: ProfileType = sel
        .profile_type
        .as_deref()
        .ok_or_else(|| QueryError::BadRequest("profile_typeID is required".into()))?
        .parse()
        .map_err(|e| QueryError::BadRequest(format!("profile type: {e}")))?;
    q.limited(async {
        let (ctx, plan) = rollup_session(q, tenant, sel).await?;
        let mut b = PprofBuilder::new(
            &[(&pt.sample_type, &pt.sample_unit)],
            (&pt.period_type, &pt.period_unit),
            0,
        );
        let mut bad = false;
        let mut buf: Vec<Frame> = Vec::new();
        for_each_stack(&ctx, sel, plan.as_ref(), |frames, weight| {
            let (Some(names), Some(files), Some(lines)) = (
                functions_of(frames),
                frames
                    .column_by_name("file")
                    .and_then(|c| c.as_string_opt::<i32>()),
                frames
                    .column_by_name("line")
                    .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            ) else {
                bad = true;
                return;
            };
            buf.clear();
            for i in 0..frames.len() {
                buf.push(Frame {
                    function: names.value(i).into(),
                    file: files.value(i).into(),
                    line: lines.value(i),
                });
            }
            b.sample(&buf, &[weight], &[]);
        })
        .await?;
        if bad {
            return Err(QueryError::Internal(
                "frames lack function, file or line".into(),
            ));
        }
        let mut p = b.build();
        p.time_nanos = sel.range.start_ms.saturating_mul(1_000_000);
        if sel.range.end_ms != 0 {
            p.duration_nanos = (sel.range.end_ms - sel.range.start_ms).saturating_mul(1_000_000);
        }
        Ok(p)
    })
    .await
}

/// How points of a series are aggregated within a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Sum of the values in the step.
    Sum,
    /// Sum divided by the number of profiles (distinct timestamps) in the step.
    Average,
}

/// Time series of the selection's total value per `step_secs`, one per distinct value of
/// the `group_by` labels, largest total first, at most `limit` (0: all).
pub async fn select_series(
    q: &Querier,
    tenant: &str,
    sel: &Selection,
    group_by: &[String],
    step_secs: f64,
    aggregation: Aggregation,
    limit: usize,
) -> Result<Vec<types::Series>, QueryError> {
    if sel.profile_type.is_none() {
        return Err(QueryError::BadRequest("profile_typeID is required".into()));
    }
    if !step_secs.is_finite() || step_secs <= 0.0 {
        return Err(QueryError::BadRequest(format!(
            "step must be a positive number of seconds, got {step_secs}"
        )));
    }
    let step_us = ((step_secs * 1e6).round() as i64).max(1000);
    q.limited(async {
        let ctx = q.session(tenant).await?;
        let df = sel.samples(&ctx).await?;
        let labels = label_columns(&df);
        let groups: Vec<(String, Expr)> = group_by
            .iter()
            .filter_map(|n| Some((n.clone(), label_expr(n, &labels)?)))
            .collect();
        let bucket = (cast(col("time"), DataType::Int64) / lit(step_us)) * lit(step_us);
        let mut keys = vec![bucket.alias("bucket")];
        keys.extend(
            groups
                .iter()
                .enumerate()
                .map(|(i, (_, e))| e.clone().alias(format!("g{i}"))),
        );
        let df = df
            .aggregate(
                keys,
                vec![
                    sum(col("value")).alias("total"),
                    count_distinct(col("time")).alias("profiles"),
                ],
            )
            .map_err(df_err)?;
        // group label values → bucket (ms) → value
        let mut out: BTreeMap<Vec<(String, String)>, BTreeMap<i64, f64>> = BTreeMap::new();
        for_each_batch(df, |b| {
            let buckets = int64s(b, 0)?;
            let cols: Vec<StringArray> = (0..groups.len())
                .map(|i| strings(b, i + 1))
                .collect::<Result<_, _>>()?;
            let totals = int64s(b, groups.len() + 1)?;
            let profiles = int64s(b, groups.len() + 2)?;
            for row in 0..b.num_rows() {
                let key: Vec<(String, String)> = groups
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| cols[*i].is_valid(row) && !cols[*i].value(row).is_empty())
                    .map(|(i, (n, _))| (n.clone(), cols[i].value(row).to_owned()))
                    .collect();
                let total = totals.value(row) as f64;
                let v = match aggregation {
                    Aggregation::Sum => total,
                    Aggregation::Average => total / (profiles.value(row).max(1) as f64),
                };
                *out.entry(key)
                    .or_default()
                    .entry(buckets.value(row) / 1000)
                    .or_default() += v;
            }
            Ok(())
        })
        .await?;
        let mut series: Vec<(f64, types::Series)> = out
            .into_iter()
            .map(|(key, points)| {
                let total: f64 = points.values().sum();
                let s = types::Series {
                    labels: key
                        .into_iter()
                        .map(|(name, value)| types::LabelPair { name, value })
                        .collect(),
                    points: points
                        .into_iter()
                        .map(|(timestamp, value)| types::Point {
                            value,
                            timestamp,
                            annotations: vec![],
                        })
                        .collect(),
                };
                (total, s)
            })
            .collect();
        series.sort_by(|a, b| b.0.total_cmp(&a.0));
        if limit > 0 {
            series.truncate(limit);
        }
        Ok(series.into_iter().map(|(_, s)| s).collect())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::gaps;

    #[test]
    fn gaps_surround_and_separate_the_intervals() {
        assert_eq!(gaps(&[]), vec![(None, None)]);
        assert_eq!(
            gaps(&[(10, 20), (30, 40)]),
            vec![(None, Some(10)), (Some(20), Some(30)), (Some(40), None)]
        );
    }
}
