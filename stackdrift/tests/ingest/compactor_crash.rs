//! Crash safety of the compactor: `stackdrift compactor --once` is killed with SIGKILL at a
//! random point of its pass, over and over, while an ingester keeps committing small files
//! that the compactor merges. Every acknowledged push must be in the tables exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stackdrift_tests::client::sql_json;

use crate::{crash_seed, next_random, start};

const CYCLES: usize = 12;
/// Acknowledged pushes the check needs before it means anything.
const MIN_PUSHES: usize = 200;

/// The compactor's arguments: 2-second windows that close 1 s after they end, so every pass
/// has merges to do while pushes keep arriving.
fn compactor_args(data: &str) -> Vec<String> {
    [
        "compactor",
        "--once",
        "--storage-url",
        data,
        "--compaction-window",
        "2s",
        "--compaction-settle",
        "1s",
        "--log-level",
        "warn",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn run_compactor(data: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_stackdrift"))
        .args(compactor_args(data))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the compactor")
}

/// Runs one pass to its end; returns its summary (stdout).
fn run_compactor_to_end(data: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stackdrift"))
        .args(compactor_args(data))
        .stdin(Stdio::null())
        .output()
        .expect("running the compactor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_killed_at_random_points_loses_and_duplicates_nothing() {
    let mut seed = crash_seed("compactor crash test");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let ingester = start(
        "ingester",
        dir.path(),
        &[
            "ingester",
            "--storage-url",
            &data_arg,
            "--flush-interval-ms",
            "50",
            "--ingestion-rate-bytes",
            "0",
        ],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut pushers = Vec::new();
    for w in 0..2u64 {
        let (http, url, acked, stop) = (
            http.clone(),
            ingester.url.clone(),
            acked.clone(),
            stop.clone(),
        );
        pushers.push(tokio::spawn(async move {
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                // Two stacks, 8 samples at the default 100 Hz: 2 rows, 80 ms of CPU.
                let resp = http
                    .post(format!(
                        "{url}/ingest?name=crashsvc{{push={n}}}&format=folded&spyName=test"
                    ))
                    .body("main;work;a 5\nmain;work;b 3\n")
                    .send()
                    .await
                    .expect("push");
                assert_eq!(
                    resp.status(),
                    200,
                    "{}",
                    resp.text().await.unwrap_or_default()
                );
                acked.lock().unwrap().insert(n);
                n += 2;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Let some files pile up, then time one uninterrupted pass to pick kill points from.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    run_compactor_to_end(&data_arg);
    let mut full = started.elapsed();
    eprintln!("one full compaction pass: {full:?}");
    let mut killed_mid_pass = 0;
    // At least CYCLES kills, and more (up to 3×) until half of them hit a running pass: how
    // long a pass takes depends on what else the machine is doing, so a kill point drawn from
    // the first pass's duration may come after a later, quicker pass has ended.
    for cycle in 0..CYCLES * 3 {
        if cycle >= CYCLES && killed_mid_pass >= CYCLES / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = next_random(&mut seed);
        // Uniform over one pass: most kills land inside it, some after it ended.
        let delay = Duration::from_micros(r % (full.as_micros() as u64).max(1));
        let mut child = run_compactor(&data_arg);
        tokio::time::sleep(delay).await;
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        let status = child.wait().unwrap();
        if finished {
            // Passes are quicker now: draw later kill points from the shorter range.
            full = full.min(delay.max(Duration::from_millis(1)));
        } else {
            killed_mid_pass += 1;
        }
        eprintln!("cycle {cycle}: kill after {delay:?} ({status})");
    }
    // On a loaded machine the pushes may be slower than the cycles: keep pushing until there
    // are enough of them for the check below to mean something.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() <= MIN_PUSHES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await.unwrap();
    }
    // A clean pass at the end, then read everything back.
    let out = run_compactor_to_end(&data_arg);
    assert!(
        killed_mid_pass >= CYCLES / 2,
        "only {killed_mid_pass} kills hit a running pass"
    );
    drop(ingester);

    let querier = start(
        "querier",
        dir.path(),
        &["querier", "--storage-url", &data_arg],
    );
    let (status, rows) = sql_json(
        &http,
        &querier.url,
        "anonymous",
        "SELECT push, COUNT(*) AS n, CAST(SUM(value) AS BIGINT) AS v FROM samples \
         WHERE service_name = 'crashsvc' GROUP BY push",
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let stored: BTreeMap<u64, (i64, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["push"].as_str().unwrap().parse().unwrap(),
                (r["n"].as_i64().unwrap(), r["v"].as_i64().unwrap()),
            )
        })
        .collect();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > MIN_PUSHES,
        "too few pushes to mean anything: {}",
        acked.len()
    );
    let lost: Vec<&u64> = acked.iter().filter(|n| !stored.contains_key(n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    for (n, got) in &stored {
        assert!(acked.contains(n), "stored but never acknowledged: {n}");
        assert_eq!(
            *got,
            (2, 80_000_000),
            "push {n} stored partially or more than once"
        );
    }
    eprintln!(
        "{} pushes acknowledged and stored once; {killed_mid_pass} kills mid-pass",
        acked.len()
    );
    // And the compactor did merge: the last pass leaves far fewer files than pushes.
    let files_after: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("samples: "))
        .and_then(|l| l.split("-> ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no samples summary in {out:?}"));
    assert!(
        files_after * 4 < acked.len(),
        "{files_after} files for {} pushes",
        acked.len()
    );
}
