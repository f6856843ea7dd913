//! `stackdrift` with no role, no flags but the listen address, and no config file: every role
//! in one process, data in `./data`. A push over Connect JSON (gzip) is queryable with SQL in
//! the same process; a profile older than the default age limit is refused with 422.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use prost::Message;
use stackdrift_model::pprof::decode_profile;
use stackdrift_tests::client::{fixture_dated_now, sql_json};
use stackdrift_tests::fixture;
use stackdrift_tests::process::Stackdrift;

fn push_json(service: &str, profile: &[u8]) -> Vec<u8> {
    let body = serde_json::json!({
        "series": [{
            "labels": [
                {"name": "__name__", "value": "process_cpu"},
                {"name": "service_name", "value": service},
                {"name": "region", "value": "eu-west"}
            ],
            "samples": [{
                "rawProfile": base64::engine::general_purpose::STANDARD.encode(profile),
                "ID": "6f1c2a3e-0000-4000-8000-000000000000"
            }]
        }]
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// `stackdrift` with no arguments (but the test's listen address) in `dir`.
fn start_all(dir: &Path) -> Stackdrift {
    Stackdrift::start_in(Path::new(env!("CARGO_BIN_EXE_stackdrift")), "all", dir, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_roles_start_with_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let sd = start_all(dir.path());
    let http = reqwest::Client::new();
    let url = sd.url.clone();
    let ready = http.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(dir.path().join("data/samples/_delta_log").is_dir());
    assert!(dir.path().join("data/stacks/_delta_log").is_dir());

    // The checked-in fixture was recorded long ago: by default it is too old.
    let old = fixture("cpu_burn.pb.gz");
    let push = |body: Vec<u8>| {
        http.post(format!("{url}/push.v1.PusherService/Push"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
    };
    let resp = push(push_json("all-in-one", &old)).await.unwrap();
    assert_eq!(resp.status(), 422);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("in the past"),
        "{err}"
    );

    // The same profile dated now is accepted.
    let p = fixture_dated_now("cpu_burn.pb.gz");
    let resp = push(push_json("all-in-one", &p.encode_to_vec()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);

    // Acknowledged means committed: SQL sees it at once.
    let total: i64 = p
        .sample
        .iter()
        .map(|s| s.value[1]) // cpu nanoseconds
        .sum();
    let rows: serde_json::Value = http
        .get(format!("{url}/api/v1/sql"))
        .query(&[(
            "query",
            "SELECT CAST(SUM(value) AS BIGINT) AS v, MIN(region) AS region FROM samples \
             WHERE profile_type = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds'",
        )])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows, serde_json::json!([{"v": total, "region": "eu-west"}]));

    let status = sd.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_ingest_accepts_pprof_and_folded() {
    let dir = tempfile::tempdir().unwrap();
    let sd = start_all(dir.path());
    let http = reqwest::Client::new();
    let url = sd.url.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ingest = |query: String, body: Vec<u8>| {
        http.post(format!("{url}/ingest?{query}"))
            .header("content-type", "binary/octet-stream")
            .body(body)
            .send()
    };

    // pprof, gzipped, as pyroscope-io sends it; `from` (seconds) dates the old fixture now.
    let resp = ingest(
        format!(
            "name=legacy.cpu%7Benv%3Dstaging%7D&from={now}&until={}&format=pprof&sampleRate=100&spyName=pyspy",
            now + 10
        ),
        fixture("cpu_burn.pb.gz"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    // Folded text, the default format; `from` in milliseconds.
    let resp = ingest(
        format!("name=folded-app%7Bregion%3Dus%7D&from={}", now * 1000),
        b"main;work;hash 3\nmain;idle 1\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);

    // Bad requests: a status and a one-line reason, nothing stored.
    for (query, body, status, needle) in [
        ("format=pprof", b"x".to_vec(), 400, "name"),
        ("name=a&format=jfr", b"x".to_vec(), 415, "jfr"),
        ("name=a&from=soon", b"a 1".to_vec(), 400, "invalid time"),
        ("name=bad-fold", b"main;x y".to_vec(), 400, "line 1"),
        ("name=a&format=pprof", b"garbage".to_vec(), 400, "profile"),
    ] {
        let resp = ingest(query.to_owned(), body).await.unwrap();
        assert_eq!(resp.status(), status, "{query}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(needle), "{query}: {text}");
    }

    let sql = |q: String| {
        let (http, url) = (http.clone(), url.clone());
        async move { sql_json(&http, &url, "anonymous", &q).await.1 }
    };
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let rows = sql(stackdrift_tests::sql::function_totals_sql(
        "anonymous",
        "legacy",
        cpu,
    ))
    .await;
    let p = decode_profile(&fixture("cpu_burn.pb.gz"), 1 << 30).unwrap();
    assert_eq!(
        stackdrift_tests::sql::totals_from_json(&rows),
        stackdrift_tests::reference::function_totals(&p, "cpu")
    );
    let rows = sql(format!(
        "SELECT service_name, env, region, CAST(SUM(value) AS BIGINT) AS v, \
         CAST(to_unixtime(MIN(time)) AS BIGINT) AS t FROM samples \
         WHERE profile_type = '{cpu}' GROUP BY 1, 2, 3 ORDER BY 1"
    ))
    .await;
    assert_eq!(
        rows,
        serde_json::json!([
            {"service_name": "folded-app", "region": "us", "v": 40_000_000, "t": now},
            {"service_name": "legacy", "env": "staging", "t": now,
             "v": p.sample.iter().map(|s| s.value[1]).sum::<i64>()},
        ])
    );
    let rows =
        sql("SELECT count(*) AS n FROM samples WHERE service_name IN ('a', 'bad-fold')".into())
            .await;
    assert_eq!(rows, serde_json::json!([{"n": 0}]));
    assert!(sd.terminate(Duration::from_secs(30)).success());
}
