//! The ingester role: accepts profile pushes, validates them, and acknowledges each push only
//! once its rows are committed to the Delta tables.
//!
//! ```text
//!  Connect POST /push.v1.PusherService/Push ──┐ (http.rs, json.rs)
//!  gRPC    push.v1.PusherService/Push ────────┼─▶ Ingester::push ── validate + decode ──┐
//!  POST /ingest (pprof, folded) ──────────────┤ (legacy.rs) push_normalized              │
//!                                             │      (push.rs: labels, limits, time)     │
//!                                             │                                          ▼
//!                      answer ◀── commit ok ◀─┴──────────── Batcher (batcher.rs) ─▶ Store::append
//! ```
//!
//! Admission (`Ingester::admit`) reserves each push's memory from a process-wide budget
//! (inflight.rs) and refuses with 429 what does not fit, so bursts cost bounded memory.
//!
//! A push that fails validation is answered at once and never enters a batch, so it cannot
//! affect the good pushes batched around it.

pub mod batcher;
pub mod error;
pub mod grpc;
pub mod http;
pub mod inflight;
pub mod json;
pub mod legacy;
pub mod limits;
pub mod metrics;
pub mod multipart;
pub mod otlp;
pub mod push;

pub use batcher::{BatchConfig, Batcher};
pub use error::IngestError;
pub use limits::{IngestLimits, RateLimiter, TenantLimits};
pub use metrics::IngestMetrics;
pub use push::{Admission, Ingester};
