//! Ingest errors and their one mapping to HTTP, Connect and gRPC status.

use http::StatusCode;
use stackdrift_model::{DecodeError, LabelError};
use thiserror::Error;

/// Why a push was not accepted.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The profile cannot be decoded or is invalid.
    #[error("series {series}, profile {profile}: {source}")]
    Decode {
        /// Index of the series in the request.
        series: usize,
        /// Index of the profile in the series.
        profile: usize,
        /// What is wrong.
        source: DecodeError,
    },
    /// The series labels are invalid.
    #[error("series {series}: {source}")]
    Labels {
        /// Index of the series in the request.
        series: usize,
        /// What is wrong.
        source: LabelError,
    },
    /// The request itself is malformed (not a protobuf, bad JSON, bad tenant).
    #[error("{0}")]
    BadRequest(String),
    /// The request body (compressed or not) is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// The content type is not one this endpoint speaks.
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    /// The profile is well-formed but cannot be stored (e.g. outside the accepted time range).
    #[error("{0}")]
    Unprocessable(String),
    /// No or wrong credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The tables could not be written; nothing of this push was acknowledged.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The ingester is shutting down.
    #[error("ingester is shutting down")]
    ShuttingDown,
    /// The ingester holds as many pushes as its memory bound allows.
    #[error("{0}")]
    Overloaded(String),
    /// The tenant is over its ingestion rate.
    #[error("{message}")]
    RateLimited {
        /// What limit was hit.
        message: String,
        /// When the client may try again.
        retry_after_secs: u64,
    },
}

impl IngestError {
    /// HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::Decode {
                source: DecodeError::TooLarge { .. } | DecodeError::TooManySamples { .. },
                ..
            }
            | Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Decode { .. } | Self::Labels { .. } | Self::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } | Self::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Seconds a client should wait before retrying, for errors that are worth a retry.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::Overloaded(_) => Some(1),
            Self::Unavailable(_) | Self::ShuttingDown => Some(5),
            _ => None,
        }
    }

    /// The `Retry-After` header for this error, if it has one.
    pub fn retry_after_header(&self) -> Option<http::HeaderValue> {
        self.retry_after_secs().map(http::HeaderValue::from)
    }

    /// gRPC status code (also used, in its Connect spelling, for Connect errors).
    pub fn grpc_code(&self) -> tonic::Code {
        match self.http_status() {
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
                tonic::Code::ResourceExhausted
            }
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            StatusCode::UNPROCESSABLE_ENTITY => tonic::Code::FailedPrecondition,
            _ => tonic::Code::InvalidArgument,
        }
    }

    /// Short machine-readable reason, the label of the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode { source, .. } => match source {
                DecodeError::TooLarge { .. } => "profile_too_large",
                DecodeError::TooManySamples { .. } => "too_many_samples",
                DecodeError::Label(_) => "invalid_labels",
                _ => "invalid_profile",
            },
            Self::Labels { .. } => "invalid_labels",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge(_) => "body_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unprocessable(_) => "unprocessable",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Unavailable(_) => "storage_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded(_) => "inflight_limit",
        }
    }
}

impl From<IngestError> for tonic::Status {
    fn from(e: IngestError) -> Self {
        let mut status = tonic::Status::new(e.grpc_code(), e.to_string());
        if let Some(secs) = e.retry_after_secs()
            && let Ok(v) = secs.to_string().parse()
        {
            status.metadata_mut().insert("retry-after", v);
        }
        status
    }
}

/// The Connect protocol's name for a gRPC code.
pub fn connect_code(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "canceled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}
