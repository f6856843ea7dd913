//! Tenant authentication (token file), tenant isolation, per-tenant limits and the per-tenant
//! ingestion rate limit, over Connect, gRPC, `/ingest` and OTLP/HTTP.

use std::time::Duration;

use base64::Engine;
use prost::Message;
use stackdrift_proto::push::v1::pusher_service_client::PusherServiceClient;
use stackdrift_tests::client::{fixture_dated_now, push_request, sql_json_auth};

use crate::{now_secs, start, write_file};

const ACME: &str = "acme-token-0001";
const BETA: &str = "beta-token-0001";
const SMALL: &str = "small-token-001";
const SLOW: &str = "slow-token-0001";

struct Push<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    body: Vec<u8>,
}

impl Push<'_> {
    async fn send(
        &self,
        auth: Option<String>,
        tenant: Option<&str>,
    ) -> (u16, String, Option<String>) {
        let mut req = self
            .http
            .post(format!("{}/push.v1.PusherService/Push", self.url))
            .header("content-type", "application/proto")
            .body(self.body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(t) = tenant {
            req = req.header("x-scope-orgid", t);
        }
        let resp = req.send().await.unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (resp.status().as_u16(), resp.text().await.unwrap(), retry)
    }
}

fn bearer(t: &str) -> Option<String> {
    Some(format!("Bearer {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_the_tenant_and_limits_apply_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let auth = write_file(
        dir.path(),
        "auth.toml",
        &format!(
            "acme = \"{ACME}\"\nbeta = [\"{BETA}\"]\nsmall = \"{SMALL}\"\nslow = \"{SLOW}\"\n"
        ),
    );
    let limits = write_file(
        dir.path(),
        "limits.toml",
        "[tenants.small]\nmax_samples = 5\n\n\
         [tenants.slow]\ningestion_rate_bytes = 1000\ningestion_burst_bytes = 1000\n",
    );
    let sd = start(
        "auth",
        dir.path(),
        &["--auth-file", &auth, "--tenant-limits-file", &limits],
    );
    let url = sd.url.clone();
    let http = reqwest::Client::new();
    let p = fixture_dated_now("cpu_burn.pb.gz").encode_to_vec();
    let labels = |svc: &'static str| vec![("__name__", "process_cpu"), ("service_name", svc)];
    let push = |svc| Push {
        http: &http,
        url: &url,
        body: push_request(&labels(svc), p.clone()).encode_to_vec(),
    };

    // Missing, wrong or foreign credentials: 401, with a message and nothing stored.
    let basic = |user: &str, pass: &str| {
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    };
    for (auth, tenant, want) in [
        (None, None, "missing Authorization"),
        (bearer("nope-nope-nope"), None, "invalid token"),
        (basic("acme", "wrong-password"), None, "invalid token"),
        (bearer(ACME), Some("beta"), "not valid for tenant beta"),
        (
            Some("Token abc".into()),
            None,
            "unsupported Authorization scheme",
        ),
    ] {
        let (status, body, _) = push("intruder").send(auth.clone(), tenant).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(body.contains(want), "{auth:?}: {body}");
        assert!(!body.contains(ACME), "{body}");
    }
    let resp = http
        .post(format!("{url}/ingest?name=intruder&from={}", now_secs()))
        .body("a;b 1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .post(format!("{url}/v1development/profiles"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let mut grpc = PusherServiceClient::connect(url.clone()).await.unwrap();
    let err = grpc
        .push(push_request(&labels("intruder"), p.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // Each tenant writes with its own token (Bearer, Basic, gRPC metadata).
    assert_eq!(push("acme-api").send(bearer(ACME), None).await.0, 200);
    assert_eq!(
        push("acme-api").send(bearer(ACME), Some("acme")).await.0,
        200
    );
    assert_eq!(
        push("beta-api").send(basic("beta", BETA), None).await.0,
        200
    );
    let mut req = tonic::Request::new(push_request(&labels("beta-grpc"), p.clone()));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {BETA}").parse().unwrap());
    grpc.push(req).await.unwrap();
    let resp = http
        .post(format!(
            "{url}/ingest?name=acme-legacy.cpu&from={}",
            now_secs()
        ))
        .bearer_auth(ACME)
        .body("main;work 3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // …and reads only its own data, whatever its SQL says.
    let q = "SELECT tenant, service_name FROM samples GROUP BY 1, 2 ORDER BY 1, 2";
    let (s, rows) = sql_json_auth(&http, &url, None, Some(ACME), q).await;
    assert_eq!(s, 200);
    assert_eq!(
        rows,
        serde_json::json!([
            {"tenant": "acme", "service_name": "acme-api"},
            {"tenant": "acme", "service_name": "acme-legacy"}
        ])
    );
    let (_, rows) = sql_json_auth(
        &http,
        &url,
        None,
        Some(BETA),
        "SELECT tenant, service_name FROM samples WHERE tenant = 'acme' OR 1 = 1 \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    assert_eq!(
        rows,
        serde_json::json!([
            {"tenant": "beta", "service_name": "beta-api"},
            {"tenant": "beta", "service_name": "beta-grpc"}
        ])
    );
    let (s, body) = sql_json_auth(&http, &url, Some("acme"), None, q).await;
    assert_eq!(s, 401, "{body}");
    let (s, _) = sql_json_auth(&http, &url, Some("acme"), Some(BETA), q).await;
    assert_eq!(s, 401);

    // Per-tenant limit: `small` may send 5 samples per profile, others the default.
    let (status, body, _) = push("small-api").send(bearer(SMALL), None).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("the limit is 5"), "{body}");

    // Per-tenant rate: `slow` gets 1000 bytes/s with a 1000-byte burst. The first push is
    // admitted (and puts the bucket in debt), the next is refused with a Retry-After.
    let (status, _, _) = push("slow-api").send(bearer(SLOW), None).await;
    assert_eq!(status, 200);
    let (status, body, retry) = push("slow-api").send(bearer(SLOW), None).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("ingestion rate of 1000 bytes/s"), "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let mut req = tonic::Request::new(push_request(&labels("slow-api"), p.clone()));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {SLOW}").parse().unwrap());
    let err = grpc.push(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.metadata().get("retry-after").is_some());
    let resp = http
        .post(format!("{url}/ingest?name=slow-legacy&from={}", now_secs()))
        .bearer_auth(SLOW)
        .body("main;work 3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    // Other tenants are not slowed down by it.
    assert_eq!(push("acme-api").send(bearer(ACME), None).await.0, 200);

    // Rejections are counted by reason; accepted data per tenant; commits per table.
    let metrics = http
        .get(format!("{url}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["unauthenticated", "rate_limited", "too_many_samples"] {
        assert!(
            metrics.contains(&format!(
                "stackdrift_ingest_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason} missing from:\n{metrics}"
        );
    }
    for series in [
        "stackdrift_ingest_profiles_total{tenant=\"acme\"}",
        "stackdrift_ingest_samples_total{tenant=\"beta\"}",
        "stackdrift_ingest_received_bytes_total{tenant=\"acme\"}",
        "stackdrift_ingest_commit_seconds_count{table=\"samples\"}",
        "stackdrift_ingest_commit_seconds_count{table=\"stacks\"}",
        "stackdrift_ingest_flush_seconds_count",
        "stackdrift_ingest_encode_seconds_count",
        "stackdrift_ingest_batch_rows_count",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
}
