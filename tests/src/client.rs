//! Talking to a running stackdrift the way clients do: push requests and the SQL API.

use std::time::{SystemTime, UNIX_EPOCH};

use stackdrift_model::pprof::decode_profile;
use stackdrift_model::{Frame, PprofBuilder};
use stackdrift_proto::pprof::Profile;
use stackdrift_proto::push::v1::PushRequest;

/// A `push.v1` request with one series (`labels`) holding one profile.
pub fn push_request(labels: &[(&str, &str)], profile: Vec<u8>) -> PushRequest {
    PushRequest::one_profile(
        labels.iter().copied(),
        profile,
        "00000000-0000-0000-0000-000000000001",
    )
}

/// A gzipped 10 s CPU profile (values in nanoseconds, sampling `period` ns) starting at
/// `time_ns`, holding `stacks`: each a root-first list of function names and its value.
pub fn cpu_profile(time_ns: i64, period: i64, stacks: &[(&[&str], i64)]) -> Vec<u8> {
    let mut b = PprofBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), period)
        .time(time_ns, 10_000_000_000);
    for (stack, value) in stacks {
        // pprof lists a sample's locations leaf first.
        let frames: Vec<Frame> = stack.iter().rev().map(|f| Frame::named(*f)).collect();
        b.sample(&frames, &[*value], &[]);
    }
    b.encode_gzip()
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// A checked-in fixture, decoded, with its time set to now (so age limits accept it).
pub fn fixture_dated_now(name: &str) -> Profile {
    let mut p = decode_profile(&crate::fixture(name), 1 << 30).expect("fixture decodes");
    p.time_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    p
}

/// Runs `query` through `POST {url}/api/v1/sql` as `tenant`; returns the status and the JSON
/// body.
pub async fn sql_json(
    http: &reqwest::Client,
    url: &str,
    tenant: &str,
    query: &str,
) -> (u16, serde_json::Value) {
    sql_json_auth(http, url, Some(tenant), None, query).await
}

/// [`sql_json`] with an optional tenant header and an optional bearer token.
pub async fn sql_json_auth(
    http: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    token: Option<&str>,
    query: &str,
) -> (u16, serde_json::Value) {
    let mut req = http
        .post(format!("{url}/api/v1/sql"))
        .body(query.to_owned());
    if let Some(t) = tenant {
        req = req.header("x-scope-orgid", t);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("SQL request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// The Prometheus text of `GET {url}/metrics`.
pub async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}
