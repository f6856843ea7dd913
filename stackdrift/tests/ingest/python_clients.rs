//! The real Pyroscope Python SDK, unchanged, pushing to stackdrift: `pyroscope-io==1.4.0`
//! (push.v1 over Connect, Basic auth) and `pyroscope-io==0.8.16` (`/ingest`, Bearer token).
//! The venvs are made once by `scripts/python-env.sh` and cached under `target/pyenv`.

use std::path::{Path, PathBuf};
use std::process::Command;

use stackdrift_tests::client::sql_json_auth;
use stackdrift_tests::sql::{function_totals_sql, totals_from_json};

use crate::{CPU, start, write_file};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The python of the cached venv `name`, made on first use.
fn venv_python(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/python-env.sh"))
        .arg(name)
        .output()
        .expect("running scripts/python-env.sh");
    assert!(
        out.status.success(),
        "scripts/python-env.sh {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 path");
    PathBuf::from(stdout.lines().last().expect("python path").trim())
}

async fn client_push(venv: &str, app: &str, tenant: &str, token: &str, auth_args: Vec<String>) {
    let python = tokio::task::spawn_blocking({
        let venv = venv.to_owned();
        move || venv_python(&venv)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = write_file(
        dir.path(),
        "auth.toml",
        &format!("{tenant} = \"{token}\"\nsomeone-else = \"another-token-123\"\n"),
    );
    let sd = start(app, dir.path(), &["--auth-file", &auth]);
    let url = sd.url.clone();

    let mut cmd = Command::new(&python);
    cmd.arg(repo().join("tests/python/cpu_burner.py"))
        .args(["--server", &url, "--app-name", app, "--tenant-id", tenant])
        .args([
            "--tag",
            "env=test",
            "--duration",
            "12",
            "--upload-interval",
            "2",
        ])
        .args(["--log-level", "INFO"])
        .args(auth_args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("running cpu_burner.py"))
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("[{app} client]\n{log}");
    assert!(out.status.success(), "cpu_burner.py failed: {}", out.status);

    let http = reqwest::Client::new();
    // The service and its label are stored, for the token's tenant.
    let (status, rows) = sql_json_auth(
        &http,
        &url,
        None,
        Some(token),
        "SELECT service_name, env, profile_type, COUNT(*) AS n FROM samples \
         GROUP BY service_name, env, profile_type",
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "one service, one type: {rows:?}");
    assert_eq!(rows[0]["service_name"], app);
    assert_eq!(rows[0]["env"], "test");
    assert_eq!(rows[0]["profile_type"], CPU);
    assert!(rows[0]["n"].as_i64().unwrap() > 0);
    // The clients log a refused push as "Sending Session failed STATUS BODY".
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Sending") && l.to_lowercase().contains("fail"))
        .collect();
    assert!(
        refused.is_empty(),
        "the client reported failed pushes: {refused:#?}"
    );

    // Its hottest function by self time is the one the program burns most in.
    let (status, totals) = sql_json_auth(
        &http,
        &url,
        None,
        Some(token),
        &function_totals_sql(tenant, app, CPU),
    )
    .await;
    assert_eq!(status, 200, "{totals}");
    let totals = totals_from_json(&totals);
    let hottest = totals
        .iter()
        .max_by_key(|(_, (self_v, _))| *self_v)
        .map(|(f, _)| f.as_str())
        .unwrap();
    assert_eq!(hottest, "burn_hot_loop", "{totals:?}");
    let cold = totals.get("burn_cold_loop").map_or(0, |t| t.0);
    assert!(totals["burn_hot_loop"].0 > 2 * cold, "{totals:?}");

    // Another tenant's token sees none of it; no token is refused.
    let (status, rows) = sql_json_auth(
        &http,
        &url,
        None,
        Some("another-token-123"),
        "SELECT COUNT(*) AS n FROM samples",
    )
    .await;
    assert_eq!((status, rows), (200, serde_json::json!([{"n": 0}])));
    let (status, _) = sql_json_auth(&http, &url, Some(tenant), None, "SELECT 1").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyroscope_io_1_4_0_pushes_over_connect() {
    client_push(
        "pyroscope-1.4.0",
        "py-connect",
        "team-py",
        "py-basic-token-1",
        vec![
            "--basic-auth-user".into(),
            "team-py".into(),
            "--basic-auth-password".into(),
            "py-basic-token-1".into(),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyroscope_io_0_8_16_pushes_to_ingest() {
    client_push(
        "pyroscope-0.8.16",
        "py-legacy",
        "team-legacy",
        "py-bearer-token-1",
        vec!["--auth-token".into(), "py-bearer-token-1".into()],
    )
    .await;
}
