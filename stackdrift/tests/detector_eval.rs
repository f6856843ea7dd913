//! The detector's evaluation harness at CI size: a generated fleet with known regressions,
//! cost shifts and plain deploys goes through the push API into a `stackdrift ingester`; the
//! detector runs over the tables; the targets of the detector issue are asserted at this size
//! (docs/DETECTION.md has the method and the figures of a larger run).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use stackdrift_tests::process::Stackdrift;

#[test]
fn detector_meets_its_targets_on_a_generated_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_url = data.to_str().unwrap();
    let server = Stackdrift::start(
        Path::new(env!("CARGO_BIN_EXE_stackdrift")),
        "ingester",
        &[
            "ingester",
            "--storage-url",
            data_url,
            "--max-profile-age-secs",
            "0",
        ],
    );
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_stackdrift-eval"))
        .args(["--url", &server.url, "--storage-url", data_url])
        .args(["--services", "24", "--noise-only", "4", "--hours", "4"])
        .args(["--json", report.to_str().unwrap()])
        .output()
        .expect("running stackdrift-eval");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stackdrift-eval failed");
    server.terminate(Duration::from_secs(30));

    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let report = &doc["report"];
    let injected: u64 = report["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["injected"].as_u64().unwrap())
        .sum();
    assert!(injected >= 20, "too few regressions injected: {injected}");
    assert!(
        report["shifts"].as_u64().unwrap() >= 3,
        "too few cost shifts"
    );
    let failed: Vec<&serde_json::Value> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["met"] != true)
        .collect();
    assert!(failed.is_empty(), "targets not met: {failed:#?}\n{stdout}");
}
