//! HTTP front ends: Pyroscope's `push.v1` over the Connect protocol (`application/proto` and
//! `application/json`, optionally gzip-compressed).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, header};
use prost::Message;
use stackdrift_model::pprof::read_capped;
use stackdrift_model::tenant::TENANT_HEADER;
use stackdrift_proto::push::v1::PushRequest;

use crate::error::{IngestError, connect_code};
use crate::inflight::InflightPermit;
use crate::json;
use crate::push::Ingester;

/// Routes served by the ingester role.
pub fn routes(ingester: Arc<Ingester>) -> Router {
    let limit = ingester.limits().max_body_bytes();
    Router::new()
        .route("/push.v1.PusherService/Push", post(connect_push))
        .route("/ingest", post(crate::legacy::ingest))
        .route("/pyroscope/ingest", post(crate::legacy::ingest))
        .route("/v1development/profiles", post(crate::otlp::http_export))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ingester)
}

/// Admits a request by its headers: authentication, tenant (`X-Scope-OrgID`, else
/// `anonymous`), body size, in-flight memory and ingestion rate. Returns the tenant and the
/// in-flight reservation (hold it until answering).
pub fn admit(
    ingester: &Ingester,
    headers: &HeaderMap,
    body_bytes: usize,
) -> Result<(String, InflightPermit), IngestError> {
    ingester.admit(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        body_bytes,
    )
}

/// Decompresses a request body according to `Content-Encoding`, stopping at `max` bytes. An
/// uncompressed body is returned as it is, not copied.
pub fn request_body(headers: &HeaderMap, body: &Bytes, max: usize) -> Result<Bytes, IngestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body.clone()),
        "gzip" => {
            if !stackdrift_model::pprof::is_gzip(body) {
                return Err(IngestError::BadRequest(
                    "Content-Encoding is gzip but the body is not gzip data".into(),
                ));
            }
            read_capped(body, max)
                .map(Bytes::from)
                .map_err(|e| match e {
                    stackdrift_model::DecodeError::TooLarge { max } => IngestError::TooLarge(
                        format!("request body exceeds {max} bytes after decompression"),
                    ),
                    other => IngestError::BadRequest(format!("request body: {other}")),
                })
        }
        other => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Encoding {other}"
        ))),
    }
}

pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

async fn connect_push(
    State(ingester): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (tenant, permit) = admit(&ingester, &headers, body.len())?;
        let ct = content_type(&headers);
        let limit = ingester.limits_for(&tenant).max_decompressed_bytes;
        let raw = request_body(&headers, &body, limit)?;
        let request = match ct.as_str() {
            "application/proto" | "application/protobuf" | "application/x-protobuf" => {
                // From the `Bytes` itself, so each `raw_profile` is a view of it, not a copy.
                PushRequest::decode(raw.clone()).map_err(|e| {
                    IngestError::BadRequest(format!("invalid push.v1.PushRequest protobuf: {e}"))
                })?
            }
            "application/json" => json::push_request(&raw)?,
            other => return Err(IngestError::UnsupportedMediaType(other.to_owned())),
        };
        Ok((tenant, request, ct, permit))
    }
    .await;
    let (tenant, request, ct, _permit) = match result {
        Ok(v) => v,
        Err(e) => {
            ingester.reject(&e);
            return connect_error(&e);
        }
    };
    // The body is not needed past decoding; the push may wait a while for its commit.
    let body_bytes = body.len();
    drop(body);
    match ingester.push(&tenant, request, body_bytes).await {
        Ok(()) if ct == "application/json" => {
            ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
        }
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/proto")],
            Vec::<u8>::new(),
        )
            .into_response(),
        Err(e) => connect_error(&e),
    }
}

/// A Connect unary error: the HTTP status plus `{"code": ..., "message": ...}`.
pub fn connect_error(e: &IngestError) -> Response {
    let status = e.http_status();
    let body = serde_json_string(connect_code(e.grpc_code()), &e.to_string());
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(v) = e.retry_after_header() {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if matches!(e, IngestError::Unauthenticated(_)) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"stackdrift\""),
        );
    }
    resp
}

fn serde_json_string(code: &str, message: &str) -> String {
    let mut s = String::with_capacity(message.len() + 40);
    s.push_str("{\"code\":\"");
    s.push_str(code);
    s.push_str("\",\"message\":");
    s.push_str(&json::quote(message));
    s.push('}');
    s
}
