//! `querier.v1.QuerierService` over the Connect protocol (unary POST), as Grafana's Pyroscope
//! datasource calls it: `POST /querier.v1.QuerierService/<Method>` with `application/proto`
//! or `application/json` (proto3 JSON: lowerCamel names, 64-bit integers as strings).
//!
//! JSON goes through reflection over the project's own descriptors: JSON → dynamic message →
//! protobuf bytes → the generated type, and back, so both encodings share one code path.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, header};
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use stackdrift_model::tenant::TENANT_HEADER;

use crate::api;
use crate::error::QueryError;
use crate::query::Querier;

/// Path prefix of the service.
pub const SERVICE: &str = "querier.v1.QuerierService";

/// Routes of the Connect query API.
pub fn routes(querier: Arc<Querier>) -> Router {
    Router::new()
        .route(&format!("/{SERVICE}/{{method}}"), post(call))
        .with_state(querier)
}

fn pool() -> Result<&'static DescriptorPool, QueryError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(stackdrift_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| QueryError::Internal(format!("descriptors: {e}")))
}

/// The two encodings of a Connect unary call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Proto,
    Json,
}

impl Codec {
    fn from_headers(headers: &HeaderMap) -> Result<Self, QueryError> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match ct.as_str() {
            "application/proto" | "application/protobuf" | "application/x-protobuf" => {
                Ok(Self::Proto)
            }
            "application/json" => Ok(Self::Json),
            other => Err(QueryError::UnsupportedMediaType(other.to_owned())),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Proto => "application/proto",
            Self::Json => "application/json",
        }
    }

    fn decode<T: Message + Default>(self, name: &str, body: &[u8]) -> Result<T, QueryError> {
        let bad = |e: String| QueryError::BadRequest(format!("invalid {name}: {e}"));
        match self {
            Self::Proto => T::decode(body).map_err(|e| bad(e.to_string())),
            Self::Json => {
                let desc = pool()?
                    .get_message_by_name(name)
                    .ok_or_else(|| QueryError::Internal(format!("no descriptor for {name}")))?;
                let mut de = serde_json::Deserializer::from_slice(body);
                let options = DeserializeOptions::new().deny_unknown_fields(false);
                let msg = DynamicMessage::deserialize_with_options(desc, &mut de, &options)
                    .map_err(|e| bad(e.to_string()))?;
                de.end().map_err(|e| bad(e.to_string()))?;
                T::decode(msg.encode_to_vec().as_slice()).map_err(|e| bad(e.to_string()))
            }
        }
    }

    fn encode<T: Message>(self, name: &str, value: &T) -> Result<Vec<u8>, QueryError> {
        match self {
            Self::Proto => Ok(value.encode_to_vec()),
            Self::Json => {
                let desc = pool()?
                    .get_message_by_name(name)
                    .ok_or_else(|| QueryError::Internal(format!("no descriptor for {name}")))?;
                let msg = DynamicMessage::decode(desc, value.encode_to_vec().as_slice())
                    .map_err(|e| QueryError::Internal(e.to_string()))?;
                let mut out = Vec::new();
                let mut ser = serde_json::Serializer::new(&mut out);
                msg.serialize_with_options(&mut ser, &SerializeOptions::new())
                    .map_err(|e| QueryError::Internal(e.to_string()))?;
                Ok(out)
            }
        }
    }
}

/// A Connect unary error: the HTTP status plus `{"code": ..., "message": ...}`.
pub fn connect_error(e: &QueryError) -> Response {
    let body = serde_json::json!({ "code": e.connect_code(), "message": e.to_string() });
    let mut resp = (
        e.http_status(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if matches!(e, QueryError::Unauthenticated(_)) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"stackdrift\""),
        );
    }
    if let Some(secs) = e.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    }
    resp
}

/// Decodes the request as `req_name`, runs `f`, encodes the answer as `resp_name`.
async fn unary<Req, Resp, F, Fut>(
    querier: Arc<Querier>,
    headers: &HeaderMap,
    body: &[u8],
    names: (&str, &str),
    f: F,
) -> Result<Response, QueryError>
where
    Req: Message + Default,
    Resp: Message,
    F: FnOnce(Arc<Querier>, String, Req) -> Fut,
    Fut: Future<Output = Result<Resp, QueryError>>,
{
    let started = std::time::Instant::now();
    let tenant = querier.tenant(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
    );
    let api = names
        .0
        .rsplit('.')
        .next()
        .unwrap_or("")
        .trim_end_matches("Request");
    match tenant {
        Ok(tenant) => {
            let result = async {
                let codec = Codec::from_headers(headers)?;
                let req: Req = codec.decode(names.0, body)?;
                let resp = f(querier.clone(), tenant.clone(), req).await?;
                let bytes = codec.encode(names.1, &resp)?;
                Ok(([(header::CONTENT_TYPE, codec.content_type())], bytes).into_response())
            }
            .await;
            querier.observe(api, &tenant, started, result.as_ref().err());
            result
        }
        Err(e) => Err(e),
    }
}

async fn call(
    State(querier): State<Arc<Querier>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = &headers;
    let b = &body[..];
    let qr = querier.clone();
    let result = match method.as_str() {
        "ProfileTypes" => {
            unary(
                qr,
                h,
                b,
                (
                    "querier.v1.ProfileTypesRequest",
                    "querier.v1.ProfileTypesResponse",
                ),
                |q, t, r| async move { api::profile_types(&q, &t, r).await },
            )
            .await
        }
        "LabelNames" => {
            unary(
                qr,
                h,
                b,
                ("types.v1.LabelNamesRequest", "types.v1.LabelNamesResponse"),
                |q, t, r| async move { api::label_names(&q, &t, r).await },
            )
            .await
        }
        "LabelValues" => {
            unary(
                qr,
                h,
                b,
                (
                    "types.v1.LabelValuesRequest",
                    "types.v1.LabelValuesResponse",
                ),
                |q, t, r| async move { api::label_values(&q, &t, r).await },
            )
            .await
        }
        "Series" => {
            unary(
                qr,
                h,
                b,
                ("querier.v1.SeriesRequest", "querier.v1.SeriesResponse"),
                |q, t, r| async move { api::series(&q, &t, r).await },
            )
            .await
        }
        "SelectMergeStacktraces" => {
            unary(
                qr,
                h,
                b,
                (
                    "querier.v1.SelectMergeStacktracesRequest",
                    "querier.v1.SelectMergeStacktracesResponse",
                ),
                |q, t, r| async move { api::select_merge_stacktraces(&q, &t, r).await },
            )
            .await
        }
        "SelectMergeProfile" => {
            unary(
                qr,
                h,
                b,
                (
                    "querier.v1.SelectMergeProfileRequest",
                    "perftools.profiles.Profile",
                ),
                |q, t, r| async move { api::select_merge_profile(&q, &t, r).await },
            )
            .await
        }
        "SelectSeries" => {
            unary(
                qr,
                h,
                b,
                (
                    "querier.v1.SelectSeriesRequest",
                    "querier.v1.SelectSeriesResponse",
                ),
                |q, t, r| async move { api::select_series(&q, &t, r).await },
            )
            .await
        }
        "Diff" => {
            unary(
                qr,
                h,
                b,
                ("querier.v1.DiffRequest", "querier.v1.DiffResponse"),
                |q, t, r| async move { api::diff(&q, &t, r).await },
            )
            .await
        }
        other => Err(QueryError::Unimplemented(format!("{SERVICE}/{other}"))),
    };
    match result {
        Ok(r) => r,
        Err(e) => connect_error(&e),
    }
}
