//! `stackdrift`: one binary, every role.
//!
//! ```text
//!  stackdrift [all|ingester|querier|compactor|detector] [--storage-url URL] [--listen ADDR] …
//! ```
//!
//! Roles share nothing but the tables under `--storage-url`, so any mix of processes can run
//! against the same URL: `all` on a laptop, or each role scaled on its own.

mod allocator;
mod cli;
mod client;
mod selfprof;
mod server;
mod tls;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use prometheus::Registry;
use stackdrift_compactor::{Compactor, CompactorConfig, CompactorMetrics};
use stackdrift_detector::detect::DetectConfig;
use stackdrift_detector::notify::{Format, Sink};
use stackdrift_detector::{Detector, DetectorConfig};
use stackdrift_ingester::grpc::GrpcPusher;
use stackdrift_ingester::limits::secs_to_us;
use stackdrift_ingester::otlp::GrpcProfiles;
use stackdrift_ingester::{
    Admission, BatchConfig, Batcher, IngestLimits, IngestMetrics, Ingester, TenantLimits,
};
use stackdrift_model::auth::Auth;
use stackdrift_model::clock::system_clock;
use stackdrift_model::{DecodeLimits, LabelLimits};
use stackdrift_querier::flight::FlightSql;
use stackdrift_querier::{Querier, QueryConfig, QueryMetrics};
use stackdrift_storage::{StorageConfig, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{LogFormat, Role, Settings};

/// mimalloc instead of glibc malloc: ingest allocates and frees many small strings across
/// threads, where glibc spent a quarter of the ingester's CPU (arena locks, consolidation) and
/// kept freed memory resident.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| client::COMMANDS.contains(&a))
    {
        return match client::main(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("stackdrift: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let cli = match cli::parse() {
        Ok(c) => c,
        // `--help`, `--version` (to stdout, status 0) and usage errors, as clap prints them.
        Err(e) if e.is::<clap::Error>() => e.downcast_ref::<clap::Error>().unwrap().exit(),
        Err(e) => {
            eprintln!("stackdrift: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    // Only servers: client commands and `--help` above run with mimalloc's defaults.
    allocator::reexec_tuned();
    init_logging(&cli.settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stackdrift")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.role, cli.settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "stackdrift failed");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(s: &Settings) {
    // delta-rs' kernel logs every snapshot it builds at INFO (and an ERROR for the expected
    // "no table yet" on first start): quiet it unless the filter names it.
    let directives = if s.log_level.contains("kernel") || s.log_level.contains("deltalake") {
        s.log_level.clone()
    } else {
        format!(
            "{},buoyant_kernel=off,deltalake_core=warn,pprof=warn",
            s.log_level
        )
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&directives))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match s.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    // A panic (ours, or one a dependency catches, such as object_store's upload abort during
    // an outage) becomes one log event in the configured format instead of free text on
    // stderr. The backtrace is captured only when RUST_BACKTRACE asks for it.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string payload)".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            error!(
                panic = %message,
                location,
                thread = thread.name().unwrap_or("unnamed"),
                backtrace = %backtrace,
                "panicked"
            );
        } else {
            error!(
                panic = %message,
                location,
                thread = thread.name().unwrap_or("unnamed"),
                "panicked"
            );
        }
    }));
}

/// The compactor's settings from the command line.
fn compactor_config(s: &Settings) -> anyhow::Result<CompactorConfig> {
    use stackdrift_compactor::policy::{RetentionPolicy, parse_duration, parse_tiers};
    let flag = |name: &str, value: &str| -> anyhow::Result<Option<Duration>> {
        parse_duration(value).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
    };
    let default_keep = flag("retention", &s.retention)?;
    let retention = match &s.retention_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            RetentionPolicy::from_toml(&text, default_keep)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => RetentionPolicy {
            default: default_keep,
            rules: Vec::new(),
        },
    };
    Ok(CompactorConfig {
        interval: Duration::from_secs(s.compaction_interval_secs.max(1)),
        window: flag("compaction-window", &s.compaction_window)?
            .ok_or_else(|| anyhow::anyhow!("--compaction-window must be longer than 0"))?,
        settle: flag("compaction-settle", &s.compaction_settle)?.unwrap_or_default(),
        tiers: parse_tiers(&s.downsample).map_err(|e| anyhow::anyhow!("--downsample: {e}"))?,
        retention,
        vacuum_grace: match flag("vacuum-grace", &s.vacuum_grace)? {
            // Files an ingester is writing are unreferenced until its commit: never delete
            // files that young.
            Some(d) if d >= Duration::from_secs(60) => d,
            _ => anyhow::bail!("--vacuum-grace must be at least 1m"),
        },
        dry_run: s.dry_run,
        ..CompactorConfig::default()
    })
}

fn detector_config(s: &Settings) -> anyhow::Result<DetectorConfig> {
    let duration = |name: &str, v: &str| {
        stackdrift_compactor::policy::parse_duration(v)
            .map_err(|e| anyhow::anyhow!("--{name}: {e}"))?
            .ok_or_else(|| anyhow::anyhow!("--{name}: a duration is required, not `off`"))
    };
    let sinks = s
        .webhooks
        .iter()
        .filter(|w| !w.trim().is_empty())
        .map(|w| {
            let sink = Sink::parse(w).map_err(|e| anyhow::anyhow!("--webhook {w:?}: {e}"))?;
            let token = match sink.format {
                Format::Grafana => &s.grafana_token,
                Format::Json | Format::Alertmanager => &s.webhook_token,
            };
            Ok(match token {
                Some(t) => sink.with_bearer_token(t.clone()),
                None => sink,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let window = duration("detector-window", &s.detector_window)?;
    if window.as_secs() < 1 {
        anyhow::bail!("--detector-window must be at least 1s");
    }
    if !(s.detector_fdr > 0.0 && s.detector_fdr < 1.0) {
        anyhow::bail!("--detector-fdr must be between 0 and 1");
    }
    if s.detector_persistence < 1 || s.detector_baseline_windows < 2 {
        anyhow::bail!("--detector-persistence must be ≥ 1 and --detector-baseline-windows ≥ 2");
    }
    Ok(DetectorConfig {
        window,
        settle: stackdrift_compactor::policy::parse_duration(&s.detector_settle)
            .map_err(|e| anyhow::anyhow!("--detector-settle: {e}"))?
            .unwrap_or(Duration::ZERO),
        group_by: s
            .detector_group_by
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        detect: DetectConfig {
            baseline_windows: s.detector_baseline_windows,
            min_baseline_windows: usize::try_from(s.detector_baseline_windows / 3)
                .unwrap_or(1)
                .max(1),
            persistence: s.detector_persistence,
            fdr: s.detector_fdr,
            min_abs: s.detector_min_effect_pp / 100.0,
            min_rel: s.detector_min_relative_pct / 100.0,
            ..DetectConfig::default()
        },
        public_url: s.public_url.clone(),
        sinks,
        notify_improvements: s.notify_improvements,
        // `0`/`off`: no backfill.
        backfill: stackdrift_compactor::policy::parse_duration(&s.detector_backfill)
            .map_err(|e| anyhow::anyhow!("--detector-backfill: {e}"))?
            .unwrap_or(Duration::ZERO),
        poll: duration("detector-poll", &s.detector_poll)?,
        ..DetectorConfig::default()
    })
}

/// `stackdrift detector --from … [--to …]`: replays the detector over a past range, prints
/// the anomalies as JSON lines on stdout and stores them.
async fn detect_replay(store: Arc<Store>, s: &Settings) -> anyhow::Result<()> {
    let now_ms = system_clock().now_us() / 1000;
    let parse = |v: &str| {
        stackdrift_querier::export::parse_time(v, now_ms).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let from = parse(s.from.as_deref().unwrap_or("now-1h"))?;
    let to = match &s.to {
        Some(t) => parse(t)?,
        None => now_ms,
    };
    if to <= from {
        anyhow::bail!("--to must be after --from");
    }
    let mut detector = Detector::new(store, detector_config(s)?)?;
    let found = detector
        .replay(from * 1000, to * 1000)
        .await
        .context("detector replay")?;
    let mut out = std::io::stdout().lock();
    for a in &found {
        writeln!(out, "{}", serde_json::to_string(a)?)?;
    }
    eprintln!(
        "{} anomalies in {} windows",
        found.len(),
        (to - from) * 1000 / detector.window_us()
    );
    Ok(())
}

/// `stackdrift compactor --once [--dry-run]`: one pass with progress on stderr, a summary
/// on stdout.
async fn compact_once(store: Arc<Store>, s: &Settings) -> anyhow::Result<()> {
    let config = compactor_config(s)?;
    let dry = config.dry_run;
    let compactor = Compactor::new(store, config, CompactorMetrics::new(&Registry::new())?)
        .with_progress(Arc::new(|line: &str| eprintln!("{line}")));
    let r = compactor.run_once().await.context("compaction pass")?;
    for (name, t) in [("samples", r.samples), ("stacks", r.stacks)] {
        println!(
            "{name}: {} files ({} bytes) -> {} files ({} bytes); {} commits, {} rows deleted by retention",
            t.files_before, t.bytes_before, t.files_after, t.bytes_after, t.commits, t.rows_deleted
        );
    }
    println!(
        "vacuum: {} files {}",
        r.vacuumed.len(),
        if dry { "would be deleted" } else { "deleted" }
    );
    if dry {
        println!(
            "dry run: {} changes planned, nothing written",
            r.changes.len()
        );
    }
    Ok(())
}

/// Background work, awaited after the server has drained.
struct Background {
    name: &'static str,
    handle: JoinHandle<()>,
}

async fn run(role: Role, s: Settings) -> anyhow::Result<()> {
    info!(
        role = role.name(),
        version = env!("CARGO_PKG_VERSION"),
        storage = %redact(&s.storage_url),
        "starting"
    );
    let storage = StorageConfig {
        url: s.storage_url.clone(),
        options: s.storage_options()?,
    };
    let auth = match &s.auth_file {
        Some(path) => {
            let auth = Auth::from_file(path).map_err(anyhow::Error::msg)?;
            info!(file = %path.display(), "tenant authentication on");
            auth
        }
        None => Auth::disabled(),
    };
    let store = Store::open(storage).await.context("opening the tables")?;
    if s.from.is_some() || s.to.is_some() {
        if role != Role::Detector {
            anyhow::bail!("--from/--to replay the detector: stackdrift detector --from now-1d");
        }
        return detect_replay(store, &s).await;
    }
    if s.once || s.dry_run {
        if role != Role::Compactor {
            anyhow::bail!(
                "--once and --dry-run are for the compactor: stackdrift compactor --once"
            );
        }
        return compact_once(store, &s).await;
    }
    let registry = Registry::new();
    let ready = Arc::new(AtomicBool::new(false));

    let common = server::Common {
        registry: registry.clone(),
        ready: ready.clone(),
        role: role.name(),
    };
    // The querier's web UI takes `/`; other roles answer it with the text index.
    let mut http = server::common_routes(common, !role.runs(Role::Querier));
    let sampler = selfprof::Sampler::default();
    http = http.merge(selfprof::routes(sampler.clone(), auth.clone()));
    let self_profile_interval = if s.self_profile {
        if s.self_profile_url.is_none() && !role.runs(Role::Ingester) {
            anyhow::bail!(
                "--self-profile: this role has no ingester to push to; set --self-profile-url"
            );
        }
        match stackdrift_compactor::policy::parse_duration(&s.self_profile_interval) {
            Ok(Some(d)) if d >= Duration::from_secs(1) => Some(d),
            _ => anyhow::bail!("--self-profile-interval must be a duration of at least 1s"),
        }
    } else {
        None
    };
    let mut grpc = tonic::service::Routes::default();
    let mut background = Vec::new();
    // Cancelled on SIGTERM/SIGINT. Background tasks stop on it at once: the batcher then
    // commits everything already submitted, which is what in-flight pushes are waiting for.
    let shutdown = CancellationToken::new();

    if role.runs(Role::Ingester) {
        let metrics = IngestMetrics::new(&registry)?;
        let token = shutdown.child_token();
        let (batcher, handle) = Batcher::spawn(
            store.clone(),
            BatchConfig {
                max_age: Duration::from_millis(s.flush_interval_ms.max(1)),
                max_rows: s.flush_max_rows.max(1),
                max_flushes: s.flush_concurrency.max(1),
            },
            metrics.clone(),
            token.clone(),
        );
        background.push(Background {
            name: "ingest batcher",
            handle,
        });
        let limits = IngestLimits {
            decode: DecodeLimits {
                max_uncompressed_bytes: s.max_profile_bytes,
                max_samples: s.max_samples,
                max_stack_depth: s.max_stack_depth.max(1),
                labels: LabelLimits {
                    max_names: s.max_label_names,
                    max_name_len: s.max_label_name_length,
                    max_value_len: s.max_label_value_length,
                },
            },
            max_body_bytes: s.max_body_bytes,
            max_decompressed_bytes: s.max_decompressed_bytes,
            max_future_us: secs_to_us(s.max_future_secs),
            max_age_us: (s.max_profile_age_secs > 0).then(|| secs_to_us(s.max_profile_age_secs)),
            rate_bytes_per_sec: s.ingestion_rate_bytes as f64,
            burst_bytes: s.ingestion_burst_bytes as f64,
        };
        let limits = match &s.tenant_limits_file {
            Some(path) => TenantLimits::from_file(limits, path).map_err(anyhow::Error::msg)?,
            None => TenantLimits::uniform(limits),
        };
        let admission = Admission {
            limits,
            auth: auth.clone(),
            max_inflight_bytes: s.max_inflight_mib.saturating_mul(1 << 20),
        };
        let ingester = Ingester::new(batcher, admission, system_clock(), metrics);
        http = http.merge(stackdrift_ingester::http::routes(ingester.clone()));
        grpc = grpc
            .add_service(GrpcPusher::server(ingester.clone()))
            .add_service(GrpcProfiles::server(ingester));
    }
    if role.runs(Role::Querier) {
        let querier = Querier::new(
            store.clone(),
            QueryConfig {
                timeout: Duration::from_secs(s.query_timeout_secs.max(1)),
                memory_limit: s.query_memory_mib.max(1) << 20,
                frame_cache_frames: s.query_frame_cache,
                auth: auth.clone(),
                max_concurrent: s.max_concurrent_queries.max(1),
                max_queued: s.max_queued_queries,
                ..QueryConfig::default()
            },
            QueryMetrics::new(&registry)?,
        );
        http = http
            .merge(stackdrift_querier::sql::routes(querier.clone()))
            .merge(stackdrift_querier::connect::routes(querier.clone()))
            .merge(stackdrift_querier::export::routes(querier.clone()))
            .merge(stackdrift_querier::anomalies::routes(querier.clone()))
            .merge(stackdrift_querier::ui::routes(auth.clone()));
        grpc = grpc.add_service(FlightSql::server(querier.clone()));
        grpc = grpc.add_service(stackdrift_querier::grpc::GrpcQuerier::server(querier));
    }
    if role.runs(Role::Compactor) {
        let compactor = Compactor::new(
            store.clone(),
            compactor_config(&s)?,
            CompactorMetrics::new(&registry)?,
        );
        let token = shutdown.child_token();
        let handle = tokio::spawn(compactor.run(token.clone()));
        background.push(Background {
            name: "compactor",
            handle,
        });
    }
    if role.runs(Role::Detector) {
        let token = shutdown.child_token();
        let handle = tokio::spawn(stackdrift_detector::run(
            store.clone(),
            detector_config(&s)?,
            system_clock(),
            token.clone(),
        ));
        background.push(Background {
            name: "detector",
            handle,
        });
    }

    let app: Router = server::dispatch(http, grpc.prepare().into_axum_router());
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("binding {}", s.listen))?;
    let addr = listener.local_addr()?;
    ready.store(true, Ordering::Release);
    info!(%addr, role = role.name(), tls = tls.is_some(), "listening (HTTP and gRPC)");
    if let Some(interval) = self_profile_interval {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = match &s.self_profile_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if addr.ip().is_unspecified() => format!("{scheme}://127.0.0.1:{}", addr.port()),
            None => format!("{scheme}://{addr}"),
        };
        info!(%url, interval_secs = interval.as_secs(), "pushing own CPU profile");
        tokio::spawn(selfprof::push_loop(
            sampler,
            selfprof::SelfPush {
                url,
                tenant: s.self_profile_tenant.clone(),
                token: s.self_profile_token.clone(),
                interval,
                service: format!("stackdrift-{}", role.name()),
            },
            shutdown.child_token(),
        ));
    }

    tokio::spawn({
        let shutdown = shutdown.clone();
        let ready = ready.clone();
        async move {
            wait_for_signal().await;
            info!("shutdown requested: draining requests, then flushing buffered data");
            ready.store(false, Ordering::Release);
            shutdown.cancel();
        }
    });
    let grace = Duration::from_secs(s.shutdown_timeout_secs);
    let stopping = shutdown.clone().cancelled_owned();
    let served = match tls {
        Some(config) => {
            let server = axum::serve(tls::TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(stopping);
            tokio::spawn(async move { server.await })
        }
        None => {
            let listener = listener.tap_io(|tcp| server::set_nodelay(tcp));
            let server = axum::serve(listener, app).with_graceful_shutdown(stopping);
            tokio::spawn(async move { server.await })
        }
    };
    // The server returns once the signal came and in-flight requests (which wait for their
    // batch's commit) are answered; a stuck client cannot hold shutdown past the grace time.
    shutdown.cancelled().await;
    match tokio::time::timeout(grace, served).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "server error during shutdown"),
        Ok(Err(e)) => warn!(error = %e, "server task failed"),
        Err(_) => warn!(
            grace_secs = grace.as_secs(),
            "requests still open after the grace time"
        ),
    }
    for b in background {
        match tokio::time::timeout(grace, b.handle).await {
            Ok(Ok(())) => info!(task = b.name, "stopped"),
            Ok(Err(e)) => warn!(task = b.name, error = %e, "task failed"),
            Err(_) => warn!(task = b.name, "did not stop within the grace time"),
        }
    }
    info!("stopped");
    Ok(())
}

/// A storage URL for logs, without any credentials embedded in it.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn settings(a: &[&str]) -> Settings {
        let args: Vec<OsString> = a.iter().map(OsString::from).collect();
        cli::parse_from(args, |_| false).unwrap().settings
    }

    #[test]
    fn webhook_tokens_go_to_their_sinks_only() {
        let s = settings(&[
            "stackdrift",
            "--webhook",
            "grafana=http://grafana:3000",
            "--webhook",
            "alertmanager=http://am:9093/api/v2/alerts",
            "--webhook",
            "http://hooks/x",
            "--grafana-token",
            "glsa_1",
            "--webhook-token",
            "hook-2",
        ]);
        let cfg = detector_config(&s).unwrap();
        let tokens: Vec<(Format, Option<&str>)> = cfg
            .sinks
            .iter()
            .map(|k| (k.format, k.bearer_token.as_deref()))
            .collect();
        assert_eq!(
            tokens,
            [
                (Format::Grafana, Some("glsa_1")),
                (Format::Alertmanager, Some("hook-2")),
                (Format::Json, Some("hook-2")),
            ]
        );
    }

    #[test]
    fn bad_detector_settings_are_refused() {
        for bad in [
            &["stackdrift", "--webhook", "ftp://x"][..],
            &["stackdrift", "--detector-fdr", "0"],
            &["stackdrift", "--detector-window", "off"],
            &["stackdrift", "--detector-persistence", "0"],
        ] {
            assert!(detector_config(&settings(bad)).is_err(), "{bad:?}");
        }
    }
}
