//! What the detector found, over HTTP: `GET /api/v1/anomalies` (JSON for scripts and alerting)
//! and `GET`/`POST /api/v1/annotations` (Grafana annotations), read from the tenant-scoped
//! `anomalies` view.
//!
//! `GET /api/v1/anomalies` parameters (query string, all optional; an empty value counts as
//! absent):
//! * `service`, `profile_type`, `function`: exact matches on `service_name`, `profile_type`
//!   and `function`.
//! * `kind` (`regression`, `improvement`, `shift`) and `severity` (`critical`, `warning`,
//!   `info`): one value or a comma-separated list; default any.
//! * `from`, `until` (alias `to`): as in the exports (Unix s/ms/ns, `now`, `now-<n><s|m|h|d>`),
//!   bounds (inclusive) on `detected_at`; default the last 24 hours.
//! * `limit`: 1–10,000, default 100.
//!
//! Answer: `{"anomalies": [...]}`, newest (`detected_at`) first. Each object has the fields of
//! [`stackdrift_storage::Anomaly`], except that times are **Unix milliseconds** (integers)
//! named `detected_at_ms`, `window_start_ms`, `window_end_ms`, `baseline_start_ms` and
//! `baseline_end_ms`, and `labels` is the JSON object itself rather than its text.
//!
//! Annotations, one per anomaly, as Grafana's JSON/Infinity and SimpleJSON datasources read
//! them: `{"time", "timeEnd", "isRegion", "title", "text", "tags"}` with `time` the start and
//! `timeEnd` the end of the evaluated windows (Unix ms), `text` HTML naming the function and
//! its share change in percentage points with a link to the diff flame graph, and `tags`
//! `[service, kind, severity, function, profile type]`. An anomaly is returned when its windows
//! overlap the range. Default kinds: `regression,improvement` (shifts are left out); default
//! limit 1,000.
//! * `GET /api/v1/annotations?from=&to=&service=&kind=…`: the filters above (`to` or `until`).
//! * `POST /api/v1/annotations` with SimpleJSON's body
//!   `{"range": {"from": RFC3339, "to": RFC3339}, "annotation": {"query": "service=checkout"}}`:
//!   the query text holds `key=value` filters joined by `&` (`service`, `profile_type`,
//!   `kind`, `severity`, `function`, `limit`). Each item echoes the request's `annotation`.
//!
//! Tenant: as every query API (`X-Scope-OrgID`, and `Authorization` when tokens are on).
//! Errors: `{"error": "..."}` with 400 for bad parameters, as the SQL API answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use datafusion::common::ScalarValue;
use datafusion::prelude::{Expr, col, lit};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::QueryError;
use crate::export::{now_ms, parse_time, tenant};
use crate::query::Querier;
use crate::sql::error_response;

/// Values of `kind`.
pub const KINDS: [&str; 3] = ["regression", "improvement", "shift"];
/// Values of `severity`.
pub const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];
/// Kinds annotations show unless asked otherwise.
pub const ANNOTATION_KINDS: [&str; 2] = ["regression", "improvement"];
/// Default `limit` of `/api/v1/anomalies`.
pub const DEFAULT_LIMIT: usize = 100;
/// Default `limit` of `/api/v1/annotations`.
pub const DEFAULT_ANNOTATION_LIMIT: usize = 1_000;
/// Largest `limit`.
pub const MAX_LIMIT: usize = 10_000;
/// Default range: the last 24 hours.
const DEFAULT_RANGE_MS: i64 = 86_400_000;
/// Keys the annotation query text may hold.
const QUERY_KEYS: [&str; 6] = [
    "service",
    "profile_type",
    "kind",
    "severity",
    "function",
    "limit",
];

/// Routes of the anomaly and annotation APIs.
pub fn routes(querier: Arc<Querier>) -> Router {
    Router::new()
        .route("/api/v1/anomalies", get(anomalies_get))
        .route(
            "/api/v1/annotations",
            get(annotations_get).post(annotations_post),
        )
        .with_state(querier)
}

/// Which time column the range bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOn {
    /// `from <= detected_at <= until`.
    Detected,
    /// The evaluated windows overlap the range: `window_start <= until` and
    /// `window_end > from` (the end is exclusive).
    Windows,
}

/// What one request selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Exact `service_name`.
    pub service: Option<String>,
    /// Exact `profile_type`.
    pub profile_type: Option<String>,
    /// Exact `function`.
    pub function: Option<String>,
    /// Any of these kinds (empty: any).
    pub kinds: Vec<String>,
    /// Any of these severities (empty: any).
    pub severities: Vec<String>,
    /// Range start, Unix ms.
    pub from_ms: i64,
    /// Range end, Unix ms.
    pub until_ms: i64,
    /// Which column the range bounds.
    pub range_on: RangeOn,
    /// Most rows returned.
    pub limit: usize,
}

/// Defaults of one endpoint.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    kinds: &'static [&'static str],
    limit: usize,
    range_on: RangeOn,
}

const LIST: Defaults = Defaults {
    kinds: &[],
    limit: DEFAULT_LIMIT,
    range_on: RangeOn::Detected,
};

const ANNOTATIONS: Defaults = Defaults {
    kinds: &ANNOTATION_KINDS,
    limit: DEFAULT_ANNOTATION_LIMIT,
    range_on: RangeOn::Windows,
};

impl Filter {
    /// The filter of a request's parameters; `range` (Unix ms), when given, replaces
    /// `from`/`until`.
    fn parse(
        params: &HashMap<String, String>,
        range: Option<(i64, i64)>,
        defaults: Defaults,
        now: i64,
    ) -> Result<Self, QueryError> {
        let get = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let (from_ms, until_ms) = match range {
            Some(r) => r,
            None => (
                get("from").map_or(Ok(now - DEFAULT_RANGE_MS), |v| parse_time(v, now))?,
                get("until")
                    .or_else(|| get("to"))
                    .map_or(Ok(now), |v| parse_time(v, now))?,
            ),
        };
        if from_ms > until_ms {
            return Err(QueryError::BadRequest(format!(
                "from ({from_ms}) is after until ({until_ms})"
            )));
        }
        let kinds = match get("kind") {
            Some(v) => list(v, "kind", &KINDS)?,
            None => defaults.kinds.iter().map(|k| (*k).to_owned()).collect(),
        };
        let severities = match get("severity") {
            Some(v) => list(v, "severity", &SEVERITIES)?,
            None => Vec::new(),
        };
        let limit = match get("limit") {
            None => defaults.limit,
            Some(v) => match v.parse::<usize>() {
                Ok(n @ 1..=MAX_LIMIT) => n,
                _ => {
                    return Err(QueryError::BadRequest(format!(
                        "limit {v:?}: use an integer from 1 to {MAX_LIMIT}"
                    )));
                }
            },
        };
        Ok(Self {
            service: get("service").map(str::to_owned),
            profile_type: get("profile_type").map(str::to_owned),
            function: get("function").map(str::to_owned),
            kinds,
            severities,
            from_ms,
            until_ms,
            range_on: defaults.range_on,
            limit,
        })
    }

    /// The filter as a DataFusion predicate (values are literals, never SQL text).
    pub fn predicate(&self) -> Expr {
        let ts = |ms: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(ms.saturating_mul(1000)),
                Some("UTC".into()),
            ))
        };
        let mut e = match self.range_on {
            RangeOn::Detected => col("detected_at")
                .gt_eq(ts(self.from_ms))
                .and(col("detected_at").lt_eq(ts(self.until_ms))),
            RangeOn::Windows => col("window_start")
                .lt_eq(ts(self.until_ms))
                .and(col("window_end").gt(ts(self.from_ms))),
        };
        for (column, value) in [
            ("service_name", &self.service),
            ("profile_type", &self.profile_type),
            ("function", &self.function),
        ] {
            if let Some(v) = value {
                e = e.and(col(column).eq(lit(v.as_str())));
            }
        }
        for (column, values) in [("kind", &self.kinds), ("severity", &self.severities)] {
            if !values.is_empty() {
                e = e.and(
                    col(column).in_list(values.iter().map(|v| lit(v.as_str())).collect(), false),
                );
            }
        }
        e
    }
}

/// A comma-separated list of values out of `allowed`.
fn list(value: &str, name: &str, allowed: &[&str]) -> Result<Vec<String>, QueryError> {
    let mut out = Vec::new();
    for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        if !allowed.contains(&v) {
            return Err(QueryError::BadRequest(format!(
                "unknown {name} {v:?}: use {}",
                allowed.join(", ")
            )));
        }
        out.push(v.to_owned());
    }
    Ok(out)
}

/// One anomaly as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyJson {
    /// Stable ID.
    pub anomaly_id: String,
    /// Tenant.
    pub tenant: String,
    /// Service.
    pub service_name: String,
    /// Profile type ID.
    pub profile_type: String,
    /// Grouping labels of the series (the stored JSON text, parsed; the text itself if it
    /// does not parse).
    pub labels: Value,
    /// `regression`, `improvement` or `shift`.
    pub kind: String,
    /// `rolling`, `rolling+seasonal` or `version`.
    pub baseline: String,
    /// `self` or `total`.
    pub metric: String,
    /// The function whose weight changed.
    pub function: String,
    /// Share in the baseline (0–1).
    pub baseline_share: f64,
    /// Share in the evaluated windows (0–1).
    pub current_share: f64,
    /// `current_share - baseline_share`.
    pub delta: f64,
    /// z score.
    pub score: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// When the anomaly was detected, Unix ms.
    pub detected_at_ms: i64,
    /// Start of the evaluated windows, Unix ms.
    pub window_start_ms: i64,
    /// End of the evaluated windows (exclusive), Unix ms.
    pub window_end_ms: i64,
    /// Start of the baseline, Unix ms.
    pub baseline_start_ms: i64,
    /// End of the baseline (exclusive), Unix ms.
    pub baseline_end_ms: i64,
    /// Windows the change held for.
    pub windows: i32,
    /// `version` before, if any.
    pub version_before: Option<String>,
    /// `version` after, if any.
    pub version_after: Option<String>,
    /// Heaviest stack through the function, root first, `;`-joined.
    pub example_stack: String,
    /// Link to the per-function diff as SQL rows.
    pub query_url: String,
    /// Link to the diff flame graph SVG.
    pub svg_url: String,
}

/// Columns read, in the order [`rows`] expects them.
const COLUMNS: [&str; 26] = [
    "anomaly_id",
    "tenant",
    "service_name",
    "profile_type",
    "labels",
    "kind",
    "baseline",
    "metric",
    "function",
    "baseline_share",
    "current_share",
    "delta",
    "score",
    "p_value",
    "severity",
    "detected_at",
    "window_start",
    "window_end",
    "baseline_start",
    "baseline_end",
    "windows",
    "version_before",
    "version_after",
    "example_stack",
    "query_url",
    "svg_url",
];

/// The anomalies `filter` selects for `tenant`, newest first, within the querier's limits.
pub async fn select(
    querier: &Querier,
    tenant: &str,
    filter: &Filter,
) -> Result<Vec<AnomalyJson>, QueryError> {
    let mem = querier.config().memory_limit;
    let df_err = |e| QueryError::from_datafusion(e, mem);
    querier
        .limited(async {
            let ctx = querier.session(tenant).await?;
            let batches = ctx
                .table(stackdrift_storage::anomalies::ANOMALIES)
                .await
                .map_err(df_err)?
                .filter(filter.predicate())
                .map_err(df_err)?
                .sort(vec![
                    col("detected_at").sort(false, false),
                    col("anomaly_id").sort(true, false),
                ])
                .map_err(df_err)?
                .limit(0, Some(filter.limit))
                .map_err(df_err)?
                .select_columns(&COLUMNS)
                .map_err(df_err)?
                .collect()
                .await
                .map_err(df_err)?;
            let mut out = Vec::new();
            for b in &batches {
                rows(b, &mut out)?;
            }
            Ok(out)
        })
        .await
}

/// Column `name` of `batch`, cast to `to` (strings may come back as views).
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, QueryError> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| QueryError::Internal(format!("anomalies has no column {name}")))?;
    arrow::compute::cast(c, to).map_err(|e| QueryError::Internal(format!("anomalies.{name}: {e}")))
}

fn downcast<'a, T: 'static>(c: &'a ArrayRef, name: &str) -> Result<&'a T, QueryError> {
    c.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| QueryError::Internal(format!("anomalies.{name}: unexpected type")))
}

/// Appends the rows of `batch` (columns [`COLUMNS`]) to `out`.
fn rows(batch: &RecordBatch, out: &mut Vec<AnomalyJson>) -> Result<(), QueryError> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let mut cols: HashMap<&str, ArrayRef> = HashMap::new();
    for name in COLUMNS {
        let to = match batch.column_by_name(name).map(|c| c.data_type()) {
            Some(DataType::Float64 | DataType::Float32) => DataType::Float64,
            Some(DataType::Int32 | DataType::Int64) => DataType::Int32,
            Some(DataType::Timestamp(..)) => micros.clone(),
            _ => DataType::Utf8,
        };
        cols.insert(name, column(batch, name, &to)?);
    }
    let s = |n: &str| downcast::<StringArray>(&cols[n], n);
    let f = |n: &str| downcast::<Float64Array>(&cols[n], n);
    let t = |n: &str| downcast::<TimestampMicrosecondArray>(&cols[n], n);
    let (id, tenant, service, profile_type, labels) = (
        s("anomaly_id")?,
        s("tenant")?,
        s("service_name")?,
        s("profile_type")?,
        s("labels")?,
    );
    let (kind, baseline, metric, function, severity) = (
        s("kind")?,
        s("baseline")?,
        s("metric")?,
        s("function")?,
        s("severity")?,
    );
    let (baseline_share, current_share, delta, score, p_value) = (
        f("baseline_share")?,
        f("current_share")?,
        f("delta")?,
        f("score")?,
        f("p_value")?,
    );
    let (detected, wstart, wend, bstart, bend) = (
        t("detected_at")?,
        t("window_start")?,
        t("window_end")?,
        t("baseline_start")?,
        t("baseline_end")?,
    );
    let windows = downcast::<Int32Array>(&cols["windows"], "windows")?;
    let (vbefore, vafter) = (s("version_before")?, s("version_after")?);
    let (stack, query_url, svg_url) = (s("example_stack")?, s("query_url")?, s("svg_url")?);
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
    let ms = |a: &TimestampMicrosecondArray, i: usize| a.value(i).div_euclid(1000);
    for i in 0..batch.num_rows() {
        let labels_text = labels.value(i);
        out.push(AnomalyJson {
            anomaly_id: id.value(i).to_owned(),
            tenant: tenant.value(i).to_owned(),
            service_name: service.value(i).to_owned(),
            profile_type: profile_type.value(i).to_owned(),
            labels: serde_json::from_str(labels_text)
                .unwrap_or_else(|_| Value::String(labels_text.to_owned())),
            kind: kind.value(i).to_owned(),
            baseline: baseline.value(i).to_owned(),
            metric: metric.value(i).to_owned(),
            function: function.value(i).to_owned(),
            baseline_share: baseline_share.value(i),
            current_share: current_share.value(i),
            delta: delta.value(i),
            score: score.value(i),
            p_value: p_value.value(i),
            severity: severity.value(i).to_owned(),
            detected_at_ms: ms(detected, i),
            window_start_ms: ms(wstart, i),
            window_end_ms: ms(wend, i),
            baseline_start_ms: ms(bstart, i),
            baseline_end_ms: ms(bend, i),
            windows: windows.value(i),
            version_before: opt(vbefore, i),
            version_after: opt(vafter, i),
            example_stack: stack.value(i).to_owned(),
            query_url: query_url.value(i).to_owned(),
            svg_url: svg_url.value(i).to_owned(),
        });
    }
    Ok(())
}

/// Runs `filter` for the request's tenant and counts it in the metrics as `api`.
async fn run(
    querier: &Querier,
    headers: &HeaderMap,
    api: &str,
    filter: impl FnOnce() -> Result<Filter, QueryError>,
) -> Result<Vec<AnomalyJson>, QueryError> {
    let started = Instant::now();
    let tenant = tenant(querier, headers)?;
    let filter = filter()?;
    let result = select(querier, &tenant, &filter).await;
    querier.observe(api, &tenant, started, result.as_ref().err());
    result
}

async fn anomalies_get(
    State(querier): State<Arc<Querier>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let result = run(&querier, &headers, "anomalies", || {
        Filter::parse(&params, None, LIST, now_ms())
    })
    .await;
    match result {
        Ok(anomalies) => (
            StatusCode::OK,
            Json(serde_json::json!({ "anomalies": anomalies })),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

/// One Grafana annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// Start of the evaluated windows, Unix ms.
    pub time: i64,
    /// End of the evaluated windows, Unix ms.
    #[serde(rename = "timeEnd")]
    pub time_end: i64,
    /// Shown as a region (it always is: the windows have a width).
    #[serde(rename = "isRegion")]
    pub is_region: bool,
    /// One line: service, kind, function.
    pub title: String,
    /// HTML: function, share change in percentage points, link to the diff flame graph.
    pub text: String,
    /// Service, kind, severity, function, profile type.
    pub tags: Vec<String>,
    /// The request's `annotation` object (SimpleJSON's POST only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<Value>,
}

impl Annotation {
    /// The annotation of one anomaly.
    pub fn of(a: &AnomalyJson, annotation: Option<&Value>) -> Self {
        let pct = |share: f64| share * 100.0;
        let versions = match (&a.version_before, &a.version_after) {
            (Some(b), Some(v)) if b != v => format!(
                ", version {} → {}",
                stackdrift_model::html::escape(b),
                stackdrift_model::html::escape(v)
            ),
            _ => String::new(),
        };
        let link = if a.svg_url.is_empty() {
            String::new()
        } else {
            format!(
                r#" <a href="{}">Diff flame graph</a>"#,
                stackdrift_model::html::escape(&a.svg_url)
            )
        };
        let text = format!(
            "{kind} of <b>{function}</b> in {service}: {metric} share {b:.2}% → {c:.2}% \
             ({d:+.2} pp, {severity}){versions}.{link}",
            kind = stackdrift_model::html::escape(&a.kind),
            function = stackdrift_model::html::escape(&a.function),
            service = stackdrift_model::html::escape(&a.service_name),
            metric = stackdrift_model::html::escape(&a.metric),
            b = pct(a.baseline_share),
            c = pct(a.current_share),
            d = pct(a.delta),
            severity = stackdrift_model::html::escape(&a.severity),
        );
        Self {
            time: a.window_start_ms,
            time_end: a.window_end_ms,
            is_region: true,
            title: format!("{}: {} in {}", a.service_name, a.kind, a.function),
            text,
            tags: vec![
                a.service_name.clone(),
                a.kind.clone(),
                a.severity.clone(),
                a.function.clone(),
                a.profile_type.clone(),
            ],
            annotation: annotation.cloned(),
        }
    }
}

fn annotations_response(
    result: Result<Vec<AnomalyJson>, QueryError>,
    annotation: Option<&Value>,
) -> Response {
    match result {
        Ok(rows) => {
            let items: Vec<Annotation> =
                rows.iter().map(|a| Annotation::of(a, annotation)).collect();
            (StatusCode::OK, Json(items)).into_response()
        }
        Err(e) => error_response(&e),
    }
}

async fn annotations_get(
    State(querier): State<Arc<Querier>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let result = run(&querier, &headers, "annotations", || {
        Filter::parse(&params, None, ANNOTATIONS, now_ms())
    })
    .await;
    annotations_response(result, None)
}

/// SimpleJSON's annotation request.
#[derive(Debug, Deserialize)]
struct AnnotationRequest {
    #[serde(default)]
    range: Option<RangeRequest>,
    #[serde(default)]
    annotation: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RangeRequest {
    from: Value,
    to: Value,
}

/// A time of the request body: RFC 3339 (what Grafana sends), or anything `parse_time` reads.
fn body_time(v: &Value, now: i64) -> Result<i64, QueryError> {
    match v {
        Value::String(s) => match chrono::DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Ok(t.timestamp_millis()),
            Err(_) => parse_time(s, now).map_err(|_| {
                QueryError::BadRequest(format!(
                    "range time {s:?}: use RFC 3339 (2024-05-01T12:00:00Z) or Unix ms"
                ))
            }),
        },
        Value::Number(n) => parse_time(&n.to_string(), now),
        other => Err(QueryError::BadRequest(format!(
            "range time {other}: use RFC 3339 (2024-05-01T12:00:00Z) or Unix ms"
        ))),
    }
}

/// The filters of an annotation's query text: `key=value` pairs joined by `&`.
fn query_text(text: &str) -> Result<HashMap<String, String>, QueryError> {
    let mut out = HashMap::new();
    for part in text.split('&').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(QueryError::BadRequest(format!(
                "annotation query {part:?}: use key=value pairs joined by &, \
                 e.g. service=checkout&kind=regression"
            )));
        };
        let k = k.trim();
        if !QUERY_KEYS.contains(&k) {
            return Err(QueryError::BadRequest(format!(
                "annotation query key {k:?}: use {}",
                QUERY_KEYS.join(", ")
            )));
        }
        out.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

async fn annotations_post(
    State(querier): State<Arc<Querier>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Result<AnnotationRequest, QueryError> = serde_json::from_slice(&body)
        .map_err(|e| {
            QueryError::BadRequest(format!(
                "body must be {{\"range\": {{\"from\": …, \"to\": …}}, \"annotation\": {{\"query\": …}}}}: {e}"
            ))
        });
    let request = match request {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let annotation = request.annotation.as_ref();
    let result = run(&querier, &headers, "annotations", || {
        let now = now_ms();
        let range = match &request.range {
            Some(r) => Some((body_time(&r.from, now)?, body_time(&r.to, now)?)),
            None => Some((now - DEFAULT_RANGE_MS, now)),
        };
        let text = annotation
            .and_then(|a| a.get("query"))
            .and_then(Value::as_str)
            .unwrap_or("");
        Filter::parse(&query_text(text)?, range, ANNOTATIONS, now)
    })
    .await;
    annotations_response(result, annotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn filters_parse_with_defaults() {
        let now = 1_700_000_000_000;
        let f = Filter::parse(&params(&[]), None, LIST, now).unwrap();
        assert_eq!((f.from_ms, f.until_ms), (now - DEFAULT_RANGE_MS, now));
        assert_eq!(f.limit, DEFAULT_LIMIT);
        assert!(f.kinds.is_empty() && f.severities.is_empty());
        let f = Filter::parse(&params(&[]), None, ANNOTATIONS, now).unwrap();
        assert_eq!(f.kinds, ["regression", "improvement"]);
        assert_eq!(f.range_on, RangeOn::Windows);
        let f = Filter::parse(
            &params(&[
                ("kind", "shift, regression"),
                ("severity", "info"),
                ("service", ""),
                ("to", "now-1h"),
                ("limit", "10000"),
            ]),
            None,
            LIST,
            now,
        )
        .unwrap();
        assert_eq!(f.kinds, ["shift", "regression"]);
        assert_eq!(f.severities, ["info"]);
        assert_eq!(f.service, None);
        assert_eq!(f.until_ms, now - 3_600_000);
        assert_eq!(f.limit, MAX_LIMIT);
    }

    #[test]
    fn bad_filters_are_bad_requests() {
        for p in [
            ("kind", "regressions"),
            ("severity", "high"),
            ("from", "yesterday"),
            ("until", "1.5"),
            ("limit", "0"),
            ("limit", "ten"),
            ("limit", "10001"),
            ("limit", "-1"),
            ("from", "now+1h"),
        ] {
            let e = Filter::parse(&params(&[p]), None, LIST, 1_700_000_000_000).unwrap_err();
            assert_eq!(e.http_status(), StatusCode::BAD_REQUEST, "{p:?}");
            assert!(!e.to_string().contains('\n'), "{p:?}: {e}");
        }
        let e = Filter::parse(
            &params(&[("from", "now-1h"), ("until", "now-2h")]),
            None,
            LIST,
            1_700_000_000_000,
        )
        .unwrap_err();
        assert!(e.to_string().contains("after"), "{e}");
    }

    #[test]
    fn annotation_query_text_parses() {
        let q = query_text(" service=checkout & kind=regression,shift ").unwrap();
        assert_eq!(q["service"], "checkout");
        assert_eq!(q["kind"], "regression,shift");
        assert!(query_text("").unwrap().is_empty());
        assert!(query_text("checkout").is_err());
        assert!(query_text("from=now-1h").is_err());
    }

    #[test]
    fn body_times_read_rfc3339_and_unix_ms() {
        let now = 0;
        assert_eq!(
            body_time(&Value::from("2023-11-14T22:13:20.000Z"), now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            body_time(&Value::from("2023-11-14T23:13:20+01:00"), now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            body_time(&Value::from(1_700_000_000_000i64), now).unwrap(),
            1_700_000_000_000
        );
        assert!(body_time(&Value::from("2023-13-14"), now).is_err());
        assert!(body_time(&Value::Null, now).is_err());
    }

    #[test]
    fn annotation_text_escapes_html() {
        let a = AnomalyJson {
            anomaly_id: "x".into(),
            tenant: "t".into(),
            service_name: "svc".into(),
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            labels: serde_json::json!({}),
            kind: "regression".into(),
            baseline: "version".into(),
            metric: "self".into(),
            function: "std::vector<int>::push_back".into(),
            baseline_share: 0.1,
            current_share: 0.175,
            delta: 0.075,
            score: 9.0,
            p_value: 1e-9,
            severity: "critical".into(),
            detected_at_ms: 3,
            window_start_ms: 1,
            window_end_ms: 3,
            baseline_start_ms: 0,
            baseline_end_ms: 1,
            windows: 2,
            version_before: Some("1.0".into()),
            version_after: Some("1.1".into()),
            example_stack: "main;f".into(),
            query_url: "/q".into(),
            svg_url: "/api/v1/diff.svg?a=1&b=\"2\"".into(),
        };
        let n = Annotation::of(&a, None);
        assert_eq!((n.time, n.time_end), (1, 3));
        assert!(
            n.text.contains("<b>std::vector&lt;int&gt;::push_back</b>"),
            "{}",
            n.text
        );
        assert!(n.text.contains("10.00% → 17.50%"), "{}", n.text);
        assert!(n.text.contains("+7.50 pp"), "{}", n.text);
        assert!(n.text.contains("version 1.0 → 1.1"), "{}", n.text);
        assert!(
            n.text
                .contains(r#"<a href="/api/v1/diff.svg?a=1&amp;b=&quot;2&quot;">"#),
            "{}",
            n.text
        );
        assert_eq!(
            n.tags[..4],
            [
                "svc",
                "regression",
                "critical",
                "std::vector<int>::push_back"
            ]
        );
        let json = serde_json::to_value(&n).unwrap();
        assert!(json.get("annotation").is_none());
        assert_eq!(json["timeEnd"], 3);
    }
}
