//! The binary on S3: an ingester configured by `--s3-*` flags and a querier configured only by
//! the usual AWS environment variables share tables on an S3 server running in this test
//! (`s3s-fs` on 127.0.0.1).

use std::path::Path;
use std::time::Duration;

use prost::Message;
use stackdrift_tests::client::{fixture_dated_now, metrics_text, push_request, sql_json};
use stackdrift_tests::process::Stackdrift;
use stackdrift_tests::reference::function_totals;
use stackdrift_tests::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use stackdrift_tests::sql;

/// The flags that put a `stackdrift` on the test's S3 server, under `url`.
fn s3_flags<'a>(url: &'a str, endpoint: &'a str) -> Vec<&'a str> {
    vec![
        "--storage-url",
        url,
        "--s3-endpoint",
        endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-access-key-id",
        ACCESS_KEY,
        "--s3-secret-access-key",
        SECRET_KEY,
        "--s3-allow-http",
        "--s3-path-style",
    ]
}

/// Starts `stackdrift all` (plus `extra` flags) on `s3`, with its tables under
/// `s3://BUCKET/{name}`; returns the process and its working directory.
fn start_all_on_s3(s3: &S3Server, name: &str, extra: &[&str]) -> (Stackdrift, tempfile::TempDir) {
    let endpoint = s3.endpoint();
    let url = format!("s3://{BUCKET}/{name}");
    let cwd = tempfile::tempdir().unwrap();
    let sd = Stackdrift::start_in(
        Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        name,
        cwd.path(),
        &[&["all"][..], &s3_flags(&url, &endpoint), extra].concat(),
    );
    (sd, cwd)
}

/// A Connect push body: one CPU profile of `service` dated now, holding one stack `main` →
/// `function` worth 10, so SQL finds each push by its function's self value.
fn one_function_push(service: &str, function: &str) -> Vec<u8> {
    use stackdrift_tests::client::{cpu_profile, now_ns};
    push_request(
        &[("__name__", "process_cpu"), ("service_name", service)],
        cpu_profile(now_ns(), 10, &[(&["main", function], 10)]),
    )
    .encode_to_vec()
}

/// Runs a count over `samples` while the store is unreachable: expects 503 `storage
/// unavailable` and returns how long the answer took.
async fn query_while_store_is_out(http: &reqwest::Client, url: &str) -> Duration {
    let started = std::time::Instant::now();
    let resp = http
        .post(format!("{url}/api/v1/sql"))
        .body("SELECT count(*) AS n FROM samples")
        .send()
        .await
        .expect("a query while the store is out gets an answer");
    let took = started.elapsed();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 503, "query while the store is out: {body}");
    assert!(body.contains("storage unavailable"), "{body}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_share_tables_on_s3() {
    let s3 = S3Server::start().await;
    let endpoint = s3.endpoint();
    let url = format!("s3://{BUCKET}/e2e");
    let bin = Path::new(env!("CARGO_BIN_EXE_stackdrift"));
    let cwd = tempfile::tempdir().unwrap();

    let ingester = Stackdrift::start_in(
        bin,
        "ingester",
        cwd.path(),
        &[&["ingester"][..], &s3_flags(&url, &endpoint)].concat(),
    );
    // A profile dated now, so the default age limit accepts it.
    let p = fixture_dated_now("cpu_burn.pb.gz");
    let push = push_request(
        &[("__name__", "process_cpu"), ("service_name", "on-s3")],
        p.encode_to_vec(),
    );
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/push.v1.PusherService/Push", ingester.url))
        .header("content-type", "application/proto")
        .body(push.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert!(ingester.terminate(Duration::from_secs(60)).success());
    assert!(
        s3.file_count("e2e/samples") > 1,
        "samples files on the S3 server"
    );

    // The querier gets its S3 settings from the AWS environment variables alone.
    let querier = Stackdrift::start_with_env(
        bin,
        "querier",
        cwd.path(),
        &["querier", "--storage-url", &url],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ],
    );
    let (status, rows) = sql_json(
        &http,
        &querier.url,
        "anonymous",
        &sql::function_totals_sql(
            "anonymous",
            "on-s3",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        ),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let got = sql::totals_from_json(&rows);
    assert_eq!(got, function_totals(&p, "cpu"));
    assert!(querier.terminate(Duration::from_secs(30)).success());
}

/// No secret reaches the logs (at debug level) or the metrics: not the S3 secret key, not a
/// tenant's token (as sent, nor as a Basic header's base64), not the webhook's password or
/// tokens; the requests refused for a wrong token do not echo it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_or_metrics() {
    use base64::Engine;

    const TOKEN: &str = "tok-acme-7f3a9c2e51d8";
    const OTHER: &str = "tok-beta-0b6e4d2a93c1";
    const WRONG: &str = "tok-wrong-5e8d1c7b2a04";
    const HOOK_PASSWORD: &str = "hookpw-31c9e7a5";
    const WEBHOOK_TOKEN: &str = "whtok-8a2f6d0c";
    const GRAFANA_TOKEN: &str = "glsa_6c1e9b4f2d7a";

    let s3 = S3Server::start().await;
    let endpoint = s3.endpoint();
    let url = format!("s3://{BUCKET}/secrets");
    let cwd = tempfile::tempdir().unwrap();
    let auth = cwd.path().join("auth.toml");
    std::fs::write(&auth, format!("acme = \"{TOKEN}\"\nbeta = \"{OTHER}\"\n")).unwrap();
    let hook = format!("json=http://alert:{HOOK_PASSWORD}@127.0.0.1:9/hook");
    let sd = Stackdrift::start_in(
        Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        "secrets",
        cwd.path(),
        &[
            &["all"][..],
            &s3_flags(&url, &endpoint),
            &[
                "--auth-file",
                auth.to_str().unwrap(),
                "--webhook",
                &hook,
                "--webhook-token",
                WEBHOOK_TOKEN,
                "--grafana-token",
                GRAFANA_TOKEN,
                "--log-level",
                "debug",
            ],
        ]
        .concat(),
    );
    let log = sd.log();
    let http = reqwest::Client::new();
    let push = push_request(
        &[("__name__", "process_cpu"), ("service_name", "vault")],
        fixture_dated_now("cpu_burn.pb.gz").encode_to_vec(),
    )
    .encode_to_vec();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("acme:{TOKEN}"));
    for (auth, expect) in [
        (format!("Bearer {TOKEN}"), 200),
        (format!("Basic {basic}"), 200),
        (format!("Bearer {WRONG}"), 401),
        (format!("Bearer {OTHER}x"), 401),
    ] {
        let resp = http
            .post(format!("{}/push.v1.PusherService/Push", sd.url))
            .header("content-type", "application/proto")
            .header("authorization", &auth)
            .body(push.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expect, "{:?}", resp.text().await);
    }
    for (token, expect) in [(TOKEN, 200), (WRONG, 401)] {
        let resp = http
            .post(format!("{}/api/v1/sql", sd.url))
            .bearer_auth(token)
            .body("SELECT count(*) AS n FROM samples")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expect);
        let body = resp.text().await.unwrap();
        assert!(!body.contains(WRONG), "the error echoes the token: {body}");
    }
    let metrics = metrics_text(&http, &sd.url).await;
    assert!(metrics.contains("stackdrift_ingest_"), "no ingest metrics");
    assert!(sd.terminate(Duration::from_secs(60)).success());
    std::thread::sleep(Duration::from_millis(200));

    let lines = log.lock().unwrap().clone();
    assert!(
        lines.len() > 20 && lines.iter().any(|l| l.contains("\"DEBUG\"")),
        "expected a debug log, got {} lines",
        lines.len()
    );
    // The settings that carry secrets are logged, without them.
    assert!(lines.iter().any(|l| l.contains("s3://profiles/secrets")));
    let secrets = [
        SECRET_KEY,
        TOKEN,
        OTHER,
        WRONG,
        basic.as_str(),
        HOOK_PASSWORD,
        WEBHOOK_TOKEN,
        GRAFANA_TOKEN,
    ];
    for secret in secrets {
        let leaks: Vec<_> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret:?} in the log: {leaks:#?}");
        assert!(!metrics.contains(secret), "{secret:?} in /metrics");
    }
}

/// What became of one push during the outage test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    /// 503 or 429, with `Retry-After`.
    Refused,
}

/// The S3 server stops for 60 s during steady ingest into a `stackdrift all` (ingester,
/// querier, compactor and detector on S3). While it is down, pushes are refused with 503 and
/// `Retry-After` within the store's retry bound (no push hangs) and a query fails with 503
/// instead of hanging; the process stays up. When the server returns, ingest resumes, the
/// compactor completes a pass, and every acknowledged push is in the tables exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_outage_refuses_pushes_loses_nothing_acknowledged_and_recovers() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    const CLIENTS: usize = 4;
    const OUTAGE: Duration = Duration::from_secs(60);
    const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

    let mut s3 = S3Server::start().await;
    let (mut sd, _cwd) = start_all_on_s3(
        &s3,
        "outage",
        &[
            "--flush-interval-ms",
            "200",
            "--compaction-interval-secs",
            "5",
            "--detector-poll",
            "2s",
        ],
    );
    let log = sd.log();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(45))
        .build()
        .unwrap();

    // Each push carries one stack whose leaf names it, worth 10, so SQL counts it.
    let outcomes: Arc<Mutex<BTreeMap<String, Outcome>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, url, outcomes, stop, slowest) = (
                http.clone(),
                sd.url.clone(),
                outcomes.clone(),
                stop.clone(),
                slowest.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("push_{c}_{n}");
                    n += 1;
                    let started = Instant::now();
                    let resp = http
                        .post(format!("{url}/push.v1.PusherService/Push"))
                        .header("content-type", "application/proto")
                        .body(one_function_push("steady", &name))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
                    let took = started.elapsed();
                    {
                        let mut s = slowest.lock().unwrap();
                        *s = (*s).max(took);
                    }
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().get("retry-after").cloned();
                    let body = resp.text().await.unwrap();
                    let outcome = match status {
                        200 => Outcome::Acked,
                        503 | 429 => {
                            assert!(
                                retry_after.is_some(),
                                "{name}: {status} without Retry-After"
                            );
                            Outcome::Refused
                        }
                        other => panic!("{name}: unexpected {other}: {body}"),
                    };
                    outcomes.lock().unwrap().insert(name, outcome);
                    if outcome == Outcome::Refused {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            })
        })
        .collect();
    let count = |o: Outcome| {
        outcomes
            .lock()
            .unwrap()
            .values()
            .filter(|v| **v == o)
            .count()
    };

    tokio::time::sleep(Duration::from_secs(5)).await;
    let acked_before = count(Outcome::Acked);
    assert!(acked_before > 0, "nothing acknowledged before the outage");

    // The outage.
    s3.stop().await;
    let down = Instant::now();
    let log_mark = log.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let query_took = query_while_store_is_out(&http, &sd.url).await;
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    let refused_during = count(Outcome::Refused);
    let acked_during = count(Outcome::Acked) - acked_before;
    assert!(sd.alive(), "stackdrift exited during the outage");

    // The store returns; ingest resumes.
    s3.restart().await;
    let back = count(Outcome::Acked);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(Outcome::Acked) < back + 20 {
        assert!(
            Instant::now() < deadline,
            "ingest did not resume after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    // The compactor completes a pass over what was written around the outage, and the
    // detector, whose steps failed while the store was down, resumes.
    let lines_since_outage = |needle: &str| {
        log.lock().unwrap()[log_mark..]
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    for (needle, what) in [
        (
            "compaction pass done",
            "no compaction pass after the outage",
        ),
        (
            "detector resumed",
            "the detector did not resume after the outage",
        ),
    ] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while lines_since_outage(needle) == 0 {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let failed_passes = lines_since_outage("compaction pass failed");
    let failed_steps = lines_since_outage("detector step failed");
    assert!(
        failed_steps > 0,
        "no detector step failed during the outage"
    );
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        "anonymous",
        "SELECT count(*) AS n FROM anomalies",
    )
    .await;
    assert_eq!(status, 200, "the anomalies table after the outage: {rows}");

    let (status, rows) = sql_json(
        &http,
        &sd.url,
        "anonymous",
        &sql::function_totals_sql("anonymous", "steady", CPU),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let stored = sql::totals_from_json(&rows);
    let outcomes = outcomes.lock().unwrap().clone();
    let mut refused_but_stored = 0;
    let mut wrong = Vec::new();
    for (name, outcome) in &outcomes {
        let self_value = stored.get(name).map_or(0, |v| v.0);
        match outcome {
            Outcome::Acked if self_value != 10 => {
                wrong.push(format!("{name}: acknowledged, stored {self_value} / 10"))
            }
            Outcome::Refused if self_value != 0 && self_value != 10 => {
                wrong.push(format!("{name}: refused, stored {self_value} / 10"))
            }
            Outcome::Refused => refused_but_stored += usize::from(self_value == 10),
            Outcome::Acked => {}
        }
    }
    if !wrong.is_empty() {
        for q in [
            "SELECT count(*) AS n, sum(value) AS v FROM samples WHERE service_name = 'steady'",
            "SELECT count(*) AS n FROM stacks WHERE service_name = 'steady'",
        ] {
            let (_, rows) = sql_json(&http, &sd.url, "anonymous", q).await;
            eprintln!("{q}: {rows}");
        }
        panic!(
            "{} of {} pushes stored wrongly: {:#?}",
            wrong.len(),
            outcomes.len(),
            &wrong[..wrong.len().min(20)]
        );
    }
    eprintln!(
        "outage: {} pushes ({acked_before} acknowledged before, {acked_during} during, {refused_during} \
         refused during); slowest answer {:?}; query during the outage answered 503 in \
         {query_took:?}; {failed_passes} compaction passes and {failed_steps} detector steps failed during it; \
         {refused_but_stored} refused pushes were stored anyway",
        outcomes.len(),
        *slowest.lock().unwrap(),
    );
    assert!(
        refused_during > 0,
        "no push was refused while the store was down"
    );
    assert!(
        query_took < Duration::from_secs(30),
        "the query took {query_took:?}"
    );
    assert!(sd.alive());
    assert!(sd.terminate(Duration::from_secs(60)).success());
    // The log stays machine-readable throughout, panics caught inside dependencies included.
    let log = log.lock().unwrap();
    let unstructured: Vec<&String> = log
        .iter()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert!(
        unstructured.is_empty(),
        "{} log lines are not JSON, e.g. {:?}",
        unstructured.len(),
        &unstructured[..unstructured.len().min(5)]
    );
}

/// A store that accepts connections and never answers (overloaded, or cut off mid-path): a
/// push and a query get an answer, 503, within the object-store client's per-request
/// timeout and retry bounds instead of hanging; the process stays up; once the store answers
/// again pushes are acknowledged and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_store_gets_bounded_answers() {
    use std::time::Instant;

    const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let mut s3 = S3Server::start().await;
    let (mut sd, _cwd) = start_all_on_s3(&s3, "hang", &["--flush-interval-ms", "200"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let push_url = format!("{}/push.v1.PusherService/Push", sd.url);
    let push = |name: &str| {
        http.post(&push_url)
            .header("content-type", "application/proto")
            .body(one_function_push("hang", name))
            .send()
    };
    let resp = push("before_hang").await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    s3.stall().await;
    let started = Instant::now();
    let resp = push("during_hang")
        .await
        .expect("an answer during the hang");
    let push_took = started.elapsed();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").cloned();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 503, "push during the hang: {body}");
    assert!(retry_after.is_some(), "503 without Retry-After: {body}");

    let query_took = query_while_store_is_out(&http, &sd.url).await;
    assert!(sd.alive(), "stackdrift exited during the hang");

    s3.restart().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let resp = push("after_hang").await.unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pushes still refused after the store came back: {} {}",
            resp.status(),
            resp.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        "anonymous",
        &sql::function_totals_sql("anonymous", "hang", CPU),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let stored = sql::totals_from_json(&rows);
    let self_value = |name: &str| stored.get(name).map_or(0, |v| v.0);
    assert_eq!(self_value("before_hang"), 10, "{rows}");
    assert_eq!(self_value("after_hang"), 10, "{rows}");
    assert!(
        [0, 10].contains(&self_value("during_hang")),
        "the refused push is stored partly: {rows}"
    );
    eprintln!(
        "hanging store: the push was refused after {push_took:?}, the query after {query_took:?}"
    );
    // Bounds: object_store's 30 s per-request timeout, a few requests in a row.
    assert!(push_took < Duration::from_secs(150), "{push_took:?}");
    assert!(query_took < Duration::from_secs(150), "{query_took:?}");
    assert!(sd.terminate(Duration::from_secs(60)).success());
}
