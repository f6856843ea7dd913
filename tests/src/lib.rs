//! Shared helpers for stackdrift's cross-crate and end-to-end tests.
//!
//! * [`s3`]: an S3 server (`s3s-fs`) running in-process on 127.0.0.1.
//! * [`reference`]: per-function totals computed straight from a pprof, without stackdrift.
//! * [`sql`]: per-function totals computed with SQL over the tables.

#![allow(missing_docs)]

pub mod client;
pub mod process;
pub mod reference;
pub mod s3;
pub mod sql;

/// Path of a checked-in fixture.
pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Bytes of a checked-in fixture.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
