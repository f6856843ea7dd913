//! The client commands (`stackdrift push | sql | flamegraph | diff | anomalies`) run as child
//! processes against a `stackdrift all` started here, and that server's self-profiling
//! (`--self-profile`, `/debug/pprof/profile`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stackdrift_model::pprof::decode_profile;
use stackdrift_tests::client::{cpu_profile, sql_json};
use stackdrift_tests::process::Stackdrift;

const BIN: &str = env!("CARGO_BIN_EXE_stackdrift");

/// Runs `stackdrift ARGS… --url URL`.
fn run(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--url", url])
        .output()
        .expect("running the stackdrift client")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A CPU profile (values in ns) at `time_s` with root-first stacks.
fn profile_file(dir: &Path, name: &str, time_s: i64, stacks: &[(&[&str], i64)]) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        cpu_profile(time_s * 1_000_000_000, 10_000_000, stacks),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// The first data row of a table printed by the client (after the header and the dashes).
fn first_row(table: &str) -> Vec<String> {
    table
        .lines()
        .nth(2)
        .unwrap_or_else(|| panic!("no rows in\n{table}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_and_self_profiling_against_a_running_stackdrift() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sd = Stackdrift::start(
        Path::new(BIN),
        "cli-all",
        &[
            "all",
            "--storage-url",
            data.to_str().unwrap(),
            "--self-profile",
            "--self-profile-interval",
            "1s",
        ],
    );
    let url = sd.url.as_str();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // Baseline 20–15 minutes ago: encode 10, gc 5 per profile. Comparison in the last 5
    // minutes: encode 10 and a new compress 20 per profile.
    let mut files = Vec::new();
    for k in 0..3 {
        files.push(profile_file(
            dir.path(),
            &format!("base{k}.pb.gz"),
            now - 1200 + 60 * k,
            &[(&["main", "handle", "encode"], 10), (&["main", "gc"], 5)],
        ));
        files.push(profile_file(
            dir.path(),
            &format!("new{k}.pb.gz"),
            now - 300 + 60 * k,
            &[
                (&["main", "handle", "encode"], 10),
                (&["main", "handle", "compress"], 20),
            ],
        ));
    }
    let bad = dir.path().join("bad.pb.gz");
    std::fs::write(&bad, b"this is not a profile").unwrap();
    let mut args = vec![
        "push",
        "--tenant",
        "acme",
        "--service",
        "shop",
        "--label",
        "region=eu",
    ];
    args.extend(files.iter().map(String::as_str));
    args.push(bad.to_str().unwrap());

    // One bad file: the others are pushed, the bad one is named with the server's answer,
    // and the exit status says so.
    let out = run(url, &args);
    assert!(!out.status.success(), "a bad file must fail the command");
    let err = stderr(&out);
    assert!(err.contains("pushed 6 of 7 files"), "{err}");
    assert!(
        err.contains("bad.pb.gz: 400") || err.contains("bad.pb.gz: 422"),
        "{err}"
    );

    // SQL: table, CSV; the tenant sees its rows, another tenant none; a refused statement.
    let q = "SELECT service_name, region, CAST(SUM(value) AS BIGINT) AS v FROM samples \
             WHERE service_name = 'shop' GROUP BY service_name, region";
    let table = ok(run(url, &["sql", "--tenant", "acme", q]));
    let data_rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(data_rows.len(), 2, "{table}");
    assert_eq!(
        data_rows[1].split_whitespace().collect::<Vec<_>>(),
        ["|", "shop", "|", "eu", "|", "135", "|"]
    );
    assert!(table.ends_with("(1 row)\n"), "{table}");
    let csv = ok(run(url, &["sql", "--tenant", "acme", "--format", "csv", q]));
    assert_eq!(csv, "service_name,region,v\nshop,eu,135\n");
    let json: Value = serde_json::from_str(&ok(run(
        url,
        &["sql", "--tenant", "acme", "--format", "json", q],
    )))
    .unwrap();
    assert_eq!(json[0]["v"], 135);
    let other = ok(run(url, &["sql", "--tenant", "other", q]));
    assert!(
        other.contains("(0 rows)") && other.contains("service_name"),
        "{other}"
    );
    let refused = run(url, &["sql", "--tenant", "acme", "DROP TABLE samples"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("400"), "{}", stderr(&refused));

    // Flame graph: a table of the heaviest functions, an SVG, a pprof.
    let flamegraph = |extra: &[&str]| {
        let mut args = vec![
            "flamegraph",
            "--tenant",
            "acme",
            "--service",
            "shop",
            "--from",
            "now-1h",
        ];
        args.extend(extra);
        ok(run(url, &args))
    };
    let fg = flamegraph(&[]);
    assert_eq!(
        first_row(&fg),
        ["compress", "60", "44.44%", "60", "44.44%"],
        "{fg}"
    );
    assert!(fg.contains("total 135 over 5 functions"), "{fg}");
    let svg = dir.path().join("shop.svg");
    flamegraph(&["-o", svg.to_str().unwrap()]);
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg") && svg_text.contains("compress"));
    let pprof = dir.path().join("shop.pb.gz");
    flamegraph(&["-o", pprof.to_str().unwrap()]);
    let p = decode_profile(&std::fs::read(&pprof).unwrap(), 1 << 30).unwrap();
    let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(total, 135);

    // Diff of the two ranges: compress appeared (+66.67 pp of the total), gc disappeared.
    let range = [
        "--tenant",
        "acme",
        "--service",
        "shop",
        "--baseline-from",
        "now-30m",
        "--baseline-to",
        "now-10m",
        "--from",
        "now-10m",
        "--to",
        "now",
    ];
    let mut diff_args = vec!["diff"];
    diff_args.extend(range);
    let diff = ok(run(url, &diff_args));
    assert_eq!(
        first_row(&diff),
        ["compress", "0.00%", "66.67%", "+66.67", "pp"],
        "{diff}"
    );
    assert!(diff.contains("gc") && diff.contains("-33.33 pp"), "{diff}");
    let diff_svg = dir.path().join("diff.svg");
    diff_args.extend(["-o", diff_svg.to_str().unwrap()]);
    ok(run(url, &diff_args));
    assert!(
        std::fs::read_to_string(&diff_svg)
            .unwrap()
            .contains("compress")
    );
    let nothing = run(url, &["diff", "--service", "shop"]);
    assert!(
        !nothing.status.success() && stderr(&nothing).contains("nothing to compare"),
        "{}",
        stderr(&nothing)
    );

    // Anomalies: none here (the detector needs a long baseline; the detector test lists a
    // real one with this command); JSON is the server's; a bad filter is the server's 400.
    let listed = ok(run(url, &["anomalies", "--tenant", "acme"]));
    assert_eq!(listed, "no anomalies in the range\n");
    let raw: Value =
        serde_json::from_str(&ok(run(url, &["anomalies", "--tenant", "acme", "--json"]))).unwrap();
    assert_eq!(raw["anomalies"], Value::Array(vec![]));
    let bad_kind = run(url, &["anomalies", "--kind", "nonsense"]);
    assert!(
        !bad_kind.status.success() && stderr(&bad_kind).contains("400"),
        "{}",
        stderr(&bad_kind)
    );

    // An unreachable server is an error naming the URL.
    let down = run("http://127.0.0.1:9", &["sql", "SELECT 1"]);
    assert!(
        !down.status.success() && stderr(&down).contains("cannot reach stackdrift"),
        "{}",
        stderr(&down)
    );

    // Self-profiling: the server's own CPU profiles arrive as service stackdrift-all (in the
    // anonymous tenant), without the sampler's own frames at the leaf.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stacks = loop {
        // Queries are CPU work for the server to sample.
        let (status, rows) = sql_json(
            &http,
            url,
            "anonymous",
            "SELECT frames FROM stacks WHERE service_name = 'stackdrift-all'",
        )
        .await;
        assert_eq!(status, 200, "{rows}");
        let rows = rows.as_array().cloned().unwrap_or_default();
        if !rows.is_empty() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no self-profile stored within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for row in &stacks {
        let leaf = row["frames"][0]["function"].as_str().unwrap_or_default();
        assert!(
            !leaf.is_empty() && !leaf.starts_with("backtrace::") && !leaf.contains("pprof::"),
            "self-profile stack starts in the sampler: {leaf:?}"
        );
    }

    // /debug/pprof/profile: waits for the self-profiling period, then profiles on its own.
    let resp = http
        .get(format!("{url}/debug/pprof/profile?seconds=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let p = decode_profile(&body, 1 << 30).unwrap();
    let types: Vec<&str> = p
        .sample_type
        .iter()
        .map(|t| p.string_table[t.r#type as usize].as_str())
        .collect();
    assert_eq!(types, ["samples", "cpu"]);
    for bad in ["0", "301", "abc"] {
        let resp = http
            .get(format!("{url}/debug/pprof/profile?seconds={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "seconds={bad}");
    }
}
