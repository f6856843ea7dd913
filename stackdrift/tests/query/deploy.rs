//! deploy/ without a cluster or a Docker engine: `tests/python/validate_deploy.py`, in the
//! `deploy` venv of `scripts/python-env.sh`, validates the Kubernetes manifests (strict
//! Kubernetes schemas, references between objects), the compose file (Compose specification
//! schema, references), the Grafana provisioning and the Dockerfile, and checks every setting
//! they give against this binary's `--help`. It lives in this test binary because it needs
//! the `stackdrift` binary, which only this crate's tests are handed.

use std::path::Path;
use std::process::{Command, Output};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn deploy_manifests_validate() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let env = Command::new("bash")
        .arg(repo.join("scripts/python-env.sh"))
        .arg("deploy")
        .output()
        .expect("running scripts/python-env.sh deploy");
    assert!(
        env.status.success(),
        "python-env.sh deploy:\n{}",
        text(&env)
    );
    let stdout = String::from_utf8(env.stdout).expect("UTF-8 path");
    let python = stdout.lines().last().expect("venv python").trim();

    let out = Command::new(python)
        .arg(repo.join("tests/python/validate_deploy.py"))
        .arg("--stackdrift")
        .arg(env!("CARGO_BIN_EXE_stackdrift"))
        .arg("--repo")
        .arg(repo)
        .output()
        .expect("running validate_deploy.py");
    let report = text(&out);
    assert!(
        out.status.success(),
        "deploy/ does not validate ({}):\n{report}",
        out.status
    );
    assert!(report.contains("deploy/: all checks passed"), "{report}");
}
