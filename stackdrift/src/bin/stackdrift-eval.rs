//! `stackdrift-eval`: the detector's evaluation harness.
//!
//! Generates a fleet with known regressions, cost shifts and plain deploys
//! (`stackdrift_detector::eval`), pushes it window by window to a running stackdrift through
//! the push API (Connect, `application/proto`), runs the detector over the pushed range on the
//! same tables, and prints recall by regression size, false alarms per service-day, detection
//! latency, top-1 root cause and the detector's CPU per 1,000 series-windows.
//!
//! ```text
//! stackdrift ingester --storage-url ./eval-data --max-profile-age-secs 0 &
//! stackdrift-eval --url http://127.0.0.1:4040 --storage-url ./eval-data [--services 40 --hours 24]
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use prost::Message;
use stackdrift_detector::detect::DetectConfig;
use stackdrift_detector::eval::{Fleet, FleetSpec, score};
use stackdrift_detector::stats::two_sided_p;
use stackdrift_detector::{Detector, DetectorConfig};
use stackdrift_model::{Frame, PprofBuilder};
use stackdrift_proto::push::v1::PushRequest;
use stackdrift_storage::{StorageConfig, Store};

#[derive(Debug, Parser)]
#[command(
    name = "stackdrift-eval",
    about = "Evaluate the detector on a generated fleet"
)]
struct Args {
    /// Base URL of a running stackdrift (ingester or all) that accepts old profiles
    /// (`--max-profile-age-secs 0`).
    #[arg(long)]
    url: String,
    /// The storage URL that stackdrift writes to (the detector reads it directly).
    #[arg(long)]
    storage_url: String,
    /// Services in the fleet.
    #[arg(long, default_value_t = 12)]
    services: usize,
    /// Of which noise-only (plain deploys and cost shifts, no regressions).
    #[arg(long, default_value_t = 2)]
    noise_only: usize,
    /// Hours of one-minute windows per service.
    #[arg(long, default_value_t = 8)]
    hours: i64,
    /// Mean samples per window and service.
    #[arg(long, default_value_t = 5000.0)]
    samples: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Concurrent pushes (each waits for its batch's commit, so many in flight fill batches).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The detector's false discovery rate (default: the detector's default).
    #[arg(long)]
    fdr: Option<f64>,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Do not push: the tables already hold this fleet (same seed and size) from an earlier
    /// run; only run and score the detector.
    #[arg(long)]
    skip_push: bool,
    /// First window's start (Unix µs) of a fleet pushed earlier (with --skip-push; printed
    /// by the run that pushed it).
    #[arg(long)]
    start_us: Option<i64>,
    /// Windows pushed at once (their profiles go out concurrently).
    #[arg(long, default_value_t = 30)]
    windows_per_round: i64,
    /// Exit with status 1 when a target is not met.
    #[arg(long)]
    assert_targets: bool,
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux); 0 elsewhere.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let window_us = 60_000_000;
    let now_us = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros())?;
    let windows = args.hours * 60;
    let start_us = args
        .start_us
        .unwrap_or((now_us / window_us - windows - 1) * window_us);
    eprintln!("fleet starts at {start_us} (--start-us)");
    let spec = FleetSpec {
        services: args.services,
        noise_only: args.noise_only.min(args.services),
        windows,
        samples_per_window: args.samples,
        seed: args.seed,
        ..FleetSpec::small(start_us)
    };
    let mut fleet = Fleet::new(spec.clone());
    let client = reqwest::Client::new();
    let push_url = format!(
        "{}/push.v1.PusherService/Push",
        args.url.trim_end_matches('/')
    );

    let started = Instant::now();
    let mut pushed = 0usize;
    let round = args.windows_per_round.max(1);
    for first in (0..windows).step_by(usize::try_from(round)?) {
        let profiles: Vec<_> = (first..(first + round).min(windows))
            .flat_map(|w| fleet.window(w))
            .collect();
        if args.skip_push {
            continue;
        }
        let bodies: Vec<Vec<u8>> = profiles
            .iter()
            .map(|p| {
                let w = p.window;
                let t_ns = (start_us + w * window_us + 1_000_000) * 1000;
                let mut b =
                    PprofBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 10_000_000)
                        .time(t_ns, window_us * 1000);
                for (stack, count) in &p.stacks {
                    let frames: Vec<Frame> = stack
                        .iter()
                        .rev()
                        .map(|f| Frame::named(f.as_str()))
                        .collect();
                    b.sample(&frames, &[i64::try_from(*count).unwrap_or(i64::MAX)], &[]);
                }
                let labels = [
                    ("__name__", "process_cpu"),
                    ("service_name", p.service.as_str()),
                    ("version", p.version.as_str()),
                    ("env", "prod"),
                ];
                PushRequest::one_profile(labels, b.encode_gzip(), "").encode_to_vec()
            })
            .collect();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(bodies)
            .map(|body| {
                let client = client.clone();
                let url = push_url.clone();
                async move {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/proto")
                        .body(body)
                        .timeout(Duration::from_secs(60))
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        anyhow::bail!(
                            "push: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                    }
                    Ok(())
                }
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            r?;
            pushed += 1;
        }
        eprintln!(
            "pushed {} of {} windows ({pushed} profiles, {:.0?})",
            (first + round).min(windows),
            windows,
            started.elapsed()
        );
    }
    eprintln!("pushed {pushed} profiles in {:.1?}", started.elapsed());

    let store = Store::open(StorageConfig {
        url: args.storage_url.clone(),
        options: Default::default(),
    })
    .await
    .context("opening the tables")?;
    let mut cfg = DetectorConfig {
        settle: Duration::ZERO,
        seasonal: false,
        ..DetectorConfig::default()
    };
    if let Some(fdr) = args.fdr {
        cfg.detect.fdr = fdr;
    }
    let detect: DetectConfig = cfg.detect.clone();
    let mut detector = Detector::new(store, cfg)?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let anomalies = detector
        .replay(start_us, start_us + windows * window_us)
        .await
        .context("detector replay")?;
    let cpu = cpu_seconds() - cpu0;
    let wall = t0.elapsed();

    // The critical |z| of a lone true change among ~120 tests at the configured FDR.
    let alpha = detect.fdr / 120.0;
    let (mut lo, mut hi) = (0.0, 40.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if two_sided_p(mid) > alpha {
            lo = mid
        } else {
            hi = mid
        }
    }
    let report = score(
        &spec,
        &fleet.injected,
        &anomalies,
        detect.persistence,
        detect.baseline_windows,
        hi,
    );
    let series_windows = (spec.services as i64 * windows) as f64;
    let cpu_per_1000 = cpu / series_windows * 1000.0;
    println!(
        "fleet: {} services × {} windows of 1 min, {:.0} samples/window, seed {}",
        spec.services, windows, spec.samples_per_window, spec.seed
    );
    println!(
        "detector replay: {:.1} s wall, {:.1} CPU-s for {} series-windows → {:.3} CPU-s per 1,000 series-windows ({:.2} % of a core for 1,000 series at one window per minute)",
        wall.as_secs_f64(),
        cpu,
        series_windows,
        cpu_per_1000,
        cpu_per_1000 / 60.0 * 100.0
    );
    println!(
        "anomalies: {} ({} regressions)\n",
        anomalies.len(),
        anomalies.iter().filter(|a| a.kind == "regression").count()
    );
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "report": report,
            "targets": report
                .targets()
                .into_iter()
                .map(|(name, measured, met)| serde_json::json!({"target": name, "measured": measured, "met": met}))
                .collect::<Vec<_>>(),
            "fleet": {"services": spec.services, "windows": windows, "samples_per_window": spec.samples_per_window, "seed": spec.seed},
            "cpu_seconds_per_1000_series_windows": cpu_per_1000,
            "anomalies": anomalies,
            "injected": fleet.injected,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    }
    if args.assert_targets && report.targets().iter().any(|t| !t.2) {
        eprintln!("some targets are not met");
        std::process::exit(1);
    }
    Ok(())
}
