//! One listener for HTTP/1.1, HTTP/2 and gRPC, plus the routes every role serves.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use prometheus::{Encoder, Registry, TextEncoder};
use tower::ServiceExt;

/// State of the routes every role serves.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) registry: Registry,
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) role: &'static str,
}

/// `/ready`, `/metrics` and `/api` (what this is, as text), for every role; with
/// `text_index`, the text is also served at `/` (roles without the querier, whose web UI
/// takes `/` otherwise).
pub(crate) fn common_routes(common: Common, text_index: bool) -> Router {
    let mut router = Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api", get(index));
    if text_index {
        router = router.route("/", get(index));
    }
    router.with_state(common)
}

async fn ready(State(c): State<Common>) -> Response {
    if c.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn metrics(State(c): State<Common>) -> Response {
    let families = c.registry.gather();
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            buf,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn index(State(c): State<Common>) -> String {
    format!(
        "stackdrift {} ({} role)\n\n\
         GET  /ready\n\
         GET  /metrics\n\
         GET  /api                                 (this text)\n\
         GET  /                                    (querier: web UI; this text on other roles)\n\
         POST /push.v1.PusherService/Push          (ingester: Connect or gRPC)\n\
         POST /ingest                              (ingester: Pyroscope legacy)\n\
         POST /v1development/profiles              (ingester: OTLP/HTTP; OTLP gRPC on this port)\n\
         POST /api/v1/sql                          (querier)\n\
         POST /querier.v1.QuerierService/<Method>  (querier: Connect or gRPC)\n\
         GET  /api/v1/anomalies                    (querier)\n\
         GET  /debug/pprof/profile?seconds=N       (this process's CPU profile, pprof)\n",
        env!("CARGO_PKG_VERSION"),
        c.role
    )
}

/// True for gRPC requests (`application/grpc`, `application/grpc+proto`, …).
fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// One router for both kinds of traffic: gRPC requests go to `grpc`, everything else to
/// `http`. Connect and gRPC share method paths, so the content type decides, not the path.
pub(crate) fn dispatch(http: Router, grpc: Router) -> Router {
    let svc = tower::service_fn(move |req: Request| {
        let (http, grpc) = (http.clone(), grpc.clone());
        async move {
            let resp = if is_grpc(&req) {
                grpc.oneshot(req).await
            } else {
                http.oneshot(req).await
            };
            Ok::<_, Infallible>(resp.unwrap_or_else(|e| match e {}))
        }
    });
    Router::new().fallback_service(svc)
}

/// Turns Nagle's algorithm off on an accepted connection, as gRPC servers do: an HTTP/2
/// response goes out as several frames, often in more than one write, and with Nagle a
/// later write waits for the peer to acknowledge the first, which it may delay by up to
/// 40 ms.
pub(crate) fn set_nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "setting TCP_NODELAY");
    }
}
