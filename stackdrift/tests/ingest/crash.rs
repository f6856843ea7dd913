//! Crash safety: `stackdrift ingester` is killed with SIGKILL at a random moment while several
//! clients push, then restarted on the same tables, ten times over. Every acknowledged push
//! must be in the tables exactly once; an unacknowledged one may be there, but only whole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use stackdrift_tests::client::{fixture_dated_now, push_request, sql_json};

use crate::{crash_seed, next_random, start};

const CYCLES: usize = 10;
const CLIENTS: usize = 4;

/// A seeded sequence of kill delays (the seed is printed so a failure can be replayed).
fn delays(mut seed: u64) -> Vec<Duration> {
    (0..CYCLES)
        .map(|_| Duration::from_millis(300 + next_random(&mut seed) % 1700))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_kill_9_exactly_once() {
    let seed = crash_seed("ingester crash test");
    let dir = tempfile::tempdir().unwrap();
    let profile = fixture_dated_now("cpu_burn.pb.gz").encode_to_vec();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    for (cycle, delay) in delays(seed).into_iter().enumerate() {
        let sd = start(
            "crash-ingester",
            dir.path(),
            &[
                "ingester",
                "--flush-interval-ms",
                "100",
                "--ingestion-rate-bytes",
                "0",
                "--max-profile-age-secs",
                "0",
            ],
        );
        let url = sd.url.clone();
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (http, url, profile) = (http.clone(), url.clone(), profile.clone());
            let (acked, sent) = (acked.clone(), sent.clone());
            clients.push(tokio::spawn(async move {
                for n in 0.. {
                    let id = format!("c{cycle}-w{c}-{n}");
                    let labels = [
                        ("__name__", "process_cpu"),
                        ("service_name", "crash"),
                        ("push_id", id.as_str()),
                    ];
                    let body = push_request(&labels, profile.clone()).encode_to_vec();
                    sent.lock().unwrap().insert(id.clone());
                    let resp = http
                        .post(format!("{url}/push.v1.PusherService/Push"))
                        .header("content-type", "application/proto")
                        .body(body)
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(id);
                        }
                        // Killed mid-request or refused: not acknowledged, stop this client.
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(delay).await;
        sd.kill9();
        for c in clients {
            c.await.unwrap();
        }
        eprintln!(
            "cycle {cycle}: killed after {delay:?}; {} pushes acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    // Read everything back through a fresh querier on the same tables.
    let sd = start("crash-querier", dir.path(), &["querier"]);
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        "anonymous",
        "SELECT push_id, COUNT(*) AS n, CAST(SUM(value) AS BIGINT) AS v FROM samples \
         GROUP BY push_id",
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let stored: BTreeMap<String, (i64, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["push_id"].as_str().unwrap().to_owned(),
                (r["n"].as_i64().unwrap(), r["v"].as_i64().unwrap()),
            )
        })
        .collect();
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        acked.len() >= CYCLES * CLIENTS,
        "too few pushes acknowledged to mean anything: {}",
        acked.len()
    );

    // One push stored once: the fixture's two sample types, its distinct stacks each.
    let p = stackdrift_model::pprof::decode_profile(&profile, 1 << 30).unwrap();
    let want_value: i64 = p.sample.iter().flat_map(|s| s.value.iter()).sum();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let want = stored[acked.first().unwrap()];
    assert_eq!(want.1, want_value, "one push's total");
    for (id, got) in &stored {
        assert!(sent.contains(id), "stored but never sent: {id}");
        assert_eq!(*got, want, "push {id} stored partially or more than once");
    }
    eprintln!(
        "{} acknowledged, {} sent, {} stored (the rest unacknowledged and absent)",
        acked.len(),
        sent.len(),
        stored.len()
    );
}
