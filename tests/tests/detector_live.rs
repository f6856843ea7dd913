//! The detector's live mode against replay, on the same tables: live mode stopped and
//! restarted part-way reports exactly what one replay over the whole range reports, nothing
//! twice, and the `anomalies` table holds each anomaly once.

use std::collections::BTreeSet;
use std::time::Duration;

use stackdrift_detector::eval::{Fleet, FleetSpec};
use stackdrift_detector::{Detector, DetectorConfig};
use stackdrift_model::labels::{LabelLimits, Labels};
use stackdrift_model::{Frame, ProfileBuilder};
use stackdrift_storage::{StorageConfig, Store, TenantProfile};

const WINDOW_US: i64 = 60_000_000;
const CPU: &str = "process_cpu:samples:count:cpu:nanoseconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_with_a_restart_reports_what_replay_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StorageConfig::local(dir.path())).await.unwrap();
    // Four services, 260 windows: deploys at 80 and 170 (regressions, shifts, nothing).
    let start = 29_000_000 * WINDOW_US;
    let windows = 260;
    let spec = FleetSpec {
        services: 4,
        noise_only: 1,
        windows,
        ..FleetSpec::small(start)
    };
    let mut fleet = Fleet::new(spec);
    let pt = CPU.parse().unwrap();
    for first in (0..windows).step_by(20) {
        let mut batch = Vec::new();
        for w in first..(first + 20).min(windows) {
            for p in fleet.window(w) {
                let mut b = ProfileBuilder::new(128);
                let labels = Labels::new(
                    [
                        ("service_name", p.service.as_str()),
                        ("version", p.version.as_str()),
                    ],
                    &LabelLimits::default(),
                )
                .unwrap();
                let series = b.series(&labels, &pt);
                for (stack, count) in &p.stacks {
                    let frames: Vec<Frame> = stack
                        .iter()
                        .rev()
                        .map(|f| Frame::named(f.as_str()))
                        .collect();
                    let id = b.stack(frames);
                    b.add(series, id, *count as i64).unwrap();
                }
                batch.push(TenantProfile {
                    tenant: "acme".into(),
                    profile: b.finish(start + w * WINDOW_US + 1_000_000, WINDOW_US),
                });
            }
        }
        store.append(&batch).await.unwrap();
    }
    let regressions = fleet
        .injected
        .iter()
        .filter(|i| i.change == stackdrift_detector::eval::Change::Regression)
        .count();
    assert!(regressions >= 2);

    let end = start + windows * WINDOW_US;
    let cfg = DetectorConfig {
        settle: Duration::ZERO,
        seasonal: false,
        backfill: Duration::from_secs(u64::try_from(windows * 60).unwrap()),
        ..DetectorConfig::default()
    };
    // Live: a first process runs to window 120 and stops; a second resumes from the stored
    // progress to the end.
    let mut first = Detector::new(store.clone(), cfg.clone()).unwrap();
    let a = first.step(start + 120 * WINDOW_US).await.unwrap();
    drop(first);
    let mut second = Detector::new(store.clone(), cfg.clone()).unwrap();
    let b = second.step(end).await.unwrap();
    // A step with nothing new closed adds nothing.
    let again = second.step(end).await.unwrap();
    assert!(again.is_empty());

    let live: Vec<String> = a.iter().chain(&b).map(|x| x.anomaly_id.clone()).collect();
    let live_set: BTreeSet<String> = live.iter().cloned().collect();
    assert_eq!(live.len(), live_set.len(), "an anomaly was reported twice");
    assert!(
        b.iter().any(|x| x.kind == "regression"),
        "the second process found the later regressions: {b:#?}"
    );

    // Replay over the whole range finds the same anomalies, and stores none again.
    let mut replay = Detector::new(store.clone(), cfg).unwrap();
    let r = replay.replay(start, end).await.unwrap();
    let replay_set: BTreeSet<String> = r.iter().map(|x| x.anomaly_id.clone()).collect();
    assert_eq!(live_set, replay_set);

    let ctx = datafusion::prelude::SessionContext::new();
    store.register(&ctx, None).await.unwrap();
    let rows = ctx
        .sql("SELECT count(*) AS n, count(DISTINCT anomaly_id) AS d FROM anomalies")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let n = rows[0].column(0).as_primitive::<Int64Type>().value(0);
    let distinct = rows[0].column(1).as_primitive::<Int64Type>().value(0);
    assert_eq!(
        (n, distinct),
        (live_set.len() as i64, live_set.len() as i64)
    );
}

/// Hourly windows over 8 days: a batch job makes `batch.run` heavy from 10:00 to 13:00 every
/// day. The first day it is new and reported; later days the same hours a day (and a week)
/// earlier show it too, so it is vetoed. A real regression on day 5 is still reported, marked
/// as checked against the seasonal baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_patterns_are_vetoed_by_the_seasonal_baseline() {
    const HOUR: i64 = 3_600_000_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StorageConfig::local(dir.path())).await.unwrap();
    let start = 20_000 * 24 * HOUR; // a UTC midnight
    let pt = CPU.parse().unwrap();
    let mut rng = stackdrift_detector::eval::Rng::new(9);
    let mut batch = Vec::new();
    for h in 0..8 * 24 {
        let hour_of_day = h % 24;
        let batch_job = (10..13).contains(&hour_of_day);
        let regressed = h >= 5 * 24 + 3;
        let mix: [(&[&str], f64); 5] = [
            (&["main", "serve", "db.query"], 4000.0),
            (
                &["main", "serve", "json.encode"],
                if regressed { 1600.0 } else { 1000.0 },
            ),
            (&["main", "serve"], 2000.0),
            (&["main", "gc"], 1500.0),
            (
                &["main", "batch.run"],
                if batch_job { 2500.0 } else { 100.0 },
            ),
        ];
        let mut b = ProfileBuilder::new(16);
        let labels = Labels::new([("service_name", "shop")], &LabelLimits::default()).unwrap();
        let series = b.series(&labels, &pt);
        for (stack, mean) in mix {
            let frames: Vec<Frame> = stack.iter().rev().map(|f| Frame::named(*f)).collect();
            let id = b.stack(frames);
            b.add(series, id, rng.poisson(mean) as i64).unwrap();
        }
        batch.push(TenantProfile {
            tenant: "acme".into(),
            profile: b.finish(start + h * HOUR + 60_000_000, HOUR),
        });
    }
    store.append(&batch).await.unwrap();

    let mut cfg = DetectorConfig {
        window: Duration::from_secs(3600),
        settle: Duration::ZERO,
        cooldown_windows: 6,
        ..DetectorConfig::default()
    };
    cfg.detect.baseline_windows = 12;
    cfg.detect.min_baseline_windows = 4;
    let mut detector = Detector::new(store.clone(), cfg).unwrap();
    let found = detector.replay(start, start + 8 * 24 * HOUR).await.unwrap();
    let day = |a: &stackdrift_storage::Anomaly| (a.window_end_us - start) / (24 * HOUR);
    let batch_days: BTreeSet<i64> = found
        .iter()
        .filter(|a| a.function == "batch.run")
        .map(day)
        .collect();
    assert_eq!(
        batch_days,
        BTreeSet::from([0]),
        "the daily batch job is reported on its first day only: {found:#?}"
    );
    let json: Vec<_> = found
        .iter()
        .filter(|a| a.function == "json.encode" && a.kind == "regression")
        .collect();
    assert_eq!(json.len(), 1, "{found:#?}");
    assert_eq!(day(json[0]), 5);
    assert_eq!(json[0].baseline, "rolling+seasonal");
}
