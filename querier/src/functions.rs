//! SQL table functions that make the common profile questions one line:
//!
//! ```sql
//! SELECT * FROM function_totals('process_cpu:cpu:nanoseconds:cpu:nanoseconds',
//!                               '{service_name="checkout"}', 'now-1h', 'now') LIMIT 10;
//! SELECT * FROM flamegraph('process_cpu:cpu:nanoseconds:cpu:nanoseconds',
//!                          '{service_name="checkout"}');
//! SELECT * FROM function_diff('process_cpu:cpu:nanoseconds:cpu:nanoseconds',
//!                             '{service_name="checkout", version="1.4.1"}',
//!                             '{service_name="checkout", version="1.4.2"}', 'now-1h', 'now');
//! ```
//!
//! Each runs the same merge as the Grafana API (sum per stack, then one join with the stacks)
//! inside the calling query's session: its tenant-scoped views, memory pool and timeout.
//! Times are strings (`now`, `now-1h`, RFC 3339, Unix s/ms/ns) or integers (Unix s/ms/ns, by
//! size); `from` defaults to an hour ago and `until` to now.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::error::QueryError;
use crate::export::{now_ms, parse_time};
use crate::flamegraph::{self, FlameTree};
use crate::profiles::{Selection, flame_tree_in};

/// Registers the table functions in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udtf("flamegraph", Arc::new(Function(Kind::Flamegraph)));
    ctx.register_udtf("function_totals", Arc::new(Function(Kind::Totals)));
    ctx.register_udtf("function_diff", Arc::new(Function(Kind::Diff)));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flamegraph,
    Totals,
    Diff,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Flamegraph => "flamegraph",
            Self::Totals => "function_totals",
            Self::Diff => "function_diff",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Self::Flamegraph | Self::Totals => "(profile_type, selector [, from [, until]])",
            Self::Diff => {
                "(profile_type, baseline_selector, comparison_selector [, from [, until \
                 [, comparison_from, comparison_until]]])"
            }
        }
    }

    fn schema(self) -> SchemaRef {
        let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
        Arc::new(Schema::new(match self {
            Self::Flamegraph => vec![
                f("node_id", DataType::Int64, false),
                f("parent_id", DataType::Int64, true),
                f("depth", DataType::Int32, false),
                f("name", DataType::Utf8, false),
                f("self", DataType::Int64, false),
                f("total", DataType::Int64, false),
            ],
            Self::Totals => vec![
                f("function", DataType::Utf8, false),
                f("self", DataType::Int64, false),
                f("total", DataType::Int64, false),
                f("self_share", DataType::Float64, false),
                f("total_share", DataType::Float64, false),
            ],
            Self::Diff => vec![
                f("function", DataType::Utf8, false),
                f("baseline_self", DataType::Int64, false),
                f("baseline_total", DataType::Int64, false),
                f("comparison_self", DataType::Int64, false),
                f("comparison_total", DataType::Int64, false),
                f("baseline_share", DataType::Float64, false),
                f("comparison_share", DataType::Float64, false),
                f("share_delta", DataType::Float64, false),
            ],
        }))
    }
}

#[derive(Debug)]
struct Function(Kind);

/// A literal string argument.
fn string_arg(kind: Kind, args: &[Expr], i: usize, what: &str) -> Result<String> {
    match args.get(i) {
        Some(Expr::Literal(ScalarValue::Utf8(Some(s)), _))
        | Some(Expr::Literal(ScalarValue::Utf8View(Some(s)), _))
        | Some(Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)) => Ok(s.clone()),
        Some(other) => plan_err!(
            "{}{}: argument {} ({what}) must be a string literal, got {other}",
            kind.name(),
            kind.usage(),
            i + 1
        ),
        None => plan_err!(
            "{}{}: missing argument {} ({what})",
            kind.name(),
            kind.usage(),
            i + 1
        ),
    }
}

/// A time argument, in Unix ms; `default` when absent.
fn time_arg(kind: Kind, args: &[Expr], i: usize, default: i64, now: i64) -> Result<i64> {
    let bad = |e: String| {
        DataFusionError::Plan(format!(
            "{}{}: argument {}: {e}",
            kind.name(),
            kind.usage(),
            i + 1
        ))
    };
    let Some(arg) = args.get(i) else {
        return Ok(default);
    };
    match arg {
        Expr::Literal(ScalarValue::Int64(Some(n)), _) => {
            parse_time(&n.to_string(), now).map_err(|e| bad(e.to_string()))
        }
        Expr::Literal(ScalarValue::TimestampSecond(Some(n), _), _) => Ok(n * 1000),
        Expr::Literal(ScalarValue::TimestampMillisecond(Some(n), _), _) => Ok(*n),
        Expr::Literal(ScalarValue::TimestampMicrosecond(Some(n), _), _) => Ok(n / 1000),
        Expr::Literal(ScalarValue::TimestampNanosecond(Some(n), _), _) => Ok(n / 1_000_000),
        _ => {
            let s = string_arg(kind, args, i, "a time")?;
            match parse_time(&s, now) {
                Ok(ms) => Ok(ms),
                Err(_) => arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(&s)
                    .map(|ns| ns / 1_000_000)
                    .map_err(|_| {
                        bad(format!(
                            "time {s:?}: use RFC 3339, Unix s/ms/ns, `now` or `now-<n><s|m|h|d>`"
                        ))
                    }),
            }
        }
    }
}

fn selection(profile_type: &str, selector: &str, from: i64, until: i64) -> Result<Selection> {
    let selectors: Vec<&str> = if selector.trim().is_empty() {
        vec![]
    } else {
        vec![selector]
    };
    Selection::parse(Some(profile_type), &selectors, from, until).map_err(to_datafusion)
}

fn to_datafusion(e: QueryError) -> DataFusionError {
    match e {
        QueryError::BadRequest(m) | QueryError::InvalidQuery(m) => DataFusionError::Plan(m),
        QueryError::Memory { detail, .. } => DataFusionError::ResourcesExhausted(detail),
        other => DataFusionError::Execution(other.to_string()),
    }
}

impl TableFunctionImpl for Function {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let kind = self.0;
        let args = args.exprs();
        let max_args = if kind == Kind::Diff { 7 } else { 4 };
        if args.len() > max_args {
            return plan_err!(
                "{}{}: too many arguments ({})",
                kind.name(),
                kind.usage(),
                args.len()
            );
        }
        let now = now_ms();
        let profile_type = string_arg(kind, args, 0, "profile type")?;
        let first = string_arg(kind, args, 1, "label selector")?;
        let t = if kind == Kind::Diff { 3 } else { 2 };
        let from = time_arg(kind, args, t, now - 3_600_000, now)?;
        let until = time_arg(kind, args, t + 1, now, now)?;
        let main = selection(&profile_type, &first, from, until)?;
        let comparison = if kind == Kind::Diff {
            let second = string_arg(kind, args, 2, "comparison selector")?;
            let c_from = time_arg(kind, args, 5, from, now)?;
            let c_until = time_arg(kind, args, 6, until, now)?;
            Some(selection(&profile_type, &second, c_from, c_until)?)
        } else {
            None
        };
        Ok(Arc::new(ProfileTable {
            kind,
            main,
            comparison,
        }))
    }
}

/// The rows of one table function call, computed when the query scans it.
#[derive(Debug)]
struct ProfileTable {
    kind: Kind,
    main: Selection,
    comparison: Option<Selection>,
}

fn share(v: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        v as f64 / total as f64
    }
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn flamegraph_rows(tree: &FlameTree, schema: SchemaRef) -> Result<RecordBatch> {
    let nodes = flamegraph::nodes(&tree.to_flamegraph(None)).map_err(DataFusionError::Internal)?;
    batch(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(
                nodes.iter().map(|n| n.id as i64),
            )),
            Arc::new(Int64Array::from_iter(
                nodes.iter().map(|n| n.parent.map(|p| p as i64)),
            )),
            Arc::new(Int32Array::from_iter_values(
                nodes.iter().map(|n| n.depth as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                nodes.iter().map(|n| n.name.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                nodes.iter().map(|n| n.self_value),
            )),
            Arc::new(Int64Array::from_iter_values(nodes.iter().map(|n| n.total))),
        ],
    )
}

/// Functions by total (largest first, then name).
fn ranked(totals: &BTreeMap<String, (i64, i64)>) -> Vec<(&String, (i64, i64))> {
    let mut rows: Vec<(&String, (i64, i64))> = totals.iter().map(|(f, v)| (f, *v)).collect();
    rows.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(b.0)));
    rows
}

fn totals_rows(tree: &FlameTree, schema: SchemaRef) -> Result<RecordBatch> {
    let totals = tree.function_totals();
    let all = tree.total();
    let rows = ranked(&totals);
    batch(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(f, _)| f.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, v)| v.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, v)| v.1))),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(_, v)| share(v.0, all)),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(_, v)| share(v.1, all)),
            )),
        ],
    )
}

fn diff_rows(base: &FlameTree, cmp: &FlameTree, schema: SchemaRef) -> Result<RecordBatch> {
    let (b, c) = (base.function_totals(), cmp.function_totals());
    let (bt, ct) = (base.total(), cmp.total());
    let names: BTreeSet<&String> = b.keys().chain(c.keys()).collect();
    // (function, baseline (self, total), comparison (self, total), share delta)
    type Row<'a> = (&'a String, (i64, i64), (i64, i64), f64);
    let mut rows: Vec<Row<'_>> = names
        .into_iter()
        .map(|f| {
            let bv = b.get(f).copied().unwrap_or_default();
            let cv = c.get(f).copied().unwrap_or_default();
            let delta = share(cv.1, ct) - share(bv.1, bt);
            (f, bv, cv, delta)
        })
        .collect();
    // Largest change in share first.
    rows.sort_by(|x, y| y.3.abs().total_cmp(&x.3.abs()).then(x.0.cmp(y.0)));
    batch(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2.1))),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| share(r.1.1, bt)),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| share(r.2.1, ct)),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
}

#[async_trait]
impl TableProvider for ProfileTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("unexpected session type".into()))?;
        // The calling session: same tenant-scoped views, memory pool and limits.
        let ctx = SessionContext::new_with_state(state.clone());
        let schema = self.kind.schema();
        let tree = flame_tree_in(&ctx, &self.main)
            .await
            .map_err(to_datafusion)?;
        let rows = match (self.kind, &self.comparison) {
            (Kind::Flamegraph, _) => flamegraph_rows(&tree, schema.clone())?,
            (Kind::Totals, _) => totals_rows(&tree, schema.clone())?,
            (Kind::Diff, Some(c)) => {
                let other = flame_tree_in(&ctx, c).await.map_err(to_datafusion)?;
                diff_rows(&tree, &other, schema.clone())?
            }
            (Kind::Diff, None) => {
                return Err(DataFusionError::Internal(
                    "diff without a comparison".into(),
                ));
            }
        };
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![rows]],
            schema,
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::lit;

    #[test]
    fn arguments_are_checked_with_usage_in_the_message() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let call = |kind: Kind, args: Vec<Expr>| {
            Function(kind)
                .call_with_args(TableFunctionArgs::new(&args, &state))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
        assert!(call(Kind::Totals, vec![lit(cpu), lit("{}")]).is_ok());
        assert!(
            call(
                Kind::Totals,
                vec![lit(cpu), lit(""), lit("now-1h"), lit(0i64)]
            )
            .is_ok()
        );
        assert!(
            call(
                Kind::Flamegraph,
                vec![lit(cpu), lit("{}"), lit("2026-11-25T10:00:00Z")]
            )
            .is_ok()
        );
        let err = call(Kind::Totals, vec![lit(cpu)]).unwrap_err();
        assert!(err.contains("missing argument 2"), "{err}");
        assert!(
            err.contains("function_totals(profile_type, selector"),
            "{err}"
        );
        let err = call(Kind::Totals, vec![lit(cpu), lit("{a=}")]).unwrap_err();
        assert!(err.contains("label selector"), "{err}");
        let err = call(Kind::Totals, vec![lit("cpu"), lit("{}")]).unwrap_err();
        assert!(err.contains("profile type"), "{err}");
        let err = call(Kind::Totals, vec![lit(cpu), lit("{}"), lit("yesterday")]).unwrap_err();
        assert!(err.contains("argument 3"), "{err}");
        let err = call(Kind::Diff, vec![lit(cpu), lit("{}")]).unwrap_err();
        assert!(err.contains("comparison selector"), "{err}");
        let err = call(Kind::Totals, vec![lit(cpu), lit(1i64)]).unwrap_err();
        assert!(err.contains("string literal"), "{err}");
    }

    #[test]
    fn diff_rows_normalize_each_side_by_its_total() {
        let mut base = FlameTree::new();
        base.add(["a", "main"].into_iter(), 50);
        base.add(["b", "main"].into_iter(), 50);
        let mut cmp = FlameTree::new();
        cmp.add(["a", "main"].into_iter(), 300);
        cmp.add(["b", "main"].into_iter(), 100);
        let rows = diff_rows(&base, &cmp, Kind::Diff.schema()).unwrap();
        let names = rows
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let delta = rows
            .column(7)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let got: BTreeMap<&str, f64> = (0..rows.num_rows())
            .map(|i| (names.value(i), delta.value(i)))
            .collect();
        // a: 0.5 → 0.75, b: 0.5 → 0.25, main: 1.0 → 1.0.
        assert_eq!(got["a"], 0.25);
        assert_eq!(got["b"], -0.25);
        assert_eq!(got["main"], 0.0);
    }
}
