//! The binary end to end: `stackdrift ingester` accepts pushes (Connect and gRPC on one port)
//! and commits them on shutdown; a separate `stackdrift querier` on the same storage URL reads
//! them back with SQL, tenant by tenant, with the per-function totals of the pprof itself.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use stackdrift_model::pprof::decode_profile;
use stackdrift_proto::push::v1::PushRequest;
use stackdrift_proto::push::v1::pusher_service_client::PusherServiceClient;
use stackdrift_tests::client::{self, sql_json};
use stackdrift_tests::process::Stackdrift;
use stackdrift_tests::reference::function_totals;
use stackdrift_tests::{fixture, sql};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stackdrift"))
}

fn push_request(service: &str, profile: Vec<u8>) -> PushRequest {
    client::push_request(
        &[
            ("__name__", "process_cpu"),
            ("service_name", service),
            ("env", "e2e"),
        ],
        profile,
    )
}

async fn connect_push(
    http: &reqwest::Client,
    url: &str,
    tenant: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    http.post(format!("{url}/push.v1.PusherService/Push"))
        .header("content-type", "application/proto")
        .header("x-scope-orgid", tenant)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingester_and_querier_processes_share_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let storage = storage.to_str().unwrap();
    let http = reqwest::Client::new();

    // A flush interval far longer than the test: pushes are acknowledged only when their batch
    // commits, which here happens when SIGTERM makes the ingester flush.
    let ingester = Stackdrift::start(
        bin(),
        "ingester",
        &[
            "ingester",
            "--storage-url",
            storage,
            "--max-profile-age-secs",
            "0",
            "--flush-interval-ms",
            "600000",
        ],
    );
    let url = ingester.url.clone();
    let ready = http.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // Without the querier, `/` is the text index.
    let index = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.text().await.unwrap().contains("(ingester role)"));

    // Connect (HTTP/1.1, application/proto) for tenant acme.
    let connect = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        let body = push_request("e2e-connect", fixture("cpu_burn.pb.gz")).encode_to_vec();
        async move { connect_push(&http, &url, "acme", body).await }
    });
    // gRPC (HTTP/2) on the same port, no tenant header: tenant "anonymous".
    let grpc = tokio::spawn({
        let url = url.clone();
        async move {
            let mut client = PusherServiceClient::connect(url).await.unwrap();
            client
                .push(push_request("e2e-grpc", fixture("cpu_burn_raw.pb")))
                .await
        }
    });

    // A malformed profile is refused at once, not held for the batch.
    let bad = connect_push(
        &http,
        &url,
        "acme",
        push_request("e2e-bad", b"not a profile".to_vec()).encode_to_vec(),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let err: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(err["code"], "invalid_argument", "{err}");

    // Nothing is committed yet, so neither push has been acknowledged.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!connect.is_finished() && !grpc.is_finished());

    // Graceful shutdown commits the buffered pushes, answers them, and exits 0.
    let status = ingester.terminate(Duration::from_secs(60));
    let connect = connect.await.unwrap();
    assert_eq!(connect.status(), 200, "{:?}", connect.text().await);
    grpc.await.unwrap().expect("gRPC push acknowledged");
    assert!(status.success(), "ingester exit status {status}");

    // A second process, the querier, reads the same storage URL.
    let querier = Stackdrift::start(bin(), "querier", &["querier", "--storage-url", storage]);
    let q = querier.url.clone();
    assert_eq!(
        http.get(format!("{q}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The querier serves the web UI at `/` and the text index at `/api`.
    let page = http.get(format!("{q}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("ui/app.js"));
    let script = http.get(format!("{q}/ui/app.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let index = http.get(format!("{q}/api")).send().await.unwrap();
    assert!(index.text().await.unwrap().contains("(querier role)"));

    let expected = |f: &str| function_totals(&decode_profile(&fixture(f), 1 << 30).unwrap(), "cpu");
    let (status, rows) = sql_json(
        &http,
        &q,
        "acme",
        &sql::function_totals_sql("acme", "e2e-connect", CPU),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(sql::totals_from_json(&rows), expected("cpu_burn.pb.gz"));
    let (status, rows) = sql_json(
        &http,
        &q,
        "anonymous",
        &sql::function_totals_sql("anonymous", "e2e-grpc", CPU),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(sql::totals_from_json(&rows), expected("cpu_burn_raw.pb"));

    // Each tenant sees only its own rows, whatever the WHERE clause says.
    let (_, rows) = sql_json(
        &http,
        &q,
        "anonymous",
        "SELECT DISTINCT tenant, service_name FROM samples",
    )
    .await;
    assert_eq!(
        rows,
        serde_json::json!([{"tenant": "anonymous", "service_name": "e2e-grpc"}])
    );
    let (_, rows) = sql_json(
        &http,
        &q,
        "anonymous",
        "SELECT count(*) AS n FROM samples WHERE tenant = 'acme'",
    )
    .await;
    assert_eq!(rows, serde_json::json!([{"n": 0}]));

    // Labels are columns; the refused push left nothing behind.
    let (_, rows) = sql_json(
        &http,
        &q,
        "acme",
        "SELECT DISTINCT service_name, env FROM samples",
    )
    .await;
    assert_eq!(
        rows,
        serde_json::json!([{"service_name": "e2e-connect", "env": "e2e"}])
    );

    // Read-only: statements that change anything are refused with 400 and a message.
    for stmt in [
        "DROP TABLE samples",
        "INSERT INTO samples SELECT * FROM samples",
        "CREATE TABLE t AS SELECT 1",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, body) = sql_json(&http, &q, "acme", stmt).await;
        assert_eq!(status, 400, "{stmt}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("read-only"),
            "{stmt}: {body}"
        );
    }
    let (status, body) = sql_json(&http, &q, "acme", "SELECT nope FROM samples").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");

    // CSV and Arrow IPC outputs.
    let csv = http
        .post(format!("{q}/api/v1/sql?format=csv"))
        .header("x-scope-orgid", "acme")
        .body("SELECT service_name, count(*) AS n FROM samples GROUP BY service_name")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("service_name,n\ne2e-connect,"), "{text}");
    let arrow = http
        .post(format!("{q}/api/v1/sql"))
        .header("accept", "application/vnd.apache.arrow.stream")
        .header("x-scope-orgid", "acme")
        .body("SELECT count(*) AS n FROM stacks")
        .send()
        .await
        .unwrap();
    assert_eq!(
        arrow.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = arrow.bytes().await.unwrap();
    // An Arrow IPC stream begins with a continuation marker (0xFFFFFFFF).
    assert_eq!(&bytes[..4], &[0xff, 0xff, 0xff, 0xff]);

    let metrics = http
        .get(format!("{q}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stackdrift_query_total{outcome=\"ok\",tenant=\"acme\"}"),
        "{metrics}"
    );
    let status = querier.terminate(Duration::from_secs(30));
    assert!(status.success(), "querier exit status {status}");
}
