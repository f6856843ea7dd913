//! Storage errors.

use thiserror::Error;

/// Anything that goes wrong reading or writing the tables.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The storage URL cannot be parsed or is of an unsupported scheme.
    #[error("invalid storage url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A local directory could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// delta-rs failed (object store, commit, schema).
    #[error("delta table {table}: {source}")]
    Delta {
        /// Table name.
        table: &'static str,
        /// The delta-rs error.
        source: deltalake::DeltaTableError,
    },
    /// Building a record batch failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A DataFusion query over the tables failed.
    #[error("query: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// An invariant of this crate broke.
    #[error("internal: {0}")]
    Internal(String),
}

impl StorageError {
    pub(crate) fn delta(table: &'static str) -> impl FnOnce(deltalake::DeltaTableError) -> Self {
        move |source| Self::Delta { table, source }
    }
}
