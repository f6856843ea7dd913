//! The querier role: read-only, tenant-scoped SQL over the Delta tables.
//!
//! ```text
//!  POST /api/v1/sql ──▶ sql.rs ──▶ Querier::query ──▶ SessionContext (one per query:
//!   (JSON / CSV / Arrow IPC)          │                 tenant-scoped views, memory pool)
//!                                     └── guard: SELECT only, timeout, memory limit
//! ```

pub mod error;
pub mod metrics;
pub mod query;
pub mod sql;

pub use error::QueryError;
pub use metrics::QueryMetrics;
pub use query::{Querier, QueryConfig, QueryOutput};
