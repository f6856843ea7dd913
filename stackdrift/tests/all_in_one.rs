//! `stackdrift` with no role, no flags but the listen address, and no config file: every role
//! in one process, data in `./data`. A push over Connect JSON (gzip) is queryable with SQL in
//! the same process; a profile older than the default age limit is refused with 422.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use prost::Message;
use stackdrift_model::pprof::decode_profile;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_roles_start_with_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let sd = Stackdrift::start_in(
        Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        "all",
        dir.path(),
        &[],
    );
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
    let mut p = decode_profile(&old, 1 << 30).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    p.time_nanos = now.as_nanos() as i64;
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
