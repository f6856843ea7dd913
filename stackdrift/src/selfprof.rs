//! stackdrift profiling itself: `GET /debug/pprof/profile?seconds=N` on every role (a gzipped
//! pprof CPU profile, as Go's `net/http/pprof` serves it, so `go tool pprof URL` works), and
//! with `--self-profile` a background loop that pushes the process's own CPU profile every
//! `--self-profile-interval` to an ingester (by default this process's own), as service
//! `stackdrift-<role>`.
//!
//! Sampling is `setitimer(ITIMER_PROF)` + a signal handler that records the stack (the `pprof`
//! crate); the process has one such timer, so one profile is taken at a time: a request for a
//! profile waits for the self-profiling loop's current period to end (it then takes the next
//! one), and a second concurrent request gets 409.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use prost::Message;
use stackdrift_model::auth::Auth;
use stackdrift_model::tenant::TENANT_HEADER;
use stackdrift_model::{Frame, PprofBuilder};
use stackdrift_proto::push::v1::PushRequest;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Samples per second per CPU-busy thread.
pub(crate) const HZ: i32 = 100;
/// Longest profile `/debug/pprof/profile` takes.
const MAX_SECONDS: u64 = 300;
/// How long a request waits for the sampler before answering 409.
const WAIT_FOR_SAMPLER: Duration = Duration::from_secs(65);

/// The process's one CPU sampler.
#[derive(Clone, Default)]
pub(crate) struct Sampler {
    busy: Arc<Mutex<()>>,
}

impl Sampler {
    /// Samples the process's CPU for `period` and returns the profile, gzipped pprof.
    /// `None` when another profile is being taken and did not end within `wait`.
    async fn profile(&self, period: Duration, wait: Duration) -> anyhow::Result<Option<Vec<u8>>> {
        let Ok(_turn) = tokio::time::timeout(wait, self.busy.lock()).await else {
            return Ok(None);
        };
        // The whole period on a blocking thread: with the sampler started from an async task
        // that then awaited a tokio timer, no sample at all was recorded (measured on Linux
        // 6.18, multi-thread runtime); a plain thread sleeping through the period works.
        let built = tokio::task::spawn_blocking(move || {
            let started = SystemTime::now();
            let guard = pprof::ProfilerGuardBuilder::default()
                .frequency(HZ)
                // Unwinding from inside these libraries can deadlock in the signal handler.
                .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                .build()
                .context("starting the CPU sampler")?;
            std::thread::sleep(period);
            let report = guard.report().build().context("reading the samples")?;
            // Dropping the guard stops the sampler before the (CPU-heavy) symbolized encoding.
            drop(guard);
            anyhow::Ok(encode(&report, started, period))
        })
        .await
        .context("the sampling thread failed")??;
        Ok(Some(built))
    }
}

/// A `pprof` report as a gzipped pprof profile: `samples/count` and `cpu/nanoseconds`, one
/// sample per (stack, thread name), inlined functions as their own frames, leaf first.
fn encode(report: &pprof::Report, started: SystemTime, period: Duration) -> Vec<u8> {
    let nanos_per_sample = 1_000_000_000 / i64::from(HZ);
    let start_ns = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let mut builder = PprofBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        nanos_per_sample,
    )
    .time(start_ns, period.as_nanos() as i64);
    for (frames, count) in &report.data {
        let count = *count as i64;
        if count <= 0 {
            continue;
        }
        let stack: Vec<Frame> = frames
            .frames
            .iter()
            .flatten()
            .map(|symbol| symbol.name())
            // The leaf end starts with the sampler's own unwinding frames.
            .skip_while(|name| is_sampler_frame(name))
            .map(|name| Frame::named(strip_hash(&name)))
            .collect();
        if stack.is_empty() {
            continue;
        }
        let thread = thread_group(&frames.thread_name);
        builder.sample(
            &stack,
            &[count, count * nanos_per_sample],
            &[("thread", thread.as_str())],
        );
    }
    builder.encode_gzip()
}

/// Frames of the unwinder the signal handler runs, above the interrupted code.
fn is_sampler_frame(name: &str) -> bool {
    name.starts_with("backtrace::") || name.contains("pprof::")
}

/// A Rust symbol without its `::h0123456789abcdef` hash suffix.
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// A thread name with its trailing pool number dropped (`tokio-runtime-worker`,
/// `stackdrift`), so threads of one pool form one series.
fn thread_group(name: &str) -> String {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_');
    if trimmed.is_empty() {
        "unnamed".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[derive(Clone)]
struct DebugState {
    sampler: Sampler,
    auth: Auth,
}

/// `GET /debug/pprof/profile`. When tokens are on, any valid token may ask: a profile holds
/// function names, no tenant's data.
pub(crate) fn routes(sampler: Sampler, auth: Auth) -> Router {
    Router::new()
        .route("/debug/pprof/profile", get(profile))
        .with_state(DebugState { sampler, auth })
}

async fn profile(
    State(state): State<DebugState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if state.auth.enabled()
        && let Err(e) = state.auth.tenant(
            headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        )
    {
        return (StatusCode::UNAUTHORIZED, format!("{}\n", e.0)).into_response();
    }
    let seconds = match params.get("seconds").map(|s| s.trim().parse::<u64>()) {
        None => 30,
        Some(Ok(s)) if (1..=MAX_SECONDS).contains(&s) => s,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("seconds must be a whole number from 1 to {MAX_SECONDS}\n"),
            )
                .into_response();
        }
    };
    match state
        .sampler
        .profile(Duration::from_secs(seconds), WAIT_FOR_SAMPLER)
        .await
    {
        Ok(Some(body)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile.pb.gz\"",
                ),
            ],
            body,
        )
            .into_response(),
        Ok(None) => (
            StatusCode::CONFLICT,
            "another CPU profile is being taken; try again when it ends\n",
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot profile: {e:#}\n"),
        )
            .into_response(),
    }
}

/// Where and how the self-profiling loop pushes.
pub(crate) struct SelfPush {
    /// Base URL of the ingester.
    pub(crate) url: String,
    pub(crate) tenant: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) interval: Duration,
    /// `stackdrift-<role>`.
    pub(crate) service: String,
}

/// Profiles the process for one `interval` after another and pushes each profile, until
/// cancelled. Failures are logged (at most once a minute) and the loop goes on.
pub(crate) async fn push_loop(sampler: Sampler, cfg: SelfPush, cancel: CancellationToken) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "self-profiling off: no HTTP client");
            return;
        }
    };
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let mut last_warning: Option<std::time::Instant> = None;
    let mut n: u64 = 0;
    loop {
        let taken = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sampler.profile(cfg.interval, cfg.interval) => r,
        };
        let body = match taken {
            Ok(Some(b)) => b,
            // A /debug/pprof request has the sampler: skip this period.
            Ok(None) => continue,
            Err(e) => {
                warn!(error = format!("{e:#}"), "self-profiling stopped");
                return;
            }
        };
        n += 1;
        let mut labels = vec![
            ("__name__", "process_cpu"),
            ("service_name", cfg.service.as_str()),
            ("version", env!("CARGO_PKG_VERSION")),
        ];
        if !host.is_empty() {
            labels.push(("instance", host.as_str()));
        }
        let req =
            PushRequest::one_profile(labels, body, format!("self-{}-{n}", std::process::id()));
        let mut call = http
            .post(format!("{}/push.v1.PusherService/Push", cfg.url))
            .header(header::CONTENT_TYPE, "application/proto")
            .body(req.encode_to_vec());
        if let Some(t) = &cfg.tenant {
            call = call.header(TENANT_HEADER, t);
        }
        if let Some(t) = &cfg.token {
            call = call.bearer_auth(t);
        }
        let outcome = match call.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => debug!(url = %cfg.url, "pushed own CPU profile"),
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!(url = %cfg.url, error = %e, "cannot push own CPU profile");
                    last_warning = Some(std::time::Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_pool_numbers_are_dropped() {
        assert_eq!(
            strip_hash("core::ptr::drop::h0123456789abcdef"),
            "core::ptr::drop"
        );
        assert_eq!(strip_hash("foo::hello"), "foo::hello");
        assert_eq!(strip_hash("a::hxyz"), "a::hxyz");
        assert_eq!(thread_group("tokio-runtime-worker"), "tokio-runtime-worker");
        assert_eq!(thread_group("stackdrift-12"), "stackdrift");
        assert_eq!(thread_group("worker_3"), "worker");
        assert_eq!(thread_group("42"), "unnamed");
        assert!(is_sampler_frame(
            "backtrace::backtrace::trace_unsynchronized"
        ));
        assert!(is_sampler_frame(
            "<pprof::backtrace::backtrace_rs::Trace as pprof::backtrace::Trace>::trace"
        ));
        assert!(!is_sampler_frame(
            "tokio::runtime::task::harness::poll_future"
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_profile_at_a_time() {
        let sampler = Sampler::default();
        let body = sampler
            .profile(Duration::from_millis(50), Duration::from_secs(1))
            .await
            .unwrap()
            .expect("the sampler is free");
        let p = stackdrift_model::pprof::decode_profile(&body, 1 << 30).unwrap();
        let types: Vec<&str> = p
            .sample_type
            .iter()
            .map(|t| p.string_table[t.r#type as usize].as_str())
            .collect();
        assert_eq!(types, ["samples", "cpu"]);
        // While one profile is taken, a second caller that cannot wait gets None.
        let s2 = sampler.clone();
        let first =
            tokio::spawn(
                async move { s2.profile(Duration::from_millis(300), Duration::ZERO).await },
            );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            sampler
                .profile(Duration::from_millis(10), Duration::from_millis(10))
                .await
                .unwrap()
                .is_none()
        );
        assert!(first.await.unwrap().unwrap().is_some());
    }
}
