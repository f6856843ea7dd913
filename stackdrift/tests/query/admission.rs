//! Query admission: many concurrent heavy queries against a querier that runs two at a time
//! and lets two wait. The rest are refused at once with 429 and `Retry-After`; the gauges
//! never show more running or waiting than allowed; the querier's peak RSS (`VmHWM` from
//! /proc) stays within what two queries may hold plus a fixed allowance; the next query works.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use stackdrift_tests::client::{metrics_text, sql_json};
use stackdrift_tests::process::Stackdrift;

const RUNNING: i64 = 2;
const QUEUED: i64 = 2;
const CLIENTS: usize = 12;
const MEMORY_MIB: u64 = 64;
/// What the process may hold beyond its idle size and `RUNNING × MEMORY_MIB`: batches,
/// buffers and hash tables that DataFusion does not count against the pool, and the
/// allocator's caches. Measured in a debug build: see the assertion's message.
const ALLOWANCE_MIB: u64 = 384;

/// A grouping of 4 M rows into 2 M groups: seconds of work in a debug build and more hash
/// table than `MEMORY_MIB` allows, so each admitted query either finishes or fails cleanly
/// with 422 while it holds its slot.
const HEAVY: &str = "SELECT value % 2000000 AS k, count(*) AS n \
                     FROM generate_series(1, 4000000) GROUP BY k ORDER BY n DESC LIMIT 3";

/// The value of an unlabelled gauge in a Prometheus text exposition.
fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_heavy_queries_are_admitted_queued_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sd = Stackdrift::start_in(
        Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        "admission",
        dir.path(),
        &[
            "--max-concurrent-queries",
            &RUNNING.to_string(),
            "--max-queued-queries",
            &QUEUED.to_string(),
            "--query-memory-mib",
            &MEMORY_MIB.to_string(),
        ],
    );
    let http = reqwest::Client::new();
    let (status, body) = sql_json(&http, &sd.url, "acme", "SELECT 1 AS one").await;
    assert_eq!(status, 200, "{body}");
    let idle_kib = sd.peak_rss_kib();

    // Watch the gauges while the queries run.
    let done = Arc::new(AtomicBool::new(false));
    let (max_running, max_queued) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let watcher = {
        let (http, url) = (http.clone(), sd.url.clone());
        let (done, max_running, max_queued) =
            (done.clone(), max_running.clone(), max_queued.clone());
        tokio::spawn(async move {
            let mut polls = 0;
            while !done.load(Ordering::SeqCst) {
                let text = metrics_text(&http, &url).await;
                let running = gauge(&text, "stackdrift_query_running").expect("running gauge");
                let queued = gauge(&text, "stackdrift_query_queued").expect("queued gauge");
                max_running.fetch_max(running, Ordering::SeqCst);
                max_queued.fetch_max(queued, Ordering::SeqCst);
                polls += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            polls
        })
    };

    let started = Instant::now();
    let queries: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url) = (http.clone(), sd.url.clone());
            tokio::spawn(async move {
                let resp = http
                    .post(format!("{url}/api/v1/sql"))
                    .header("x-scope-orgid", "acme")
                    .body(HEAVY)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: serde_json::Value = resp.json().await.unwrap();
                (status, retry, body)
            })
        })
        .collect();
    let (mut ok, mut memory, mut refused) = (0, 0, 0);
    for q in queries {
        let (status, retry, body) = q.await.unwrap();
        match status {
            200 => {
                assert_eq!(body.as_array().map(Vec::len), Some(3), "{body}");
                ok += 1;
            }
            422 => {
                let msg = body["error"].as_str().unwrap();
                assert!(msg.contains("memory limit of 64 MiB"), "{msg}");
                memory += 1;
            }
            429 => {
                assert_eq!(
                    retry.as_deref(),
                    Some("1"),
                    "429 without Retry-After: {body}"
                );
                let msg = body["error"].as_str().unwrap();
                assert!(
                    msg.starts_with("querier overloaded:")
                        && msg.contains("--max-concurrent-queries"),
                    "{msg}"
                );
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let polls = watcher.await.unwrap();
    let peak_kib = sd.peak_rss_kib();
    eprintln!(
        "{CLIENTS} heavy queries in {elapsed:?}: {ok} answered, {memory} over the memory limit, \
         {refused} refused; gauges at most {} running, {} queued ({polls} polls); \
         peak RSS {} MiB, idle {} MiB",
        max_running.load(Ordering::SeqCst),
        max_queued.load(Ordering::SeqCst),
        peak_kib >> 10,
        idle_kib >> 10,
    );

    assert!(
        refused >= 1,
        "no query was refused: the querier admitted all {CLIENTS}"
    );
    assert!(ok + memory >= 1, "no query was admitted");
    assert!(max_running.load(Ordering::SeqCst) <= RUNNING);
    assert!(max_queued.load(Ordering::SeqCst) <= QUEUED);
    let bound_kib = idle_kib + ((RUNNING as u64 * MEMORY_MIB + ALLOWANCE_MIB) << 10);
    assert!(
        peak_kib <= bound_kib,
        "peak RSS {} MiB over idle {} + {RUNNING} × {MEMORY_MIB} + {ALLOWANCE_MIB} MiB",
        peak_kib >> 10,
        idle_kib >> 10
    );

    // Nothing is left waiting or running, and the next query works.
    let text = metrics_text(&http, &sd.url).await;
    assert_eq!(gauge(&text, "stackdrift_query_running"), Some(0));
    assert_eq!(gauge(&text, "stackdrift_query_queued"), Some(0));
    assert!(
        text.contains(r#"stackdrift_query_total{outcome="overloaded",tenant="acme"}"#),
        "refusals are not counted"
    );
    let (status, body) = sql_json(&http, &sd.url, "acme", "SELECT 2 AS two").await;
    assert_eq!(status, 200, "{body}");
}
