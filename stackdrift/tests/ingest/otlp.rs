//! OTLP profiles: a tonic client built from the `opentelemetry-proto` types exports over gRPC,
//! and the same service is reached over `POST /v1development/profiles` (protobuf and JSON).
//! The rows SQL returns match what was sent.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, Line, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
    Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use stackdrift_tests::client::sql_json;
use stackdrift_tests::sql::{function_totals_sql, totals_from_json};

use crate::{CPU, now_secs, start};

fn attr(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// Functions `main`, `handle`, `encode`, `compress`; stacks (leaf first) with sample counts,
/// as the OTel eBPF profiler reports CPU: `samples`/`count` with a 10 ms `cpu` period.
const STACKS: &[(&[usize], i64)] = &[
    (&[3, 2, 1], 7),    // encode ← handle ← main
    (&[4, 3, 2, 1], 5), // compress ← encode ← handle ← main
    (&[2, 1], 2),       // handle ← main
    (&[3, 2, 1], 1),    // encode again: merged with the first
];
const PERIOD_NS: i64 = 10_000_000;

fn request(service: &str) -> ExportProfilesServiceRequest {
    let strings: Vec<String> = [
        "",
        "samples",
        "count",
        "cpu",
        "nanoseconds",
        "main",
        "handle",
        "encode",
        "compress",
        "srv.go",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut function_table = vec![Function::default()];
    let mut location_table = vec![Location::default()];
    for f in 1..=4i32 {
        function_table.push(Function {
            name_strindex: 4 + f,
            filename_strindex: 9,
            ..Default::default()
        });
        location_table.push(Location {
            lines: vec![Line {
                function_index: f,
                line: 10 * i64::from(f),
                column: 0,
            }],
            ..Default::default()
        });
    }
    let mut stack_table = vec![Stack::default()];
    let mut samples = Vec::new();
    for (frames, count) in STACKS {
        stack_table.push(Stack {
            location_indices: frames.iter().map(|&i| i as i32).collect(),
        });
        samples.push(Sample {
            stack_index: stack_table.len() as i32 - 1,
            values: vec![*count],
            ..Default::default()
        });
    }
    let profile = Profile {
        sample_type: Some(ValueType {
            type_strindex: 1,
            unit_strindex: 2,
        }),
        period_type: Some(ValueType {
            type_strindex: 3,
            unit_strindex: 4,
        }),
        period: PERIOD_NS,
        time_unix_nano: now_secs() * 1_000_000_000,
        duration_nano: 10_000_000_000,
        samples,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", service),
                    attr("deployment.environment", "prod"),
                    attr("k8s.pod.name", "pod-1"),
                ],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![profile],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(ProfilesDictionary {
            string_table: strings,
            function_table,
            location_table,
            stack_table,
            ..Default::default()
        }),
    }
}

/// function → (self, total) in ns, computed from [`STACKS`] directly.
fn expected() -> BTreeMap<String, (i64, i64)> {
    let names = ["", "main", "handle", "encode", "compress"];
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (frames, count) in STACKS {
        let v = count * PERIOD_NS;
        out.entry(names[frames[0]].into()).or_default().0 += v;
        for f in *frames {
            out.entry(names[*f].into()).or_default().1 += v;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_and_http_exports_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sd = start("otlp", dir.path(), &[]);
    let url = sd.url.clone();

    // gRPC, with the tenant in metadata.
    let mut client = ProfilesServiceClient::connect(url.clone()).await.unwrap();
    let mut req = tonic::Request::new(request("checkout"));
    req.metadata_mut()
        .insert("x-scope-orgid", "otel-team".parse().unwrap());
    let resp = client.export(req).await.unwrap().into_inner();
    assert!(resp.partial_success.is_none());

    let http = reqwest::Client::new();
    let (status, rows) = sql_json(
        &http,
        &url,
        "otel-team",
        "SELECT service_name, profile_type, deployment_environment, k8s_pod_name, \
         COUNT(*) AS n, CAST(SUM(value) AS BIGINT) AS v FROM samples \
         GROUP BY 1, 2, 3, 4",
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let total: i64 = STACKS.iter().map(|(_, c)| c * PERIOD_NS).sum();
    assert_eq!(
        rows,
        serde_json::json!([{
            "service_name": "checkout", "profile_type": CPU,
            "deployment_environment": "prod", "k8s_pod_name": "pod-1",
            "n": 3, "v": total
        }])
    );
    let (_, totals) = sql_json(
        &http,
        &url,
        "otel-team",
        &function_totals_sql("otel-team", "checkout", CPU),
    )
    .await;
    assert_eq!(totals_from_json(&totals), expected());

    // HTTP, protobuf: the answer is an ExportProfilesServiceResponse.
    let resp = http
        .post(format!("{url}/v1development/profiles"))
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", "otel-team")
        .body(request("cart").encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");

    // HTTP, JSON (64-bit integers as strings, as the protobuf JSON mapping writes them).
    let json = serde_json::json!({
        "resourceProfiles": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "search"}}]},
            "scopeProfiles": [{"profiles": [{
                "sampleType": {"typeStrindex": 1, "unitStrindex": 2},
                "timeUnixNano": (now_secs() * 1_000_000_000).to_string(),
                "samples": [{"stackIndex": 1, "values": ["4096"]}]
            }]}]
        }],
        "dictionary": {
            "stringTable": ["", "alloc_space", "bytes", "query"],
            "functionTable": [{}, {"nameStrindex": 3}],
            "locationTable": [{}, {"lines": [{"functionIndex": 1}]}],
            "stackTable": [{}, {"locationIndices": [1]}]
        }
    });
    let resp = http
        .post(format!("{url}/v1development/profiles"))
        .header("content-type", "application/json")
        .header("x-scope-orgid", "otel-team")
        .body(json.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);

    let (_, rows) = sql_json(
        &http,
        &url,
        "otel-team",
        "SELECT service_name, profile_type, CAST(SUM(value) AS BIGINT) AS v FROM samples \
         WHERE service_name <> 'checkout' GROUP BY 1, 2 ORDER BY 1",
    )
    .await;
    assert_eq!(
        rows,
        serde_json::json!([
            {"service_name": "cart", "profile_type": CPU, "v": total},
            {"service_name": "search", "profile_type": "memory:alloc_space:bytes::", "v": 4096}
        ])
    );

    // A bad request is a google.rpc.Status in the request's encoding, and stores nothing.
    let mut bad = request("broken");
    bad.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 42;
    let resp = http
        .post(format!("{url}/v1development/profiles"))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"resourceProfiles": [{"scopeProfiles": [{"profiles": [
                {"sampleType": {"typeStrindex": 1}, "samples": [{"stackIndex": 42, "values": [1]}]}
            ]}]}], "dictionary": {"stringTable": ["", "cpu"]}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 3, "INVALID_ARGUMENT: {body}");
    assert!(
        body["message"].as_str().unwrap().contains("stack index 42"),
        "{body}"
    );
    let status = client.export(tonic::Request::new(bad)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("out of range"), "{status:?}");
    let resp = http
        .post(format!("{url}/v1development/profiles"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let (_, rows) = sql_json(
        &http,
        &url,
        "anonymous",
        "SELECT COUNT(*) AS n FROM samples",
    )
    .await;
    assert_eq!(rows, serde_json::json!([{"n": 0}]));
}
