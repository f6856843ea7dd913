//! The `anomalies` table: what the detector found, one row per anomaly, and the detector's
//! progress object beside it.
//!
//! Rows are written once per anomaly (the ID is a hash of what identifies the finding, so a
//! replay that finds the same anomaly again recognizes it) and are never updated.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// Table name.
pub const ANOMALIES: &str = "anomalies";
/// Partition columns of `anomalies`.
pub const ANOMALIES_PARTITIONS: [&str; 1] = ["tenant"];

/// One anomaly as stored (and as the API returns it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Stable ID: hex of a hash over tenant, series, function, metric, baseline kind, direction
    /// and the first window of the change.
    pub anomaly_id: String,
    /// Tenant.
    pub tenant: String,
    /// Service.
    pub service_name: String,
    /// Profile type ID.
    pub profile_type: String,
    /// The grouping labels of the series (e.g. `{"region": "eu-west"}`), as a JSON object.
    pub labels: String,
    /// `regression`, `improvement` or `shift` (weight moved between functions; not notified).
    pub kind: String,
    /// `rolling`, `rolling+seasonal` or `version`.
    pub baseline: String,
    /// `self` or `total`: which share of the function changed significantly.
    pub metric: String,
    /// The function whose weight changed.
    pub function: String,
    /// The function's share in the baseline (0–1).
    pub baseline_share: f64,
    /// The function's share in the evaluated windows (0–1).
    pub current_share: f64,
    /// `current_share - baseline_share`.
    pub delta: f64,
    /// z score of the share test.
    pub score: f64,
    /// Two-sided p-value of the share test.
    pub p_value: f64,
    /// `critical`, `warning` or `info` (by the size of `delta`).
    pub severity: String,
    /// Start of the evaluated windows (Unix µs).
    pub window_start_us: i64,
    /// End of the evaluated windows (Unix µs, exclusive).
    pub window_end_us: i64,
    /// Start of the baseline (Unix µs).
    pub baseline_start_us: i64,
    /// End of the baseline (Unix µs, exclusive).
    pub baseline_end_us: i64,
    /// Number of windows the change held for when reported.
    pub windows: i32,
    /// `version` label before (the baseline's), if any.
    pub version_before: Option<String>,
    /// `version` label after (the evaluated windows'), if any.
    pub version_after: Option<String>,
    /// The heaviest stack through the function in the evaluated windows, root first, `;`-joined.
    pub example_stack: String,
    /// Link to the per-function diff as SQL rows (`function_diff`).
    pub query_url: String,
    /// Link to the diff flame graph SVG.
    pub svg_url: String,
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The `anomalies` schema (partition column last).
pub fn anomalies_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let t = |n: &str| Field::new(n, utc_micros(), false);
    Arc::new(Schema::new(vec![
        s("anomaly_id"),
        t("detected_at"),
        s("service_name"),
        s("profile_type"),
        s("labels"),
        s("kind"),
        s("baseline"),
        s("metric"),
        s("function"),
        f("baseline_share"),
        f("current_share"),
        f("delta"),
        f("score"),
        f("p_value"),
        s("severity"),
        t("window_start"),
        t("window_end"),
        t("baseline_start"),
        t("baseline_end"),
        Field::new("windows", DataType::Int32, false),
        Field::new("version_before", DataType::Utf8, true),
        Field::new("version_after", DataType::Utf8, true),
        s("example_stack"),
        s("query_url"),
        s("svg_url"),
        s("tenant"),
    ]))
}

/// Builds the batch of `rows`.
pub fn anomalies_batch(rows: &[Anomaly]) -> Result<RecordBatch, StorageError> {
    let n = rows.len();
    let strings = |get: &dyn Fn(&Anomaly) -> &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for r in rows {
            b.append_value(get(r));
        }
        Arc::new(b.finish())
    };
    let opt = |get: &dyn Fn(&Anomaly) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        for r in rows {
            b.append_option(get(r));
        }
        Arc::new(b.finish())
    };
    let floats = |get: &dyn Fn(&Anomaly) -> f64| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        for r in rows {
            b.append_value(get(r));
        }
        Arc::new(b.finish())
    };
    let times = |get: &dyn Fn(&Anomaly) -> i64| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for r in rows {
            b.append_value(get(r));
        }
        Arc::new(b.finish())
    };
    let mut windows = Int32Builder::with_capacity(n);
    for r in rows {
        windows.append_value(r.windows);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| &r.anomaly_id),
        times(&|r| r.window_end_us),
        strings(&|r| &r.service_name),
        strings(&|r| &r.profile_type),
        strings(&|r| &r.labels),
        strings(&|r| &r.kind),
        strings(&|r| &r.baseline),
        strings(&|r| &r.metric),
        strings(&|r| &r.function),
        floats(&|r| r.baseline_share),
        floats(&|r| r.current_share),
        floats(&|r| r.delta),
        floats(&|r| r.score),
        floats(&|r| r.p_value),
        strings(&|r| &r.severity),
        times(&|r| r.window_start_us),
        times(&|r| r.window_end_us),
        times(&|r| r.baseline_start_us),
        times(&|r| r.baseline_end_us),
        Arc::new(windows.finish()),
        opt(&|r| r.version_before.as_deref()),
        opt(&|r| r.version_after.as_deref()),
        strings(&|r| &r.example_stack),
        strings(&|r| &r.query_url),
        strings(&|r| &r.svg_url),
        strings(&|r| &r.tenant),
    ];
    Ok(RecordBatch::try_new(anomalies_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_matches_schema() {
        let a = Anomaly {
            anomaly_id: "ab".into(),
            tenant: "t".into(),
            service_name: "s".into(),
            profile_type: "p".into(),
            labels: "{}".into(),
            kind: "regression".into(),
            baseline: "rolling".into(),
            metric: "self".into(),
            function: "f".into(),
            baseline_share: 0.1,
            current_share: 0.2,
            delta: 0.1,
            score: 9.0,
            p_value: 1e-9,
            severity: "critical".into(),
            window_start_us: 1,
            window_end_us: 2,
            baseline_start_us: 0,
            baseline_end_us: 1,
            windows: 2,
            version_before: Some("1".into()),
            version_after: None,
            example_stack: "main;f".into(),
            query_url: "/q".into(),
            svg_url: "/s".into(),
        };
        let b = anomalies_batch(&[a.clone(), a]).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema().field(0).name(), "anomaly_id");
    }
}
