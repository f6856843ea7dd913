//! The detector end to end, against the `stackdrift` binary: 150 one-minute windows of CPU
//! profiles of one service are pushed to an ingester (a deploy from `1.4.1` to `1.4.2` at
//! window 120), then `stackdrift all` on the same data backfills the detector over them.
//!
//! * `regression_after_deploy_is_stored_listed_and_notified`: after the deploy `json.encode`
//!   costs 6 % more of the total. The detector must report it (once, as a regression of
//!   `json.encode`, not of its callers), list it in `/api/v1/anomalies` and SQL, post it to a
//!   JSON webhook the test runs, and link a diff flame graph that renders.
//!   Then the web UI is checked in a real browser against the same server (see
//!   [`browser_acceptance`]): flame graph, anomaly list, the anomaly's diff, SQL console.
//! * `deploy_without_change_reports_nothing`: the same deploy, no change of weights: once
//!   the detector has evaluated every pushed window, nothing is reported or notified.
//! * `ui_dist_is_built_from_ui_src`: the web UI embedded in the binary (`ui/dist`) is what
//!   `scripts/build-ui.sh` makes of `ui/src` now.
//!
//! The noise is seeded (the same data every run); `DETECTOR_SEED=N` draws other noise.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use prost::Message;
use serde_json::Value;
use stackdrift_detector::eval::Rng;
use stackdrift_model::{Frame, PprofBuilder};
use stackdrift_tests::client::{push_request, sql_json};
use stackdrift_tests::process::Stackdrift;

const WINDOW_S: i64 = 60;
/// Windows pushed.
const WINDOWS: i64 = 150;
/// First window of version `1.4.2`.
const DEPLOY: i64 = 120;
const SERVICE: &str = "payments";
const OLD: &str = "1.4.1";
const NEW: &str = "1.4.2";
/// Pushes carry no tenant header.
const TENANT: &str = "anonymous";
/// Not the server's address (that is only known once it listens): the prefix of diff links.
const PUBLIC_URL: &str = "http://profiles.test:4040";
/// How long the detector may take to report.
const DETECT_TIMEOUT: Duration = Duration::from_secs(120);

/// The program: stacks (root first, `;`-joined) and mean samples per window; 8,000 in all.
const STACKS: [(&str, f64); 20] = [
    ("main;http.serve;handler;db.query", 1500.0),
    ("main;http.serve;handler;db.query;net.read", 500.0),
    ("main;http.serve;handler;db.query;sql.parse", 550.0),
    ("main;http.serve;handler;json.encode", 400.0),
    ("main;http.serve;handler;json.encode;reflect.value", 150.0),
    ("main;http.serve;handler;auth.verify", 350.0),
    ("main;http.serve;handler;auth.verify;crypto.hmac", 450.0),
    ("main;http.serve;handler;template.render", 300.0),
    ("main;http.serve;handler;cache.get", 300.0),
    ("main;http.serve;handler;cache.get;hash.compute", 200.0),
    ("main;http.serve;tls.handshake", 400.0),
    ("main;http.serve;tls.handshake;crypto.ecdsa", 350.0),
    ("main;http.serve;read.request", 300.0),
    ("main;http.serve;write.response", 250.0),
    ("main;gc", 600.0),
    ("main;gc;gc.mark", 500.0),
    ("main;gc;gc.sweep", 250.0),
    ("main;runtime.schedule", 300.0),
    ("main;log.write", 200.0),
    ("main;metrics.collect", 150.0),
];
/// The stack whose leaf regresses, and by how much (6 % of 8,000).
const REGRESSING: &str = "main;http.serve;handler;json.encode";
const REGRESSION: f64 = 480.0;

/// One pushed profile.
struct Pushed {
    version: &'static str,
    profile: Vec<u8>,
}

/// What one scenario pushes.
struct Dataset {
    /// Window index (`unix µs / window µs`) of window 0.
    first_window: i64,
    profiles: Vec<Pushed>,
}

impl Dataset {
    /// The window index of window `k`.
    fn window(&self, k: i64) -> i64 {
        self.first_window + k
    }

    /// Start of window `k`, Unix ms.
    fn start_ms(&self, k: i64) -> i64 {
        self.window(k) * WINDOW_S * 1000
    }
}

/// [`WINDOWS`] windows ending at the last whole minute before now, one CPU profile each;
/// from window [`DEPLOY`] on, version `1.4.2`, and with `regress` [`REGRESSING`] costs
/// [`REGRESSION`] samples more. The noise is drawn from `seed`, or from `DETECTOR_SEED` when
/// set (to replay other data).
fn dataset(seed: u64, regress: bool) -> Dataset {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let first_window = now_s / WINDOW_S - WINDOWS;
    let seed = match std::env::var("DETECTOR_SEED") {
        Ok(v) => v.parse().expect("DETECTOR_SEED: an unsigned integer"),
        Err(_) => seed,
    };
    eprintln!("data seed: DETECTOR_SEED={seed}");
    let mut rng = Rng::new(seed);
    let mut profiles = Vec::new();
    for k in 0..WINDOWS {
        let start_s = (first_window + k) * WINDOW_S;
        let after = k >= DEPLOY;
        let mut b = PprofBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 10_000_000)
            .time((start_s + 5) * 1_000_000_000, WINDOW_S * 1_000_000_000);
        for (stack, mean) in STACKS {
            let mean = if after && regress && stack == REGRESSING {
                mean + REGRESSION
            } else {
                mean
            };
            let frames: Vec<Frame> = stack.split(';').rev().map(Frame::named).collect();
            b.sample(&frames, &[rng.poisson(mean) as i64], &[]);
        }
        profiles.push(Pushed {
            version: if after { NEW } else { OLD },
            profile: b.encode_gzip(),
        });
    }
    Dataset {
        first_window,
        profiles,
    }
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stackdrift"))
}

/// Pushes every profile of `data` (25 at a time) through the push API; each must be accepted.
async fn push_all(http: &reqwest::Client, url: &str, data: &Dataset) {
    for chunk in data.profiles.chunks(25) {
        let mut pushes = tokio::task::JoinSet::new();
        for p in chunk {
            let labels = [
                ("__name__", "process_cpu"),
                ("service_name", SERVICE),
                ("version", p.version),
                ("region", "eu-west"),
            ];
            let body = push_request(&labels, p.profile.clone()).encode_to_vec();
            let req = http
                .post(format!("{url}/push.v1.PusherService/Push"))
                .header("content-type", "application/proto")
                .body(body);
            pushes.spawn(async move {
                let resp = req.send().await.expect("push request");
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                assert_eq!(status, 200, "push refused: {text}");
            });
        }
        while let Some(r) = pushes.join_next().await {
            r.expect("push task");
        }
    }
}

/// Starts an ingester on `dir`, pushes `data` and stops the ingester.
async fn ingest(http: &reqwest::Client, dir: &Path, data: &Dataset) {
    let ingester = Stackdrift::start_in(
        bin(),
        "ingester",
        dir,
        &["ingester", "--max-profile-age-secs", "0"],
    );
    push_all(http, &ingester.url, data).await;
    let status = ingester.terminate(Duration::from_secs(30));
    assert!(status.success(), "ingester exited with {status}");
}

/// Bodies the webhook sink received.
type Received = Arc<Mutex<Vec<Value>>>;

async fn hook(State(received): State<Received>, Json(body): Json<Value>) -> StatusCode {
    received.lock().unwrap().push(body);
    StatusCode::OK
}

/// A webhook sink on 127.0.0.1: its URL, and what it received.
async fn webhook_sink() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the webhook sink");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("webhook sink") });
    (format!("http://{addr}/hook"), received)
}

/// `stackdrift all` on `dir` with the detector settings of these tests, notifying `webhook`.
fn start_all(dir: &Path, webhook: &str) -> Stackdrift {
    let webhook = format!("json={webhook}");
    Stackdrift::start_in(
        bin(),
        "all",
        dir,
        &[
            "all",
            "--max-profile-age-secs",
            "0",
            "--detector-window",
            "1m",
            "--detector-settle",
            "0s",
            "--detector-baseline-windows",
            "60",
            "--detector-backfill",
            "3h",
            "--detector-poll",
            "1s",
            "--webhook",
            &webhook,
            "--public-url",
            PUBLIC_URL,
        ],
    )
}

/// The detector's progress object, once written.
fn progress(dir: &Path) -> Option<Value> {
    let path = dir.join("data/anomalies/_detector/progress.json");
    let bytes = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&bytes).expect("progress.json is JSON"))
}

/// Whether the detector has evaluated window `last` and has nothing left to notify.
fn evaluated(dir: &Path, last: i64) -> bool {
    progress(dir).is_some_and(|p| {
        p["next_window"].as_i64().is_some_and(|n| n > last)
            && p["pending"].as_array().is_some_and(Vec::is_empty)
    })
}

/// `GET /api/v1/anomalies` for the service over the last 4 hours.
async fn listed(http: &reqwest::Client, url: &str) -> Vec<Value> {
    let resp = http
        .get(format!(
            "{url}/api/v1/anomalies?service={SERVICE}&from=now-4h"
        ))
        .send()
        .await
        .expect("anomalies request");
    let status = resp.status();
    let text = resp.text().await.expect("anomalies body");
    assert_eq!(status, 200, "/api/v1/anomalies: {text}");
    let json: Value = serde_json::from_str(&text).expect("anomalies JSON");
    json["anomalies"]
        .as_array()
        .unwrap_or_else(|| panic!("no `anomalies` array: {json}"))
        .clone()
}

/// The state of the detector, for failure messages.
async fn diagnostics(http: &reqwest::Client, url: &str, dir: &Path, received: &Received) -> String {
    let (status, rows) = sql_json(
        http,
        url,
        TENANT,
        "SELECT kind, baseline, metric, function, window_start, window_end, version_before, \
         version_after, baseline_share, current_share, delta, p_value, service_name \
         FROM anomalies ORDER BY window_start, function",
    )
    .await;
    let (_, samples) = sql_json(
        http,
        url,
        TENANT,
        "SELECT version, COUNT(DISTINCT time) AS profiles, SUM(value) AS samples, \
         MIN(time) AS first, MAX(time) AS last FROM samples GROUP BY version ORDER BY version",
    )
    .await;
    format!(
        "anomalies table (HTTP {status}): {rows:#}\nsamples: {samples}\nprogress.json: {}\n\
         webhook bodies: {:#}",
        progress(dir).map_or("(not written)".into(), |p| p.to_string()),
        Value::Array(received.lock().unwrap().clone()),
    )
}

/// The server must still hold all pushed profiles.
async fn assert_all_profiles_stored(http: &reqwest::Client, url: &str) {
    let (status, rows) = sql_json(
        http,
        url,
        TENANT,
        &format!("SELECT COUNT(DISTINCT time) AS n FROM samples WHERE service_name = '{SERVICE}'"),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows[0]["n"], WINDOWS, "{rows}");
}

fn is_json_encode_regression(a: &Value) -> bool {
    a["function"] == "json.encode" && a["kind"] == "regression"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_after_deploy_is_stored_listed_and_notified() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let data = dataset(0x5eed_2024_0001, true);
    ingest(&http, dir.path(), &data).await;
    eprintln!("pushed {WINDOWS} windows in {:?}", started.elapsed());

    let (webhook, received) = webhook_sink().await;
    let mut sd = start_all(dir.path(), &webhook);
    let url = sd.url.clone();
    assert_all_profiles_stored(&http, &url).await;

    // Until the webhook has the regression of json.encode.
    let deadline = Instant::now() + DETECT_TIMEOUT;
    loop {
        if received
            .lock()
            .unwrap()
            .iter()
            .any(is_json_encode_regression)
        {
            break;
        }
        if !sd.alive() {
            panic!(
                "stackdrift exited while the detector ran\n{}",
                diagnostics(&http, &url, dir.path(), &received).await
            );
        }
        if Instant::now() > deadline {
            panic!(
                "no regression of json.encode was notified within {DETECT_TIMEOUT:?} \
                 (deploy at window {}, {} ms)\n{}",
                data.window(DEPLOY),
                data.start_ms(DEPLOY),
                diagnostics(&http, &url, dir.path(), &received).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("notified after {:?}", started.elapsed());
    let diag = diagnostics(&http, &url, dir.path(), &received).await;

    // The API lists it, dated at the deploy.
    let anomalies = listed(&http, &url).await;
    let deploy_ms = data.start_ms(DEPLOY);
    let found: Vec<&Value> = anomalies
        .iter()
        .filter(|a| is_json_encode_regression(a))
        .collect();
    let at_deploy = found
        .iter()
        .find(|a| {
            a["window_start_ms"]
                .as_i64()
                .is_some_and(|s| (deploy_ms..=deploy_ms + 2 * WINDOW_S * 1000).contains(&s))
        })
        .unwrap_or_else(|| {
            panic!(
                "/api/v1/anomalies has no regression of json.encode starting within 2 windows \
                 of the deploy ({deploy_ms} ms): {found:#?}\n{diag}"
            )
        });
    eprintln!("reported: {at_deploy}");
    assert_eq!(at_deploy["service_name"], SERVICE, "{at_deploy:#}");
    assert_eq!(at_deploy["version_after"], NEW, "{at_deploy:#}");
    if at_deploy["baseline"] == "rolling" {
        assert_eq!(at_deploy["version_before"], OLD, "{at_deploy:#}");
    }
    assert!(
        at_deploy["current_share"].as_f64() > at_deploy["baseline_share"].as_f64(),
        "{at_deploy:#}"
    );
    // No false alarm about json.encode before the deploy.
    for a in &found {
        let start = a["window_start_ms"].as_i64().unwrap_or(0);
        assert!(
            start >= deploy_ms,
            "regression of json.encode before the deploy: {a:#}\n{diag}"
        );
    }
    // Callers are not reported: the change is json.encode's.
    for a in &anomalies {
        if a["kind"] == "regression" {
            assert!(
                !["main", "http.serve", "handler"].contains(&a["function"].as_str().unwrap_or("")),
                "a caller of json.encode is reported: {a:#}\n{diag}"
            );
        }
    }

    // SQL sees it.
    let (status, rows) = sql_json(
        &http,
        &url,
        TENANT,
        &format!("SELECT function, kind FROM anomalies WHERE service_name = '{SERVICE}'"),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert!(
        rows.as_array()
            .is_some_and(|r| r.iter().any(is_json_encode_regression)),
        "SQL does not list the regression: {rows:#}"
    );

    // The webhook body.
    let body = received
        .lock()
        .unwrap()
        .iter()
        .find(|b| is_json_encode_regression(b) && b["anomaly_id"] == at_deploy["anomaly_id"])
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the webhook did not get anomaly {} listed by the API\n{diag}",
                at_deploy["anomaly_id"]
            )
        });
    assert_eq!(body["service"], SERVICE, "{body:#}");
    assert_eq!(body["function"], "json.encode", "{body:#}");
    assert_eq!(body["version_after"], NEW, "{body:#}");
    let svg_url = at_deploy["svg_url"].as_str().expect("svg_url").to_owned();
    assert!(svg_url.starts_with('/'), "{svg_url}");
    assert_eq!(
        body["diff_url"].as_str(),
        Some(format!("{PUBLIC_URL}{svg_url}").as_str()),
        "{body:#}"
    );

    // The diff flame graph renders and names the function.
    let resp = http
        .get(format!("{url}{svg_url}"))
        .send()
        .await
        .expect("diff.svg request");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let svg = resp.text().await.expect("diff.svg body");
    assert_eq!(status, 200, "GET {svg_url}: {svg}");
    assert!(
        content_type.starts_with("image/svg+xml"),
        "GET {svg_url}: content type {content_type:?}"
    );
    assert!(svg.contains("<svg"), "not an SVG: {svg:.300}");
    assert!(
        svg.contains("json.encode"),
        "the diff does not name json.encode"
    );

    // Each anomaly is notified once: wait until nothing is pending and a few polls more.
    let last = data.window(WINDOWS - 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !evaluated(dir.path(), last) {
        assert!(
            Instant::now() < deadline,
            "notifications still pending after 30 s: {:?}",
            progress(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bodies = received.lock().unwrap().clone();
    let mut ids = HashSet::new();
    for b in &bodies {
        let id = b["anomaly_id"].as_str().expect("anomaly_id").to_owned();
        assert!(ids.insert(id), "notified twice: {b:#}");
        assert_eq!(
            b["kind"], "regression",
            "only regressions are notified: {b:#}"
        );
    }
    for a in listed(&http, &url)
        .await
        .iter()
        .filter(|a| a["kind"] == "regression")
    {
        let id = a["anomaly_id"].as_str().unwrap_or("");
        assert!(ids.contains(id), "regression {a:#} was not notified");
    }
    eprintln!(
        "{} anomalies listed, {} notified after {:?}",
        anomalies.len(),
        bodies.len(),
        started.elapsed()
    );

    // The CLI lists it too, with an absolute link to its diff.
    let cli = std::process::Command::new(bin())
        .args(["anomalies", "--url", &url, "--kind", "regression"])
        .output()
        .expect("running stackdrift anomalies");
    let table = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        table.lines().any(|l| l.contains("regression")
            && l.contains("json.encode")
            && l.contains(&format!("{url}/api/v1/diff.svg?"))),
        "stackdrift anomalies does not list the regression of json.encode:\n{table}"
    );

    // The web UI shows the same in a browser.
    browser_acceptance(&url, &data).await;
    eprintln!("test took {:?}", started.elapsed());
    let status = sd.terminate(Duration::from_secs(30));
    assert!(status.success(), "stackdrift all exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_without_change_reports_nothing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let data = dataset(0x0dd_5eed_7777, false);
    ingest(&http, dir.path(), &data).await;

    let (webhook, received) = webhook_sink().await;
    let mut sd = start_all(dir.path(), &webhook);
    let url = sd.url.clone();
    assert_all_profiles_stored(&http, &url).await;

    // Until every pushed window is evaluated and nothing is left to notify.
    let last = data.window(WINDOWS - 1);
    let deadline = Instant::now() + DETECT_TIMEOUT;
    while !evaluated(dir.path(), last) {
        if !sd.alive() {
            panic!(
                "stackdrift exited while the detector ran\n{}",
                diagnostics(&http, &url, dir.path(), &received).await
            );
        }
        if Instant::now() > deadline {
            panic!(
                "the detector did not evaluate window {last} within {DETECT_TIMEOUT:?}\n{}",
                diagnostics(&http, &url, dir.path(), &received).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reported: Vec<Value> = listed(&http, &url)
        .await
        .into_iter()
        .filter(|a| a["kind"] == "regression" || a["kind"] == "improvement")
        .collect();
    assert!(
        reported.is_empty(),
        "anomalies reported without any change: {reported:#?}\n{}",
        diagnostics(&http, &url, dir.path(), &received).await
    );
    assert!(
        received.lock().unwrap().is_empty(),
        "notified without any change\n{}",
        diagnostics(&http, &url, dir.path(), &received).await
    );
    eprintln!("no change: test took {:?}", started.elapsed());
    let status = sd.terminate(Duration::from_secs(30));
    assert!(status.success(), "stackdrift all exited with {status}");
}

/// The repository's root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the repository")
        .to_owned()
}

/// Cargo's target directory (the one holding the binary under test).
fn target_dir() -> PathBuf {
    bin()
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/stackdrift")
        .to_owned()
}

/// Runs `scripts/browser-env.sh` with `what` (`ui` or `all`) and returns its `KEY=VALUE`
/// lines. It installs, once and cached under target/, TypeScript, playwright-core and
/// Debian's Chromium.
async fn browser_env(what: &str) -> BTreeMap<String, String> {
    let out = tokio::process::Command::new(repo_root().join("scripts/browser-env.sh"))
        .arg(what)
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running scripts/browser-env.sh");
    assert!(
        out.status.success(),
        "scripts/browser-env.sh {what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The function of the widest node below the root: the heaviest first frame of [`STACKS`].
fn widest_function() -> &'static str {
    let mut by_root: BTreeMap<&str, f64> = BTreeMap::new();
    for (stack, mean) in STACKS {
        *by_root.entry(stack.split(';').next().unwrap()).or_default() += mean;
    }
    by_root
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("stacks")
        .0
}

/// The function with the most self time, before and after the deploy.
fn hottest_leaf() -> &'static str {
    let (stack, _) = STACKS
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("stacks");
    stack.rsplit(';').next().unwrap()
}

/// The web UI against the running server, in Debian's Chromium driven by playwright-core
/// (`tests/browser/ui_test.mjs`): the flame graph of the service over the last 3 hours has
/// the expected widest function, tooltip, zoom and search; the anomaly list shows the
/// regression; its diff link opens the diff view with `json.encode` marked as a (red)
/// regression, and so does a diff of the ranges before and after the deploy; the SQL console
/// shows the anomaly's row and a refused statement's error. Screenshots of every view go to
/// `target/ui-test/`.
async fn browser_acceptance(url: &str, data: &Dataset) {
    let started = Instant::now();
    let env = browser_env("all").await;
    eprintln!(
        "browser environment ready in {:?}: {env:?}",
        started.elapsed()
    );
    let shots = target_dir().join("ui-test");
    let function = REGRESSING.rsplit(';').next().unwrap();
    let baseline = format!("{},{}", data.start_ms(0), data.start_ms(DEPLOY) - 1);
    let comparison = format!("{},{}", data.start_ms(DEPLOY), data.start_ms(WINDOWS) - 1);
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(repo_root().join("tests/browser/ui_test.mjs"))
        .env("STACKDRIFT_URL", url)
        .env("CHROMIUM", &env["chromium"])
        .env("PLAYWRIGHT_MODULES", &env["node_modules"])
        .env("SCREENSHOT_DIR", &shots)
        .env("EXPECT_SERVICE", SERVICE)
        .env("EXPECT_TOP", widest_function())
        .env("EXPECT_HOT", hottest_leaf())
        .env("EXPECT_REGRESSED", function)
        .env("DIFF_BASELINE", &baseline)
        .env("DIFF_COMPARISON", &comparison)
        .env("DIFF_LABEL", "version")
        .env("DIFF_VALUES", format!("{OLD},{NEW}"))
        .env("FILTER", "region=eu-west")
        // The pushed windows end at the last whole minute and span 150 minutes.
        .env("RANGE", "now-3h")
        .env("TENANT", TENANT)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the browser test did not finish within 240 s")
        .expect("running node (Node.js 20+ must be installed)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed ({}); screenshots in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        shots.display()
    );
    eprintln!(
        "{stdout}browser test passed in {:?}; screenshots in {}",
        started.elapsed(),
        shots.display()
    );
}

/// `ui/dist` (embedded in the binary) must be what `scripts/build-ui.sh` builds from
/// `ui/src` with the pinned compiler: the build is deterministic, so byte for byte.
#[tokio::test]
async fn ui_dist_is_built_from_ui_src() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(repo_root().join("scripts/build-ui.sh"))
        .arg(out_dir.path())
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running scripts/build-ui.sh");
    assert!(
        out.status.success(),
        "scripts/build-ui.sh failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["app.js", "index.html", "style.css"] {
        let built = std::fs::read(out_dir.path().join(name)).expect("built file");
        let committed = std::fs::read(repo_root().join("ui/dist").join(name)).expect("ui/dist");
        assert!(
            built == committed,
            "ui/dist/{name} is not what scripts/build-ui.sh builds from ui/src: \
             run scripts/build-ui.sh and commit ui/dist"
        );
    }
}
