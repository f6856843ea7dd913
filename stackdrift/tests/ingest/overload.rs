//! Overload: far more concurrent pushes than the ingester can decode and commit. What does not
//! fit its in-flight memory budget (`--max-inflight-mib`) is refused at once with 429 and
//! `Retry-After`; its peak RSS (`VmHWM` from /proc) stays within the budget plus a fixed
//! allowance over its idle size; every acknowledged push is stored exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use stackdrift_model::{Frame, PprofBuilder};
use stackdrift_tests::client::{metrics_text, push_request, sql_json};

use crate::{now_secs, start};

const CLIENTS: u64 = 200;
const BUDGET_MIB: u64 = 32;
/// What the process may hold beyond its idle size and the budget. Measured in a debug build:
/// one push at a time of this profile (3,000 stacks) already lifts the peak by ~130 MiB
/// (decoding, normalizing, the Parquet and Delta write of its batch, allocator caches), and
/// 200 connections sending 147 KiB bodies add their buffers; with the budget at 4 / 32 /
/// 256 MiB the peak was idle + 194 / 226 / 390 MiB, and without a budget idle + 1,070 MiB.
const ALLOWANCE_MIB: u64 = 256;

/// A CPU profile with `stacks` distinct stacks of depth ~24 over a 2,000-function pool.
fn big_profile(stacks: u64) -> Vec<u8> {
    let mut b = PprofBuilder::new(
        &[("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    )
    .time(now_secs() as i64 * 1_000_000_000, 10_000_000_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..stacks {
        let mut frames = Vec::new();
        for _ in 0..24 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            frames.push(Frame::named(format!(
                "github.com/acme/shop/pkg{}.(*Handler).Function{}",
                x % 40,
                x % 2000
            )));
        }
        b.sample(&frames, &[10_000_000], &[]);
    }
    b.encode_gzip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_beyond_the_inflight_budget_get_429_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let budget = BUDGET_MIB.to_string();
    let ingester = start(
        "overload-ingester",
        dir.path(),
        &[
            "ingester",
            "--storage-url",
            &data_arg,
            "--max-inflight-mib",
            &budget,
            "--ingestion-rate-bytes",
            "0",
            "--flush-interval-ms",
            "200",
        ],
    );
    let idle_mib = ingester.peak_rss_kib() / 1024;
    let profile = big_profile(3_000);
    eprintln!("push body: {} KiB gzipped", profile.len() / 1024);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(CLIENTS as usize)
        .build()
        .unwrap();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, acked, refused, stop, profile) = (
            http.clone(),
            ingester.url.clone(),
            acked.clone(),
            refused.clone(),
            stop.clone(),
            profile.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("{c}-{n}");
                n += 1;
                let labels = [
                    ("__name__", "process_cpu"),
                    ("service_name", "overload"),
                    ("push", id.as_str()),
                ];
                let body = push_request(&labels, profile.clone()).encode_to_vec();
                let resp = http
                    .post(format!("{url}/push.v1.PusherService/Push"))
                    .header("content-type", "application/proto")
                    .body(body)
                    .send()
                    .await
                    .expect("the ingester stays up and answers");
                match resp.status().as_u16() {
                    200 => {
                        acked.lock().unwrap().insert(id);
                    }
                    429 => {
                        assert_eq!(
                            resp.headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok()),
                            Some("1"),
                            "429 without Retry-After"
                        );
                        let text = resp.text().await.unwrap_or_default();
                        assert!(text.contains("memory limit for pushes in flight"), "{text}");
                        refused.fetch_add(1, Ordering::Relaxed);
                        // Overload on purpose: retry far sooner than Retry-After asks.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("unexpected status {other}: {}", resp.text().await.unwrap()),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let peak_mib = ingester.peak_rss_kib() / 1024;
    let metrics = metrics_text(&http, &ingester.url).await;
    let acked = acked.lock().unwrap().clone();
    let refused = refused.load(Ordering::Relaxed);
    eprintln!(
        "{} pushes acknowledged, {refused} refused with 429; RSS idle {idle_mib} MiB, \
         peak {peak_mib} MiB (budget {BUDGET_MIB} MiB)",
        acked.len()
    );
    assert!(refused > 0, "{CLIENTS} clients never hit the budget");
    assert!(!acked.is_empty(), "nothing was admitted");
    assert!(
        peak_mib <= idle_mib + BUDGET_MIB + ALLOWANCE_MIB,
        "peak RSS {peak_mib} MiB over idle {idle_mib} + budget {BUDGET_MIB} + allowance \
         {ALLOWANCE_MIB} MiB"
    );
    assert!(
        metrics.contains("stackdrift_ingest_rejected_total{reason=\"inflight_limit\"}"),
        "no inflight_limit rejections in /metrics"
    );
    assert!(
        metrics.contains("stackdrift_ingest_inflight_bytes 0\n"),
        "reservations not given back:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("inflight"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(ingester);

    // Every acknowledged push is stored once, nothing refused is.
    let querier = start(
        "overload-querier",
        dir.path(),
        &["querier", "--storage-url", &data_arg],
    );
    let (status, rows) = sql_json(
        &http,
        &querier.url,
        "anonymous",
        "SELECT push, CAST(SUM(value) AS BIGINT) AS v FROM samples \
         WHERE service_name = 'overload' GROUP BY push",
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let stored: BTreeMap<String, i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["push"].as_str().unwrap().to_owned(),
                r["v"].as_i64().unwrap(),
            )
        })
        .collect();
    let per_push = 3_000 * 10_000_000i64;
    for id in &acked {
        assert_eq!(stored.get(id), Some(&per_push), "push {id} stored wrongly");
    }
    assert_eq!(
        stored.len(),
        acked.len(),
        "stored pushes that were not acknowledged"
    );
}
