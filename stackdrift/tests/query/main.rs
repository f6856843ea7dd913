//! The profile query API Grafana's Pyroscope datasource speaks (`querier.v1` over Connect and
//! gRPC), against a `stackdrift all` started by the test and fed through the push API.
//! Responses are decoded with the project's own `querier.v1` types and checked against
//! totals computed from what was pushed, and against SQL over the same range.

mod access;
mod admission;
mod cli;
mod deploy;
mod flight;
mod tls;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use stackdrift_proto::pprof::Profile;
use stackdrift_proto::querier::v1 as q;
use stackdrift_proto::types::v1 as types;
use stackdrift_querier::flamegraph;
use stackdrift_tests::client::{cpu_profile, push_request, sql_json};
use stackdrift_tests::process::Stackdrift;
use stackdrift_tests::reference;
use stackdrift_tests::sql::{function_totals_sql, totals_from_json};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const TENANT: &str = "acme";

/// One pushed profile: service, region, time (s), stacks root first with values.
struct Pushed {
    service: &'static str,
    region: &'static str,
    time_s: i64,
    stacks: Vec<(&'static [&'static str], i64)>,
}

/// Six 10-second-apart profiles per (service, region); values vary with time.
fn dataset(t0: i64) -> Vec<Pushed> {
    let mut out = Vec::new();
    for k in 0..6i64 {
        let t = t0 + 10 * k;
        out.push(Pushed {
            service: "shop",
            region: "eu",
            time_s: t,
            stacks: vec![
                (&["main", "handle", "encode"], 10 * (k + 1)),
                (&["main", "handle", "encode", "compress"], 5),
                (&["main", "gc"], 3),
            ],
        });
        out.push(Pushed {
            service: "shop",
            region: "us",
            time_s: t,
            stacks: vec![(&["main", "handle"], 7), (&["main", "handle", "encode"], 2)],
        });
        out.push(Pushed {
            service: "auth",
            region: "eu",
            time_s: t,
            stacks: vec![(&["main", "login"], 11)],
        });
    }
    out
}

fn encode(p: &Pushed) -> Vec<u8> {
    cpu_profile(p.time_s * 1_000_000_000, 10_000_000, &p.stacks)
}

/// Per-function (self, total) of the pushed profiles `keep` selects.
fn expected(data: &[Pushed], keep: impl Fn(&Pushed) -> bool) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for p in data.iter().filter(|p| keep(p)) {
        for (stack, v) in &p.stacks {
            out.entry(stack.last().unwrap().to_string()).or_default().0 += v;
            let mut seen: Vec<&str> = stack.to_vec();
            seen.sort();
            seen.dedup();
            for f in seen {
                out.entry(f.to_owned()).or_default().1 += v;
            }
        }
    }
    out
}

fn total(data: &[Pushed], keep: impl Fn(&Pushed) -> bool) -> i64 {
    data.iter()
        .filter(|p| keep(p))
        .flat_map(|p| p.stacks.iter().map(|(_, v)| *v))
        .sum()
}

/// Per-function totals of a level-encoded flame graph.
fn flame_totals(fg: &q::FlameGraph) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (stack, v) in flamegraph::decode(fg).expect("a well-formed flame graph") {
        out.entry(stack.last().cloned().unwrap_or_default())
            .or_default()
            .0 += v;
        let mut seen = stack.clone();
        seen.sort();
        seen.dedup();
        for f in seen {
            out.entry(f).or_default().1 += v;
        }
    }
    out
}

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    /// A Connect call in `application/proto`; returns the status and the raw body.
    async fn raw(&self, method: &str, tenant: &str, ct: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let resp = self
            .http
            .post(format!("{}/querier.v1.QuerierService/{method}", self.url))
            .header("content-type", ct)
            .header("x-scope-orgid", tenant)
            .body(body)
            .send()
            .await
            .expect("Connect request");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    async fn call<Req: Message, Resp: Message + Default>(&self, method: &str, req: &Req) -> Resp {
        let (status, body) = self
            .raw(method, TENANT, "application/proto", req.encode_to_vec())
            .await;
        assert_eq!(status, 200, "{method}: {}", String::from_utf8_lossy(&body));
        Resp::decode(body.as_slice()).expect("a protobuf response")
    }

    async fn flame(&self, selector: &str, range: (i64, i64), max: Option<i64>) -> q::FlameGraph {
        let resp: q::SelectMergeStacktracesResponse = self
            .call(
                "SelectMergeStacktraces",
                &q::SelectMergeStacktracesRequest {
                    profile_type_id: CPU.into(),
                    label_selector: selector.into(),
                    start: range.0,
                    end: range.1,
                    max_nodes: max,
                    format: q::ProfileFormat::Flamegraph as i32,
                },
            )
            .await;
        resp.flamegraph.expect("a flame graph")
    }
}

/// Pushes one gzipped pprof with `labels` for `tenant` over Connect; asserts it is accepted.
pub async fn push_profile(
    http: &reqwest::Client,
    url: &str,
    tenant: &str,
    labels: &[(&str, &str)],
    profile: Vec<u8>,
) {
    let resp = http
        .post(format!("{url}/push.v1.PusherService/Push"))
        .header("content-type", "application/proto")
        .header("x-scope-orgid", tenant)
        .body(push_request(labels, profile).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

fn start(dir: &Path) -> Stackdrift {
    Stackdrift::start_in(
        Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        "query",
        dir,
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_query_api_matches_pushed_data_and_sql() {
    let dir = tempfile::tempdir().unwrap();
    let sd = start(dir.path());
    let http = reqwest::Client::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Aligned to the minute, so one 60 s step holds all six profiles of a series.
    let t0 = (now - 300) / 60 * 60;
    let data = dataset(t0);
    for p in &data {
        let labels = [
            ("__name__", "process_cpu"),
            ("service_name", p.service),
            ("region", p.region),
        ];
        push_profile(&http, &sd.url, TENANT, &labels, encode(p)).await;
    }
    // A real profiler's profile, for a wide tree.
    let mut fixture = stackdrift_tests::client::fixture_dated_now("cpu_burn.pb.gz");
    fixture.time_nanos = t0 * 1_000_000_000;
    push_profile(
        &http,
        &sd.url,
        TENANT,
        &[("service_name", "burner")],
        stackdrift_model::encode::gzip(&fixture.encode_to_vec()),
    )
    .await;

    let api = Api {
        http: http.clone(),
        url: sd.url.clone(),
    };
    let range = (t0 * 1000 - 1000, (t0 + 60) * 1000);

    // ProfileTypes, in both encodings.
    let types: q::ProfileTypesResponse = api
        .call(
            "ProfileTypes",
            &q::ProfileTypesRequest {
                start: range.0,
                end: range.1,
            },
        )
        .await;
    let ids: Vec<&str> = types.profile_types.iter().map(|t| t.id.as_str()).collect();
    assert!(ids.contains(&CPU), "{ids:?}");
    let cpu = types.profile_types.iter().find(|t| t.id == CPU).unwrap();
    assert_eq!(
        (cpu.name.as_str(), cpu.sample_type.as_str()),
        ("process_cpu", "cpu")
    );
    let (status, body) = api
        .raw(
            "ProfileTypes",
            TENANT,
            "application/json",
            format!(r#"{{"start":"{}","end":"{}"}}"#, range.0, range.1).into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["profileTypes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["ID"] == CPU),
        "{json}"
    );

    // Another tenant sees nothing.
    let (status, body) = api
        .raw(
            "ProfileTypes",
            "someone-else",
            "application/proto",
            q::ProfileTypesRequest {
                start: range.0,
                end: range.1,
            }
            .encode_to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        q::ProfileTypesResponse::decode(body.as_slice())
            .unwrap()
            .profile_types
            .is_empty()
    );

    // Label names, values and series.
    let names: types::LabelNamesResponse = api
        .call(
            "LabelNames",
            &types::LabelNamesRequest {
                matchers: vec![r#"{service_name="shop"}"#.into()],
                start: range.0,
                end: range.1,
            },
        )
        .await;
    for n in ["__name__", "region", "service_name"] {
        assert!(names.names.contains(&n.to_owned()), "{:?}", names.names);
    }
    let regions: types::LabelValuesResponse = api
        .call(
            "LabelValues",
            &types::LabelValuesRequest {
                name: "region".into(),
                matchers: vec![],
                start: range.0,
                end: range.1,
            },
        )
        .await;
    assert_eq!(regions.names, vec!["eu", "us"]);
    let services: types::LabelValuesResponse = api
        .call(
            "LabelValues",
            &types::LabelValuesRequest {
                name: "service_name".into(),
                matchers: vec![r#"{region="us"}"#.into()],
                start: range.0,
                end: range.1,
            },
        )
        .await;
    assert_eq!(services.names, vec!["shop"]);
    let series: q::SeriesResponse = api
        .call(
            "Series",
            &q::SeriesRequest {
                matchers: vec![r#"{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name=~"shop|auth"}"#.into()],
                label_names: vec!["service_name".into(), "region".into()],
                start: range.0,
                end: range.1,
            },
        )
        .await;
    let sets: Vec<Vec<(String, String)>> = series
        .labels_set
        .iter()
        .map(|l| {
            l.labels
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect()
        })
        .collect();
    let pair = |s: &str, r: &str| {
        vec![
            ("region".to_owned(), r.to_owned()),
            ("service_name".to_owned(), s.to_owned()),
        ]
    };
    assert_eq!(
        sets,
        vec![pair("auth", "eu"), pair("shop", "eu"), pair("shop", "us")]
    );

    // Flame graphs: exact per-function totals, against the pushed data and against SQL.
    let fg = api.flame(r#"{service_name="shop"}"#, range, None).await;
    let want = expected(&data, |p| p.service == "shop");
    assert_eq!(flame_totals(&fg), want);
    assert_eq!(fg.total, total(&data, |p| p.service == "shop"));
    assert_eq!(fg.names[0], "total");
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        TENANT,
        &function_totals_sql(TENANT, "shop", CPU),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(totals_from_json(&rows), want);

    // The same in one line of SQL: table functions over the same merge.
    let sql_fn = |f: &str, args: &str| {
        format!(
            "SELECT * FROM {f}('{CPU}', {args}, {}, {})",
            range.0, range.1
        )
    };
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        TENANT,
        &sql_fn("function_totals", r#"'{service_name="shop"}'"#),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let got: BTreeMap<String, (i64, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["function"].as_str().unwrap().to_owned(),
                (r["self"].as_i64().unwrap(), r["total"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(rows[0]["function"], "main", "largest total first");
    assert_eq!(rows[0]["total_share"], 1.0);
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        TENANT,
        &format!(
            "SELECT name, self, total FROM ({}) WHERE depth = 1 ORDER BY name",
            sql_fn("flamegraph", r#"'{service_name="shop"}'"#)
        ),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(
        rows,
        serde_json::json!([{"name": "main", "self": 0, "total": fg.total}])
    );
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        TENANT,
        &format!(
            "SELECT function, baseline_total, comparison_total, share_delta FROM \
             function_diff('{CPU}', '{{service_name=\"shop\", region=\"eu\"}}', \
             '{{service_name=\"shop\", region=\"us\"}}', {}, {}) WHERE function = 'gc'",
            range.0, range.1
        ),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let eu_total = total(&data, |p| p.service == "shop" && p.region == "eu");
    assert_eq!(rows[0]["baseline_total"], 18);
    assert_eq!(rows[0]["comparison_total"], 0);
    let delta = rows[0]["share_delta"].as_f64().unwrap();
    assert!((delta + 18.0 / eu_total as f64).abs() < 1e-12, "{delta}");

    // Each matcher operator, and a range that keeps only the first three profiles.
    type Keep = Box<dyn Fn(&Pushed) -> bool>;
    let cases: Vec<(&str, Keep)> = vec![
        (
            r#"{service_name="shop", region="eu"}"#,
            Box::new(|p| p.service == "shop" && p.region == "eu"),
        ),
        (
            r#"{service_name="shop", region!="eu"}"#,
            Box::new(|p| p.service == "shop" && p.region != "eu"),
        ),
        (r#"{region=~"e.*"}"#, Box::new(|p| p.region == "eu")),
        (
            r#"{service_name!~"sh.*"}"#,
            Box::new(|p| p.service != "shop"),
        ),
        (r#"{service_name=~"sh"}"#, Box::new(|_| false)),
        (r#"{region!~"eu|us"}"#, Box::new(|_| false)),
        (r#"{}"#, Box::new(|_| true)),
    ];
    for (selector, keep) in &cases {
        let fg = api.flame(selector, range, None).await;
        // The real profile (service `burner`, no `region`: it matches as "") counts for the
        // selectors that keep it.
        let burner = matches!(
            *selector,
            r#"{service_name!~"sh.*"}"# | r#"{region!~"eu|us"}"# | "{}"
        );
        let mut want = expected(&data, keep);
        if burner {
            let b = api.flame(r#"{service_name="burner"}"#, range, None).await;
            reference::add_totals(&mut want, &flame_totals(&b));
        }
        assert_eq!(flame_totals(&fg), want, "{selector}");
    }
    let early = (t0 * 1000, (t0 + 20) * 1000);
    let fg = api.flame(r#"{service_name="shop"}"#, early, None).await;
    assert_eq!(
        flame_totals(&fg),
        expected(&data, |p| p.service == "shop" && p.time_s <= t0 + 20)
    );

    // max_nodes: the wide tree is cut into `other` nodes, its total unchanged and exact.
    let full = api
        .flame(r#"{service_name="burner"}"#, range, Some(0))
        .await;
    let cut = api
        .flame(r#"{service_name="burner"}"#, range, Some(5))
        .await;
    assert!(full.names.len() > 8, "{:?}", full.names);
    assert_eq!(cut.total, full.total);
    assert!(cut.names.iter().any(|n| n == "other"), "{:?}", cut.names);
    let nodes: usize = cut.levels.iter().skip(1).map(|l| l.values.len() / 4).sum();
    let others = cut
        .levels
        .iter()
        .flat_map(|l| l.values.chunks(4))
        .filter(|t| cut.names[t[3] as usize] == "other")
        .count();
    assert!(
        nodes - others <= 5,
        "{nodes} nodes, {others} of them `other`"
    );
    let selfs: i64 = flamegraph::decode(&cut)
        .unwrap()
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(selfs, full.total);
    let (status, rows) = sql_json(
        &http,
        &sd.url,
        TENANT,
        &function_totals_sql(TENANT, "burner", CPU),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(totals_from_json(&rows), flame_totals(&full));

    // SelectMergeProfile: the merged pprof has the flame graph's function totals.
    let pprof: Profile = api
        .call(
            "SelectMergeProfile",
            &q::SelectMergeProfileRequest {
                profile_type_id: CPU.into(),
                label_selector: r#"{service_name="burner"}"#.into(),
                start: range.0,
                end: range.1,
                max_nodes: None,
            },
        )
        .await;
    assert_eq!(
        reference::function_totals(&pprof, "cpu"),
        flame_totals(&full)
    );

    // SelectSeries: 10 s steps, grouped by region, sum and average, top-N.
    let select_series = |group_by: Vec<String>, aggregation: Option<i32>, limit: Option<i64>| {
        q::SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: r#"{service_name="shop"}"#.into(),
            start: range.0,
            end: range.1,
            group_by,
            step: 10.0,
            aggregation,
            limit,
        }
    };
    let resp: q::SelectSeriesResponse = api
        .call(
            "SelectSeries",
            &select_series(vec!["region".into()], None, None),
        )
        .await;
    assert_eq!(resp.series.len(), 2);
    for s in &resp.series {
        let region = s.labels.iter().find(|l| l.name == "region").unwrap();
        let want: Vec<(i64, f64)> = data
            .iter()
            .filter(|p| p.service == "shop" && p.region == region.value)
            .map(|p| {
                (
                    p.time_s * 1000,
                    p.stacks.iter().map(|(_, v)| *v).sum::<i64>() as f64,
                )
            })
            .collect();
        let got: Vec<(i64, f64)> = s.points.iter().map(|p| (p.timestamp, p.value)).collect();
        assert_eq!(got, want, "region {}", region.value);
    }
    // Largest first: eu outweighs us.
    assert_eq!(resp.series[0].labels[0].value, "eu");
    let top: q::SelectSeriesResponse = api
        .call(
            "SelectSeries",
            &select_series(vec!["region".into()], None, Some(1)),
        )
        .await;
    assert_eq!(top.series.len(), 1);
    assert_eq!(top.series[0].labels[0].value, "eu");
    // One 60 s step: the sum of everything, and the average over the six profiles (distinct
    // timestamps) in it.
    let mut minute = select_series(vec![], None, None);
    minute.step = 60.0;
    let summed: q::SelectSeriesResponse = api.call("SelectSeries", &minute).await;
    let sum_all = total(&data, |p| p.service == "shop") as f64;
    let points: Vec<(i64, f64)> = summed.series[0]
        .points
        .iter()
        .map(|p| (p.timestamp, p.value))
        .collect();
    assert_eq!(points, vec![(t0 * 1000, sum_all)]);
    minute.aggregation = Some(1);
    let avg: q::SelectSeriesResponse = api.call("SelectSeries", &minute).await;
    assert_eq!(avg.series[0].points[0].value, sum_all / 6.0);

    // Diff: eu against us, each side its own total.
    let side = |selector: &str| q::SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start: range.0,
        end: range.1,
        max_nodes: None,
        format: 1,
    };
    let diff: q::DiffResponse = api
        .call(
            "Diff",
            &q::DiffRequest {
                left: Some(side(r#"{service_name="shop", region="eu"}"#)),
                right: Some(side(r#"{service_name="shop", region="us"}"#)),
            },
        )
        .await;
    let d = diff.flamegraph.unwrap();
    assert_eq!(
        d.left_ticks,
        total(&data, |p| p.service == "shop" && p.region == "eu")
    );
    assert_eq!(
        d.right_ticks,
        total(&data, |p| p.service == "shop" && p.region == "us")
    );
    assert!(
        d.names.iter().any(|n| n == "gc"),
        "eu-only function present"
    );

    // Exports: the merged pprof (gzipped) has the flame graph's totals; the SVGs name the
    // functions.
    let export = |path: &str, params: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("{}{path}", sd.url);
        async move {
            let resp = http
                .get(url)
                .query(&params)
                .header("x-scope-orgid", TENANT)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
        }
    };
    let from = range.0.to_string();
    let until = range.1.to_string();
    let (status, gz) = export(
        "/api/v1/pprof",
        vec![
            ("query", format!(r#"{CPU}{{service_name="burner"}}"#)),
            ("from", from.clone()),
            ("until", until.clone()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&gz));
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzipped");
    let exported = stackdrift_model::pprof::decode_profile(&gz, 1 << 30).unwrap();
    assert_eq!(
        reference::function_totals(&exported, "cpu"),
        flame_totals(&full)
    );
    let (status, svg) = export(
        "/api/v1/flamegraph.svg",
        vec![
            ("profile_type", CPU.to_owned()),
            ("selector", r#"{service_name="shop"}"#.to_owned()),
            ("from", from.clone()),
            ("until", until.clone()),
        ],
    )
    .await;
    let svg = String::from_utf8(svg).unwrap();
    assert_eq!(status, 200, "{svg}");
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    for f in ["main", "handle", "encode", "compress", "gc"] {
        assert!(
            svg.contains(&format!(">{f}<")) || svg.contains(&format!("{f} (")),
            "{f}"
        );
    }
    let (status, svg) = export(
        "/api/v1/diff.svg",
        vec![
            ("query", format!(r#"{CPU}{{service_name="shop"}}"#)),
            ("left_query", format!(r#"{CPU}{{region="eu"}}"#)),
            ("right_query", format!(r#"{CPU}{{region="us"}}"#)),
            ("from", from.clone()),
            ("until", until.clone()),
        ],
    )
    .await;
    let svg = String::from_utf8(svg).unwrap();
    assert_eq!(status, 200, "{svg}");
    // Widths are the comparison's shares, colours the change from the baseline: functions
    // of the comparison are drawn (eu-only `gc` has no width there).
    assert!(svg.contains("handle") && svg.contains("encode"), "{svg}");
    let (status, body) = export("/api/v1/pprof", vec![("from", from.clone())]).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("profile type"));

    // gRPC: same answers.
    let mut grpc = q::querier_service_client::QuerierServiceClient::connect(sd.url.clone())
        .await
        .unwrap();
    let mut req = tonic::Request::new(types::LabelValuesRequest {
        name: "region".into(),
        matchers: vec![],
        start: range.0,
        end: range.1,
    });
    req.metadata_mut()
        .insert("x-scope-orgid", TENANT.parse().unwrap());
    assert_eq!(
        grpc.label_values(req).await.unwrap().into_inner().names,
        vec!["eu", "us"]
    );

    // Errors: a bad selector, an unknown method, a wrong content type.
    let (status, body) = api
        .raw(
            "SelectMergeStacktraces",
            TENANT,
            "application/proto",
            side(r#"{service_name="shop""#).encode_to_vec(),
        )
        .await;
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    assert!(
        err["message"].as_str().unwrap().contains("label selector"),
        "{err}"
    );
    for method in ["SelectHeatmap", "SelectMergeSpanProfile"] {
        let (status, body) = api.raw(method, TENANT, "application/proto", vec![]).await;
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, err["code"].as_str()), (501, Some("unimplemented")));
    }
    let (status, _) = api
        .raw("ProfileTypes", TENANT, "text/plain", b"hello".to_vec())
        .await;
    assert_eq!(status, 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_is_read_only_tenant_scoped_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let sd = Stackdrift::start_in(
        Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        "sql-safety",
        dir.path(),
        &["--query-memory-mib", "32"],
    );
    let http = reqwest::Client::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (tenant, service) in [("acme", "shop"), ("globex", "secret-service")] {
        let p = Pushed {
            service: "x",
            region: "eu",
            time_s: now - 10,
            stacks: vec![(&["main", "work"], 5)],
        };
        let labels = [("service_name", service), ("region", "eu")];
        push_profile(&http, &sd.url, tenant, &labels, encode(&p)).await;
    }

    // Nothing that writes, reads files or URLs, or changes settings gets through.
    let marker = dir.path().join("copied.csv");
    let refused = [
        format!("COPY samples TO '{}'", marker.display()),
        format!("COPY (SELECT 1) TO '{}' STORED AS CSV", marker.display()),
        "CREATE EXTERNAL TABLE pw (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'".into(),
        "CREATE VIEW v AS SELECT * FROM samples".into(),
        "CREATE TABLE t AS SELECT 1".into(),
        "INSERT INTO samples SELECT * FROM samples".into(),
        "DELETE FROM samples".into(),
        "UPDATE samples SET value = 0".into(),
        "DROP TABLE samples".into(),
        "SET datafusion.execution.target_partitions = 1".into(),
        "SELECT * FROM '/etc/passwd'".into(),
        "SELECT * FROM read_csv('/etc/passwd')".into(),
        "SELECT * FROM read_parquet('/etc/passwd')".into(),
        "SELECT * FROM parquet_metadata('/etc/passwd')".into(),
    ];
    for stmt in &refused {
        let (status, body) = sql_json(&http, &sd.url, "acme", stmt).await;
        assert_eq!(status, 400, "{stmt}: {body}");
        assert!(!body["error"].as_str().unwrap_or("").is_empty(), "{stmt}");
    }
    assert!(!marker.exists(), "COPY wrote a file");

    // A statement the SQL parser would retry exponentially on (found by fuzzing; minutes to
    // hours unbounded) is refused, and the querier answers the next query.
    let dotted = format!("SELECT {}[b", vec!["a"; 30].join("."));
    let (status, body) = sql_json(&http, &sd.url, "acme", &dotted).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("too complex"), "{body}");
    let (status, body) = sql_json(&http, &sd.url, "acme", "SELECT 1 AS one").await;
    assert_eq!(status, 200, "{body}");

    // Whatever the WHERE says, a tenant sees only its own rows.
    for stmt in [
        "SELECT DISTINCT tenant, service_name FROM samples",
        "SELECT DISTINCT tenant, service_name FROM samples WHERE tenant = 'globex'",
        "SELECT DISTINCT tenant, service_name FROM stacks_raw WHERE tenant <> 'acme'",
    ] {
        let (status, rows) = sql_json(&http, &sd.url, "acme", stmt).await;
        assert_eq!(status, 200, "{rows}");
        for row in rows.as_array().unwrap() {
            assert_eq!(row["tenant"], "acme", "{stmt}: {rows}");
        }
    }
    let (_, rows) = sql_json(
        &http,
        &sd.url,
        "acme",
        "SELECT count(*) AS n FROM samples WHERE service_name = 'secret-service'",
    )
    .await;
    assert_eq!(rows[0]["n"], 0);

    // Over the 32 MiB memory limit: that query fails cleanly, the next one works.
    let (status, body) = sql_json(
        &http,
        &sd.url,
        "acme",
        "SELECT a.v FROM generate_series(1, 3000000) AS a(v) \
         JOIN generate_series(1, 3000000) AS b(v) ON a.v = b.v ORDER BY 1 LIMIT 1",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("memory limit"),
        "{body}"
    );
    let (status, rows) = sql_json(&http, &sd.url, "acme", "SELECT 1 + 1 AS two").await;
    assert_eq!((status, rows[0]["two"].as_i64()), (200, Some(2)));
}
