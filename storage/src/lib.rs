//! Table access: the Delta Lake tables on object storage that every role shares.
//!
//! ```text
//!  ingester ──[TenantProfile]──▶ Store::append ──▶ stacks  (new stacks only, one commit)
//!                                             └──▶ samples (all rows, one atomic commit)
//!                                                    │
//!  querier / detector ◀── SessionContext ◀── Store::register (samples, stacks_raw, stacks,
//!                                                              _rollups views)
//!  compactor ◀────────── Store::snapshot (maintenance: rewrite, remove, rollups, one commit
//!                                         per change)
//! ```
//!
//! Tables live under one storage URL (`file://`, `s3://`, `gs://`, `az://`): `<url>/samples`,
//! `<url>/stacks` and `<url>/rollups` (hourly stack totals, written by the compactor). Schemas and the commit protocol are described in
//! `docs/ARCHITECTURE.md`.

pub mod anomalies;
pub mod config;
pub mod error;
pub mod maintenance;
pub mod runs;
pub mod schema;
pub mod store;

pub use anomalies::Anomaly;
pub use config::StorageConfig;
pub use error::StorageError;
pub use maintenance::{CommitKind, DataFile, SamplesRewrite, TableSnapshot, Written};
pub use schema::TenantProfile;
pub use store::{AppendStats, Store};
