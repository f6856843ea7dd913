//! Access control across every API of a `stackdrift all` with tenant tokens on
//! (`--auth-file`): each HTTP route, the `querier.v1` and push gRPC services and Flight SQL is
//! called with no token, a wrong token, and another tenant's token naming this tenant: all
//! refused with 401 (gRPC `UNAUTHENTICATED`); with its own token a tenant sees its data and
//! none of the other tenant's.

use std::time::{SystemTime, UNIX_EPOCH};

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use prost::Message;
use stackdrift_proto::querier::v1 as q;
use stackdrift_tests::client::{cpu_profile, now_ns, push_request};
use stackdrift_tests::process::Stackdrift;

const ACME: &str = "acme-token-0123456789";
const BETA: &str = "beta-token-0123456789";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn profile(function: &str) -> Vec<u8> {
    cpu_profile(
        now_ns() - 60_000_000_000,
        10_000_000,
        &[(&["main", function], 70)],
    )
}

/// Credentials of one attempt: the `Authorization` value and the `X-Scope-OrgID`.
type Creds = (Option<&'static str>, Option<&'static str>);

const REFUSED: [(&str, Creds); 3] = [
    ("no token", (None, None)),
    (
        "a wrong token",
        (Some("Bearer wrong-token-0123456789"), None),
    ),
    (
        "beta's token naming acme",
        (Some("Bearer beta-token-0123456789"), Some("acme")),
    ),
];

fn with(req: reqwest::RequestBuilder, (auth, org): Creds) -> reqwest::RequestBuilder {
    let req = match auth {
        Some(a) => req.header("authorization", a),
        None => req,
    };
    match org {
        Some(o) => req.header("x-scope-orgid", o),
        None => req,
    }
}

fn grpc_request<T>(msg: T, (auth, org): Creds) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(a) = auth {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    if let Some(o) = org {
        req.metadata_mut()
            .insert("x-scope-orgid", o.parse().unwrap());
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_needs_a_valid_token_and_sees_only_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("auth.toml");
    std::fs::write(&tokens, format!("acme = \"{ACME}\"\nbeta = \"{BETA}\"\n")).unwrap();
    let data = dir.path().join("data");
    let sd = Stackdrift::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        "access",
        &[
            "all",
            "--storage-url",
            data.to_str().unwrap(),
            "--auth-file",
            tokens.to_str().unwrap(),
        ],
    );
    let url = sd.url.clone();
    let http = reqwest::Client::new();
    let acme: Creds = (Some("Bearer acme-token-0123456789"), None);
    let beta: Creds = (Some("Bearer beta-token-0123456789"), None);

    // Each tenant pushes one profile with a function only it has.
    for (creds, service, function) in [
        (acme, "acme-shop", "acme_secret_pricing"),
        (beta, "beta-shop", "beta_checkout"),
    ] {
        let body = push_request(
            &[("__name__", "process_cpu"), ("service_name", service)],
            profile(function),
        )
        .encode_to_vec();
        let resp = with(
            http.post(format!("{url}/push.v1.PusherService/Push"))
                .header("content-type", "application/proto")
                .body(body),
            creds,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let range = format!(r#""start": "{}", "end": "{}""#, now_ms - 3_600_000, now_ms);
    let acme_query = urlencode(&format!("{CPU}{{service_name=\"acme-shop\"}}"));
    // (method, path, content type, body)
    let http_apis: Vec<(&str, String, &str, String)> = vec![
        ("POST", "/push.v1.PusherService/Push".into(), "application/proto", String::new()),
        ("POST", format!("/ingest?name=x&from={}", now_ms / 1000), "text/plain", "a;b 1".into()),
        ("POST", "/v1development/profiles".into(), "application/json", "{}".into()),
        (
            "POST",
            "/api/v1/sql".into(),
            "text/plain",
            "SELECT service_name, COUNT(*) AS n FROM samples GROUP BY 1".into(),
        ),
        ("GET", "/api/v1/sql?query=SELECT%20DISTINCT%20service_name%20FROM%20samples".into(), "", String::new()),
        ("POST", "/querier.v1.QuerierService/ProfileTypes".into(), "application/json", format!("{{{range}}}")),
        ("POST", "/querier.v1.QuerierService/LabelNames".into(), "application/json", format!("{{{range}}}")),
        (
            "POST",
            "/querier.v1.QuerierService/LabelValues".into(),
            "application/json",
            format!(r#"{{"name": "service_name", {range}}}"#),
        ),
        (
            "POST",
            "/querier.v1.QuerierService/SelectMergeStacktraces".into(),
            "application/json",
            format!(r#"{{"profileTypeID": "{CPU}", "labelSelector": "{{}}", {range}}}"#),
        ),
        ("GET", format!("/api/v1/pprof?query={acme_query}&from=now-1h"), "", String::new()),
        ("GET", format!("/api/v1/flamegraph.svg?query={acme_query}&from=now-1h"), "", String::new()),
        ("GET", format!("/api/v1/diff.svg?query={acme_query}&from=now-1h"), "", String::new()),
        ("GET", "/api/v1/anomalies".into(), "", String::new()),
        ("GET", "/api/v1/annotations?from=now-1h&to=now".into(), "", String::new()),
        (
            "POST",
            "/api/v1/annotations".into(),
            "application/json",
            r#"{"range": {"from": "2026-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "annotation": {"query": ""}}"#.into(),
        ),
        ("GET", "/debug/pprof/profile?seconds=1".into(), "", String::new()),
        ("GET", "/".into(), "", String::new()),
        ("GET", "/ui/app.js".into(), "", String::new()),
    ];
    for (method, path, ct, body) in &http_apis {
        for (who, creds) in REFUSED {
            let req = match *method {
                "GET" => http.get(format!("{url}{path}")),
                _ => http
                    .post(format!("{url}{path}"))
                    .header("content-type", *ct)
                    .body(body.clone()),
            };
            let resp = with(req, creds).send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            assert_eq!(status, 401, "{method} {path} with {who}: {text}");
            assert!(!text.contains("acme_secret"), "{method} {path}: {text}");
        }
    }

    // With its own token, beta sees its data and nothing of acme's.
    let sql = text(with(
        http.post(format!("{url}/api/v1/sql"))
            .body("SELECT DISTINCT service_name FROM samples"),
        beta,
    ))
    .await;
    assert_eq!(sql, r#"[{"service_name":"beta-shop"}]"#);
    let values = text(with(
        http.post(format!("{url}/querier.v1.QuerierService/LabelValues"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"name": "service_name", {range}}}"#)),
        beta,
    ))
    .await;
    assert!(
        values.contains("beta-shop") && !values.contains("acme"),
        "{values}"
    );
    let acme_svg = format!("{url}/api/v1/flamegraph.svg?query={acme_query}&from=now-1h");
    let svg = text(with(http.get(&acme_svg), beta)).await;
    assert!(
        !svg.contains("acme_secret"),
        "beta's SVG of acme-shop shows acme's data"
    );
    let pprof = with(
        http.get(format!("{url}/api/v1/pprof?query={acme_query}&from=now-1h")),
        beta,
    )
    .send()
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let p = stackdrift_model::pprof::decode_profile(&pprof, 1 << 30).unwrap();
    assert!(p.sample.is_empty(), "beta's pprof of acme-shop has samples");
    // And acme, with its own token, does see its function.
    let svg = text(with(http.get(&acme_svg), acme)).await;
    assert!(svg.contains("acme_secret_pricing"));
    for path in ["/", "/ui/app.js"] {
        let resp = with(http.get(format!("{url}{path}")), beta)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    // gRPC: querier.v1 and push.v1.
    let mut querier = q::querier_service_client::QuerierServiceClient::connect(url.clone())
        .await
        .unwrap();
    let label_values = || stackdrift_proto::types::v1::LabelValuesRequest {
        name: "service_name".into(),
        matchers: vec![],
        start: now_ms - 3_600_000,
        end: now_ms,
    };
    let mut pusher =
        stackdrift_proto::push::v1::pusher_service_client::PusherServiceClient::connect(
            url.clone(),
        )
        .await
        .unwrap();
    for (who, creds) in REFUSED {
        let err = querier
            .label_values(grpc_request(label_values(), creds))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::Unauthenticated,
            "LabelValues, {who}"
        );
        let push = push_request(&[("service_name", "x")], profile("f"));
        let err = pusher.push(grpc_request(push, creds)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "Push, {who}");
    }
    let names = querier
        .label_values(grpc_request(label_values(), beta))
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["beta-shop"]);

    // Flight SQL.
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for (who, (auth, org)) in REFUSED {
        let mut client = FlightSqlServiceClient::new(channel.clone());
        if let Some(a) = auth {
            client.set_header("authorization", a);
        }
        if let Some(o) = org {
            client.set_header("x-scope-orgid", o);
        }
        let err = client
            .execute("SELECT 1".into(), None)
            .await
            .expect_err(&format!("Flight SQL with {who}"));
        assert!(
            // tonic's text for UNAUTHENTICATED.
            err.to_string()
                .contains("does not have valid authentication credentials"),
            "Flight SQL with {who}: {err}"
        );
    }
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_header("authorization", "Bearer beta-token-0123456789");
    let info = client
        .execute("SELECT DISTINCT service_name FROM samples".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(
        text.contains("beta-shop") && !text.contains("acme"),
        "{text}"
    );
}

/// Sends and returns the body as text.
async fn text(req: reqwest::RequestBuilder) -> String {
    req.send().await.unwrap().text().await.unwrap()
}

fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}
