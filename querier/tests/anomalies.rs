//! `GET /api/v1/anomalies` and `/api/v1/annotations` against a real `Store` on a temp
//! directory, with rows written by `Store::append_anomalies` and the routes served on a
//! loopback port.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use stackdrift_model::auth::Auth;
use stackdrift_querier::{Querier, QueryConfig, QueryMetrics};
use stackdrift_storage::{Anomaly, StorageConfig, Store};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const MEM: &str = "memory:alloc_space:bytes:space:bytes";
const HOUR_US: i64 = 3_600_000_000;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// One anomaly whose evaluated windows end `ago_h` hours before `now` (and last 10 minutes).
#[allow(clippy::too_many_arguments)]
fn anomaly(
    id: &str,
    tenant: &str,
    service: &str,
    profile_type: &str,
    kind: &str,
    severity: &str,
    function: &str,
    now: i64,
    ago_h: f64,
) -> Anomaly {
    let end = now - (ago_h * HOUR_US as f64) as i64;
    let start = end - 600_000_000;
    Anomaly {
        anomaly_id: id.into(),
        tenant: tenant.into(),
        service_name: service.into(),
        profile_type: profile_type.into(),
        labels: r#"{"region":"eu-west"}"#.into(),
        kind: kind.into(),
        baseline: "rolling".into(),
        metric: "self".into(),
        function: function.into(),
        baseline_share: 0.10,
        current_share: 0.25,
        delta: 0.15,
        score: 12.5,
        p_value: 1e-12,
        severity: severity.into(),
        window_start_us: start,
        window_end_us: end,
        baseline_start_us: start - 24 * HOUR_US,
        baseline_end_us: start,
        windows: 2,
        version_before: Some("1.0".into()),
        version_after: None,
        example_stack: format!("main;{function}"),
        query_url: format!("/api/v1/sql?query={id}"),
        svg_url: format!("/api/v1/diff.svg?id={id}&x=1"),
    }
}

/// The rows of every test, newest first within tenant `a` (a6 is two days old).
fn dataset(now: i64) -> Vec<Anomaly> {
    vec![
        anomaly(
            "a1",
            "a",
            "checkout",
            CPU,
            "regression",
            "critical",
            "encode",
            now,
            1.0,
        ),
        anomaly(
            "a2",
            "a",
            "checkout",
            MEM,
            "improvement",
            "warning",
            "alloc",
            now,
            2.0,
        ),
        anomaly("a3", "a", "auth", CPU, "shift", "info", "login", now, 3.0),
        anomaly(
            "a4",
            "a",
            "o'brien",
            CPU,
            "regression",
            "warning",
            "it's",
            now,
            4.0,
        ),
        anomaly(
            "a5",
            "a",
            "o",
            CPU,
            "regression",
            "warning",
            "other",
            now,
            5.0,
        ),
        anomaly(
            "a6",
            "a",
            "checkout",
            CPU,
            "regression",
            "critical",
            "encode",
            now,
            48.0,
        ),
        anomaly(
            "b1",
            "b",
            "checkout",
            CPU,
            "regression",
            "info",
            "b_only",
            now,
            1.5,
        ),
    ]
}

struct Server {
    base: String,
    store: Arc<Store>,
    client: reqwest::Client,
    now_us: i64,
    _dir: tempfile::TempDir,
}

async fn start_with(auth: Auth) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StorageConfig::local(dir.path())).await.unwrap();
    let now = now_us();
    let written = store.append_anomalies(&dataset(now)).await.unwrap();
    assert_eq!(written.len(), 7);
    let querier = Querier::new(
        store.clone(),
        QueryConfig {
            auth,
            ..QueryConfig::default()
        },
        QueryMetrics::new(&prometheus::Registry::new()).unwrap(),
    );
    let app = stackdrift_querier::anomalies::routes(querier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base: format!("http://{addr}"),
        store,
        client: reqwest::Client::new(),
        now_us: now,
        _dir: dir,
    }
}

async fn start() -> Server {
    start_with(Auth::disabled()).await
}

impl Server {
    async fn get(&self, path: &str, tenant: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-Scope-OrgID", tenant)
            .query(query)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 200 {
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ct.starts_with("application/json"), "{ct}");
        }
        (status, r.json().await.unwrap())
    }

    /// IDs `GET /api/v1/anomalies` answers for `tenant`, in order.
    async fn ids(&self, tenant: &str, query: &[(&str, &str)]) -> Vec<String> {
        let (status, body) = self.get("/api/v1/anomalies", tenant, query).await;
        assert_eq!(status, 200, "{query:?}: {body}");
        body["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["anomaly_id"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn post_annotations(&self, tenant: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/api/v1/annotations", self.base))
            .header("X-Scope-OrgID", tenant)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    fn ms_ago(&self, hours: f64) -> String {
        ((self.now_us - (hours * HOUR_US as f64) as i64) / 1000).to_string()
    }
}

#[tokio::test]
async fn anomalies_filters_each_narrow_the_result() {
    let s = start().await;
    assert_eq!(s.ids("a", &[]).await, ["a1", "a2", "a3", "a4", "a5"]);
    assert_eq!(s.ids("a", &[("service", "checkout")]).await, ["a1", "a2"]);
    assert_eq!(s.ids("a", &[("profile_type", MEM)]).await, ["a2"]);
    assert_eq!(
        s.ids("a", &[("kind", "regression")]).await,
        ["a1", "a4", "a5"]
    );
    assert_eq!(
        s.ids("a", &[("kind", "shift,improvement")]).await,
        ["a2", "a3"]
    );
    assert_eq!(s.ids("a", &[("severity", "critical")]).await, ["a1"]);
    assert_eq!(s.ids("a", &[("function", "login")]).await, ["a3"]);
    assert_eq!(
        s.ids("a", &[("function", "log")]).await,
        Vec::<String>::new()
    );
    assert_eq!(s.ids("a", &[("limit", "2")]).await, ["a1", "a2"]);
    let from = s.ms_ago(72.0);
    assert_eq!(
        s.ids("a", &[("from", from.as_str())]).await,
        ["a1", "a2", "a3", "a4", "a5", "a6"]
    );
    let until = s.ms_ago(2.5);
    assert_eq!(
        s.ids("a", &[("from", "now-3d"), ("until", until.as_str())])
            .await,
        ["a3", "a4", "a5", "a6"]
    );
    assert_eq!(
        s.ids(
            "a",
            &[
                ("from", "now-3d"),
                ("service", "checkout"),
                ("kind", "regression"),
                ("severity", "critical"),
                ("profile_type", CPU),
                ("function", "encode"),
            ]
        )
        .await,
        ["a1", "a6"]
    );

    // Every field, with times in Unix ms.
    let (_, body) = s
        .get("/api/v1/anomalies", "a", &[("function", "encode")])
        .await;
    let got = &body["anomalies"][0];
    let want = &dataset(s.now_us)[0];
    assert_eq!(got["tenant"], "a");
    assert_eq!(got["service_name"], "checkout");
    assert_eq!(got["profile_type"], CPU);
    assert_eq!(got["labels"], json!({"region": "eu-west"}));
    assert_eq!(got["baseline"], "rolling");
    assert_eq!(got["metric"], "self");
    assert_eq!(got["delta"], 0.15);
    assert_eq!(got["p_value"], 1e-12);
    assert_eq!(got["window_start_ms"], want.window_start_us / 1000);
    assert_eq!(got["window_end_ms"], want.window_end_us / 1000);
    assert_eq!(got["detected_at_ms"], want.window_end_us / 1000);
    assert_eq!(got["baseline_start_ms"], want.baseline_start_us / 1000);
    assert_eq!(got["baseline_end_ms"], want.baseline_end_us / 1000);
    assert_eq!(got["windows"], 2);
    assert_eq!(got["version_before"], "1.0");
    assert_eq!(got["version_after"], Value::Null);
    assert_eq!(got["example_stack"], "main;encode");
    assert_eq!(got["svg_url"], "/api/v1/diff.svg?id=a1&x=1");
}

#[tokio::test]
async fn tenants_see_only_their_own_anomalies() {
    let s = start().await;
    let b_filters: [&[(&str, &str)]; 7] = [
        &[],
        &[("from", "now-3d")],
        &[("service", "checkout")],
        &[("kind", "regression,improvement,shift")],
        &[("severity", "critical,warning,info")],
        &[("function", "b_only")],
        &[("limit", "10000"), ("from", "0")],
    ];
    for q in b_filters {
        assert_eq!(s.ids("b", q).await, ["b1"], "{q:?}");
    }
    for q in [
        &[("function", "encode")][..],
        &[("service", "auth")],
        &[("severity", "critical")],
    ] {
        assert!(s.ids("b", q).await.is_empty(), "{q:?}");
    }
    assert!(!s.ids("a", &[("from", "0")]).await.contains(&"b1".into()));
    assert!(s.ids("a", &[("function", "b_only")]).await.is_empty());
    assert!(s.ids("c", &[("from", "0")]).await.is_empty());

    let (status, body) = s.get("/api/v1/annotations", "b", &[("from", "0")]).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["tags"][3], "b_only");
}

#[tokio::test]
async fn tokens_decide_the_tenant() {
    let s =
        start_with(Auth::from_pairs([("a", "token-for-a"), ("b", "token-for-b")]).unwrap()).await;
    let get = |token: Option<&'static str>, org: Option<&'static str>| {
        let mut r = s.client.get(format!("{}/api/v1/anomalies?from=0", s.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(o) = org {
            r = r.header("X-Scope-OrgID", o);
        }
        r.send()
    };
    let r = get(Some("token-for-b"), None).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["anomalies"][0]["anomaly_id"], "b1");
    assert_eq!(body["anomalies"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(Some("token-for-b"), Some("a")).await.unwrap().status(),
        401
    );
    assert_eq!(get(None, Some("a")).await.unwrap().status(), 401);
}

#[tokio::test]
async fn quoted_service_names_match_exactly() {
    let s = start().await;
    assert_eq!(s.ids("a", &[("service", "o'brien")]).await, ["a4"]);
    assert_eq!(s.ids("a", &[("service", "o")]).await, ["a5"]);
    for injection in ["o' OR '1'='1", "o'' OR ''1''=''1", "o'brien' OR 1=1 --"] {
        assert!(
            s.ids("a", &[("service", injection)]).await.is_empty(),
            "{injection}"
        );
    }
    assert_eq!(s.ids("a", &[("function", "it's")]).await, ["a4"]);
    let (status, body) = s
        .post_annotations(
            "a",
            &json!({"annotation": {"query": "service=o'brien"}, "range": {
                "from": "1970-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["tags"][0], "o'brien");
}

#[tokio::test]
async fn bad_parameters_are_answered_400_with_a_message() {
    let s = start().await;
    for (query, needle) in [
        (&[("kind", "regresion")][..], "kind"),
        (&[("severity", "high")], "severity"),
        (&[("from", "yesterday")], "time"),
        (&[("until", "12:00")], "time"),
        (&[("limit", "ten")], "limit"),
        (&[("limit", "0")], "limit"),
        (&[("limit", "10001")], "limit"),
        (&[("from", "now-1h"), ("until", "now-2h")], "after"),
    ] {
        for path in ["/api/v1/anomalies", "/api/v1/annotations"] {
            let (status, body) = s.get(path, "a", query).await;
            assert_eq!(status, 400, "{path} {query:?}: {body}");
            let msg = body["error"].as_str().unwrap();
            assert!(msg.contains(needle), "{query:?}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }
    let (status, _) = s.get("/api/v1/anomalies", "bad tenant!", &[]).await;
    assert_eq!(status, 400);
    for body in [
        json!({"annotation": {"query": "service checkout"}}),
        json!({"annotation": {"query": "host=x"}}),
        json!({"annotation": {"query": "kind=bogus"}}),
        json!({"range": {"from": "last tuesday", "to": "now"}}),
        json!({"range": {"from": true, "to": "now"}}),
        json!([1, 2]),
    ] {
        let (status, reply) = s.post_annotations("a", &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn annotations_get_and_post() {
    let s = start().await;
    let rows = dataset(s.now_us);
    let from = s.ms_ago(72.0);
    let to = (s.now_us / 1000).to_string();
    let (status, body) = s
        .get(
            "/api/v1/annotations",
            "a",
            &[("from", from.as_str()), ("to", to.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let items = body.as_array().unwrap();
    // Shifts (a3) are left out by default; newest first.
    let functions: Vec<&str> = items
        .iter()
        .map(|a| a["tags"][3].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["encode", "alloc", "it's", "other", "encode"]);
    let a1 = &items[0];
    assert_eq!(a1["time"], rows[0].window_start_us / 1000);
    assert_eq!(a1["timeEnd"], rows[0].window_end_us / 1000);
    assert_eq!(a1["isRegion"], true);
    assert_eq!(
        a1["tags"],
        json!(["checkout", "regression", "critical", "encode", CPU])
    );
    assert_eq!(a1["title"], "checkout: regression in encode");
    let text = a1["text"].as_str().unwrap();
    assert!(text.contains("<b>encode</b>"), "{text}");
    assert!(text.contains("10.00% → 25.00%"), "{text}");
    assert!(text.contains("+15.00 pp"), "{text}");
    assert!(
        text.contains(r#"<a href="/api/v1/diff.svg?id=a1&amp;x=1">"#),
        "{text}"
    );
    assert!(a1.get("annotation").is_none());

    // Filters; a range that cuts a window still shows the anomaly (windows overlap).
    let (_, body) = s
        .get(
            "/api/v1/annotations",
            "a",
            &[("service", "checkout"), ("kind", "improvement")],
        )
        .await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["tags"][3], "alloc");
    let mid = ((rows[0].window_start_us + rows[0].window_end_us) / 2000).to_string();
    let (_, body) = s
        .get(
            "/api/v1/annotations",
            "a",
            &[("from", mid.as_str()), ("to", "now")],
        )
        .await;
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body[0]["tags"][3], "encode");
    let (_, body) = s
        .get("/api/v1/annotations", "a", &[("kind", "shift")])
        .await;
    assert_eq!(body[0]["tags"][3], "login");

    // SimpleJSON.
    let rfc = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let annotation = json!({"name": "anomalies", "enable": true, "iconColor": "red",
                            "query": "service=checkout"});
    let request = json!({
        "range": {"from": rfc(s.now_us - 72 * HOUR_US), "to": rfc(s.now_us)},
        "rangeRaw": {"from": "now-3d", "to": "now"},
        "annotation": annotation,
    });
    let (status, body) = s.post_annotations("a", &request).await;
    assert_eq!(status, 200, "{body}");
    let items = body.as_array().unwrap();
    let times: Vec<i64> = items.iter().map(|a| a["time"].as_i64().unwrap()).collect();
    assert_eq!(
        times,
        [&rows[0], &rows[1], &rows[5]].map(|r| r.window_start_us / 1000)
    );
    for item in items {
        assert_eq!(item["annotation"], annotation);
        assert_eq!(item["tags"][0], "checkout");
    }
    assert_eq!(items[1]["timeEnd"], rows[1].window_end_us / 1000);
    assert_eq!(
        items[1]["tags"],
        json!(["checkout", "improvement", "warning", "alloc", MEM])
    );

    // The default range is the last 24 hours; the query text takes several filters.
    let (_, body) = s
        .post_annotations(
            "a",
            &json!({"annotation": {"query": "service=checkout & kind=regression&limit=5"}}),
        )
        .await;
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body[0]["time"], rows[0].window_start_us / 1000);
    assert_eq!(
        body[0]["annotation"]["query"],
        "service=checkout & kind=regression&limit=5"
    );
}

#[tokio::test]
async fn appending_the_same_anomalies_twice_stores_them_once() {
    let s = start().await;
    let again = s.store.append_anomalies(&dataset(s.now_us)).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    // One new row among known ones: only it is written.
    let mut rows = dataset(s.now_us);
    rows.push(anomaly(
        "a7",
        "a",
        "checkout",
        CPU,
        "regression",
        "info",
        "fresh",
        s.now_us,
        0.5,
    ));
    let written = s.store.append_anomalies(&rows).await.unwrap();
    assert_eq!(
        written
            .iter()
            .map(|a| a.anomaly_id.as_str())
            .collect::<Vec<_>>(),
        ["a7"]
    );
    assert_eq!(
        s.ids("a", &[("from", "0")]).await,
        ["a7", "a1", "a2", "a3", "a4", "a5", "a6"]
    );
    assert_eq!(s.ids("b", &[("from", "0")]).await, ["b1"]);
}
