//! The binary on S3: an ingester configured by `--s3-*` flags and a querier configured only by
//! the usual AWS environment variables share tables on an S3 server running in this test
//! (`s3s-fs` on 127.0.0.1).

use std::path::Path;
use std::time::Duration;

use prost::Message;
use stackdrift_tests::client::{fixture_dated_now, push_request, sql_json};
use stackdrift_tests::process::Stackdrift;
use stackdrift_tests::reference::function_totals;
use stackdrift_tests::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use stackdrift_tests::sql;

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
        &[
            "ingester",
            "--storage-url",
            &url,
            "--s3-endpoint",
            &endpoint,
            "--s3-region",
            "us-east-1",
            "--s3-access-key-id",
            ACCESS_KEY,
            "--s3-secret-access-key",
            SECRET_KEY,
            "--s3-allow-http",
            "--s3-path-style",
        ],
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
