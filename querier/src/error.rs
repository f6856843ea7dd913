//! Query errors and how each is answered.

use datafusion::error::DataFusionError;
use http::StatusCode;
use thiserror::Error;

/// Why a query failed.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The request is malformed (no query, bad tenant, unknown format).
    #[error("{0}")]
    BadRequest(String),
    /// The SQL does not parse or does not plan (unknown table or column, type error).
    #[error("{0}")]
    InvalidQuery(String),
    /// The statement would change something: the SQL API is read-only.
    #[error("read-only SQL API: only queries are allowed ({0})")]
    ReadOnly(String),
    /// The query ran longer than the per-query timeout.
    #[error("query exceeded the {0}s timeout")]
    Timeout(u64),
    /// The query needed more memory than the per-query limit.
    #[error("query exceeded the memory limit of {limit_mib} MiB: {detail}")]
    Memory {
        /// The limit.
        limit_mib: usize,
        /// DataFusion's account of it.
        detail: String,
    },
    /// No or wrong credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many queries running and waiting: retry later (429, `Retry-After`).
    #[error("querier overloaded: {0}")]
    Overloaded(String),
    /// The tables could not be read (object store unreachable, corrupt log).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The request body's content type is not one the API reads.
    #[error("unsupported content type {0:?}: use application/proto or application/json")]
    UnsupportedMediaType(String),
    /// The API method exists but stackdrift does not implement it.
    #[error("{0} is not implemented by stackdrift")]
    Unimplemented(String),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidQuery(_) | Self::ReadOnly(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Memory { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for refusals that
    /// pass when the load does.
    pub fn retry_after(&self) -> Option<&'static str> {
        matches!(self, Self::Overloaded(_)).then_some("1")
    }

    /// The gRPC status code (Connect uses its lower-case name).
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::BadRequest(_)
            | Self::InvalidQuery(_)
            | Self::ReadOnly(_)
            | Self::UnsupportedMediaType(_) => tonic::Code::InvalidArgument,
            Self::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Self::Timeout(_) => tonic::Code::DeadlineExceeded,
            Self::Memory { .. } | Self::Overloaded(_) => tonic::Code::ResourceExhausted,
            Self::Unavailable(_) => tonic::Code::Unavailable,
            Self::Unimplemented(_) => tonic::Code::Unimplemented,
            Self::Internal(_) => tonic::Code::Internal,
        }
    }

    /// The Connect protocol's name for [`Self::grpc_code`].
    pub fn connect_code(&self) -> &'static str {
        match self.grpc_code() {
            tonic::Code::InvalidArgument => "invalid_argument",
            tonic::Code::Unauthenticated => "unauthenticated",
            tonic::Code::DeadlineExceeded => "deadline_exceeded",
            tonic::Code::ResourceExhausted => "resource_exhausted",
            tonic::Code::Unavailable => "unavailable",
            tonic::Code::Unimplemented => "unimplemented",
            _ => "internal",
        }
    }

    /// A short reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidQuery(_) => "invalid_query",
            Self::ReadOnly(_) => "read_only",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Timeout(_) => "timeout",
            Self::Memory { .. } => "memory",
            Self::Overloaded(_) => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::Unimplemented(_) => "unimplemented",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Internal(_) => "internal",
        }
    }

    /// Classifies a DataFusion error raised while planning or running a query.
    pub(crate) fn from_datafusion(e: DataFusionError, memory_limit: usize) -> Self {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => Self::Memory {
                limit_mib: memory_limit >> 20,
                detail: first_line(m),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => {
                Self::InvalidQuery(first_line(&root_message(&e)))
            }
            DataFusionError::ObjectStore(o) => Self::Unavailable(first_line(&o.to_string())),
            _ => Self::Internal(first_line(&root_message(&e))),
        }
    }
}

fn root_message(e: &DataFusionError) -> String {
    // DataFusion wraps errors in context layers; the innermost names the actual problem.
    e.find_root().to_string()
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.len() > 500 {
        let mut end = 500;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_owned()
    }
}

impl From<QueryError> for tonic::Status {
    fn from(e: QueryError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}

impl From<stackdrift_storage::StorageError> for QueryError {
    fn from(e: stackdrift_storage::StorageError) -> Self {
        Self::Unavailable(first_line(&e.to_string()))
    }
}
