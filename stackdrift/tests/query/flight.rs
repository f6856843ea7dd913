//! Arrow Flight SQL, with the real ADBC driver (`adbc-driver-flightsql` from PyPI, in the
//! `flightsql` venv made by `scripts/python-env.sh`): `tests/python/flight_sql_client.py`
//! queries a `stackdrift all` for one tenant and prints what it saw; the rows must equal the
//! SQL API's for the same query, and no other tenant's rows may show.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use stackdrift_tests::client::sql_json;

use super::{Pushed, encode, push_profile, start};

const TENANT_A: &str = "flight-a";
const TENANT_B: &str = "flight-b";
const SQL: &str = "SELECT service_name, profile_type, COUNT(*) AS n, SUM(value) AS total \
                   FROM samples GROUP BY 1, 2 ORDER BY 1, 2";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The python of the cached `flightsql` venv, made on first use.
fn venv_python() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/python-env.sh"))
        .arg("flightsql")
        .output()
        .expect("running scripts/python-env.sh");
    assert!(
        out.status.success(),
        "scripts/python-env.sh flightsql failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 path");
    PathBuf::from(stdout.lines().last().expect("python path").trim())
}

async fn push(http: &reqwest::Client, url: &str, tenant: &str, p: &Pushed) {
    let labels = [("__name__", "process_cpu"), ("service_name", p.service)];
    push_profile(http, url, tenant, &labels, encode(p)).await;
}

fn services(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| r["service_name"].as_str().expect("service_name"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_flight_sql_client_sees_its_tenant_like_the_sql_api() {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sd = start(dir.path());
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let profile = |service: &'static str, k: i64, v: i64| Pushed {
        service,
        region: "eu",
        time_s: now - 120 + 10 * k,
        stacks: vec![(&["main", "handle"], v), (&["main", "gc"], 3)],
    };
    for k in 0..3 {
        push(&http, &sd.url, TENANT_A, &profile("shop", k, 10 + k)).await;
    }
    push(&http, &sd.url, TENANT_A, &profile("auth", 0, 7)).await;
    push(&http, &sd.url, TENANT_B, &profile("secret-svc", 0, 1000)).await;

    let (status, want) = sql_json(&http, &sd.url, TENANT_A, SQL).await;
    assert_eq!(status, 200, "{want}");
    assert_eq!(services(&want), ["auth", "shop"], "{want}");
    let (status, other) = sql_json(&http, &sd.url, TENANT_B, SQL).await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(services(&other), ["secret-svc"], "{other}");

    let uri = sd.url.replacen("http://", "grpc://", 1);
    let mut cmd = Command::new(&python);
    cmd.arg(repo().join("tests/python/flight_sql_client.py"))
        .args(["--uri", &uri, "--tenant", TENANT_A, "--sql", SQL]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("running the client"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "[flight_sql_client.py]\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "flight_sql_client.py: {}", out.status);
    let got: Value = serde_json::from_str(stdout.trim()).expect("one JSON document");

    // Statement and prepared statement: the SQL API's rows, only tenant A's.
    assert_eq!(got["statement"], want);
    assert_eq!(got["prepared"], want);
    for key in ["statement", "prepared"] {
        assert!(!services(&got[key]).contains(&"secret-svc"), "{key}: {got}");
    }

    // Catalog metadata: the session's views, under DataFusion's default names.
    let tables: Vec<(&str, &str, &str, &str)> = got["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["catalog"].as_str().unwrap(),
                t["schema"].as_str().unwrap(),
                t["table"].as_str().unwrap(),
                t["type"].as_str().unwrap(),
            )
        })
        .collect();
    for name in ["samples", "stacks", "stacks_raw"] {
        assert!(
            tables.contains(&("datafusion", "public", name, "VIEW")),
            "{name} missing: {tables:?}"
        );
    }
    let samples = got["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "samples")
        .unwrap();
    for column in ["value", "stack_id", "service_name"] {
        assert!(
            samples["columns"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == column),
            "{samples}"
        );
    }
    assert!(
        got["table_types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "VIEW"),
        "{got}"
    );
    let schema: Vec<&str> = got["samples_schema"]
        .as_array()
        .expect("samples schema")
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        schema.contains(&"value") && schema.contains(&"stack_id"),
        "{schema:?}"
    );
    assert_eq!(got["info"]["vendor_name"], "stackdrift", "{}", got["info"]);

    // A DDL statement is refused, prepared or not, and the client is told why.
    for key in ["ddl_error", "ddl_statement_error"] {
        let ddl = got[key].as_str().expect("the DDL statement failed");
        assert!(ddl.contains("read-only"), "{key}: {ddl}");
    }
}
