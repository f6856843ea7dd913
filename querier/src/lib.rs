//! The querier role: read-only, tenant-scoped SQL and profile queries over the Delta tables.
//!
//! ```text
//!  POST /api/v1/sql ──▶ sql.rs ──▶ Querier::query ──▶ SessionContext (one per query:
//!   (JSON / CSV / Arrow IPC)          │                 tenant-scoped views, memory pool)
//!                                     └── guard: SELECT only, timeout, memory limit
//!
//!  querier.v1 (Connect: connect.rs,  ──▶ api.rs ──▶ profiles.rs (selector.rs → filters,
//!   gRPC: grpc.rs)                                   SUM per stack, join stacks)
//!                                                    ──▶ flamegraph.rs (tree, levels, diff)
//!
//!  Arrow Flight SQL (gRPC: flight.rs) ──▶ Querier::plan_schema / Querier::query, and the
//!                                          session's catalog for metadata
//!
//!  GET /api/v1/anomalies, GET|POST    ──▶ anomalies.rs ──▶ the tenant's `anomalies` view
//!   /api/v1/annotations (Grafana)          (DataFrame filters, timeout, memory limit)
//!
//!  GET /, /ui/app.js, /ui/style.css   ──▶ ui.rs (the web UI: files of ui/dist embedded at
//!                                          build time; it calls the APIs above)
//! ```

pub mod anomalies;
pub mod api;
pub mod connect;
pub mod error;
pub mod export;
pub mod flamegraph;
pub mod flight;
pub mod frames;
pub mod functions;
pub mod grpc;
pub mod metrics;
mod parse;
pub mod profiles;
pub mod query;
mod rollup;
pub mod selector;
pub mod sql;
pub mod ui;

pub use error::QueryError;
pub use metrics::QueryMetrics;
pub use query::{Querier, QueryConfig, QueryOutput};
