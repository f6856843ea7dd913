//! The profile data model: what a profile is once it has been accepted.
//!
//! ```text
//!  pprof bytes ──▶ pprof::decode_pprof ──┐
//!  folded text ──▶ (ingester parsers) ───┼──▶ ProfileBuilder ──▶ NormalizedProfile
//!  OTLP        ──▶ (ingester converter) ─┘        │                 ├─ series: labels + profile type
//!                                                 │                 │          + (stack_id, value)*
//!                                   stack::stack_id (XXH3-64)       └─ stacks: stack_id → frames
//! ```
//!
//! Everything here is pure and synchronous; nothing knows about HTTP, storage or flags.
//! Decoding never panics: every malformed input is a [`DecodeError`].

pub mod auth;
pub mod clock;
pub mod encode;
pub mod error;
pub mod html;
pub mod labels;
pub mod normalized;
pub mod pprof;
pub mod profile_type;
pub mod stack;
pub mod tenant;

pub use encode::PprofBuilder;
pub use error::{DecodeError, LabelError};
pub use labels::{LabelLimits, Labels};
pub use normalized::{KnownStacks, NormalizedProfile, ProfileBuilder, Series, Stack};
pub use pprof::{DecodeLimits, SeriesContext, decode_pprof};
pub use profile_type::ProfileType;
pub use stack::{Frame, stack_id};
