//! `POST /api/v1/sql`: a query in the body, rows back as JSON, CSV or an Arrow IPC stream.
//!
//! * Body: the SQL text, or `{"query": "..."}` with `Content-Type: application/json`.
//!   `GET /api/v1/sql?query=...` works too, for quick looks from a browser or curl.
//! * Format: `?format=json|csv|arrow`, else from `Accept` (`text/csv`,
//!   `application/vnd.apache.arrow.stream`), else JSON: an array of row objects.
//! * Tenant: `X-Scope-OrgID` (absent → `anonymous`); the query sees that tenant's rows only.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, StatusCode, header};
use stackdrift_model::tenant::TENANT_HEADER;

use crate::error::QueryError;
use crate::query::{Querier, QueryOutput};

/// Content type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Routes served by the SQL API.
pub fn routes(querier: Arc<Querier>) -> Router {
    Router::new()
        .route("/api/v1/sql", post(sql_post).get(sql_get))
        .with_state(querier)
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of row objects.
    Json,
    /// CSV with a header row.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
}

impl Format {
    /// Picks the format from `?format=` or else the `Accept` header.
    pub fn negotiate(param: Option<&str>, headers: &HeaderMap) -> Result<Self, QueryError> {
        if let Some(p) = param {
            return match p.to_ascii_lowercase().as_str() {
                "json" => Ok(Self::Json),
                "csv" => Ok(Self::Csv),
                "arrow" => Ok(Self::Arrow),
                other => Err(QueryError::BadRequest(format!(
                    "unknown format {other:?}: use json, csv or arrow"
                ))),
            };
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(if accept.contains(ARROW_STREAM) {
            Self::Arrow
        } else if accept.contains("text/csv") {
            Self::Csv
        } else {
            Self::Json
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Arrow => ARROW_STREAM,
        }
    }
}

async fn sql_post(
    State(querier): State<Arc<Querier>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sql = match query_from_body(&headers, &body) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    answer(
        &querier,
        &headers,
        params.get("format").map(String::as_str),
        &sql,
    )
    .await
}

async fn sql_get(
    State(querier): State<Arc<Querier>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(sql) = params.get("query") else {
        return error_response(&QueryError::BadRequest(
            "missing query: pass ?query=SELECT… or POST the SQL as the body".into(),
        ));
    };
    answer(
        &querier,
        &headers,
        params.get("format").map(String::as_str),
        sql,
    )
    .await
}

async fn answer(
    querier: &Querier,
    headers: &HeaderMap,
    format: Option<&str>,
    sql: &str,
) -> Response {
    let result = async {
        let format = Format::negotiate(format, headers)?;
        let tenant = querier.tenant(
            headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        )?;
        let out = querier.query(&tenant, sql).await?;
        let body = encode(&out, format)?;
        Ok::<_, QueryError>((format, body))
    }
    .await;
    match result {
        Ok((format, body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, format.content_type())],
            body,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

/// The SQL text of a POST body.
fn query_from_body(headers: &HeaderMap, body: &[u8]) -> Result<String, QueryError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        #[derive(serde::Deserialize)]
        struct Body {
            query: String,
        }
        let b: Body = serde_json::from_slice(body).map_err(|e| {
            QueryError::BadRequest(format!("body must be {{\"query\": \"SELECT …\"}}: {e}"))
        })?;
        Ok(b.query)
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| QueryError::BadRequest("query is not valid UTF-8".into()))
    }
}

/// Serializes a result in `format`.
pub fn encode(out: &QueryOutput, format: Format) -> Result<Vec<u8>, QueryError> {
    let internal = |e: arrow::error::ArrowError| QueryError::Internal(e.to_string());
    let batches: Vec<&RecordBatch> = out.batches.iter().collect();
    match format {
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(Vec::new());
            w.write_batches(&batches).map_err(internal)?;
            w.finish().map_err(internal)?;
            let mut buf = w.into_inner();
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            Ok(buf)
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                if batches.is_empty() {
                    w.write(&RecordBatch::new_empty(out.schema.clone()))
                        .map_err(internal)?;
                }
                for b in &batches {
                    w.write(b).map_err(internal)?;
                }
            }
            Ok(buf)
        }
        Format::Arrow => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &out.schema)
                    .map_err(internal)?;
                for b in &batches {
                    w.write(b).map_err(internal)?;
                }
                w.finish().map_err(internal)?;
            }
            Ok(buf)
        }
    }
}

/// `{"error": "..."}` with the error's status.
pub fn error_response(e: &QueryError) -> Response {
    let body = serde_json::json!({ "error": e.to_string() }).to_string();
    let mut resp = (
        e.http_status(),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Some(secs) = e.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static(secs));
    }
    resp
}
