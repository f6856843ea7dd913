//! Ingestion acceptance tests against the `stackdrift` binary: real Pyroscope Python clients,
//! OTLP, crash safety under `kill -9` (of the ingester, and of the compactor while ingest
//! runs), bad input, authentication, per-tenant limits and rate
//! limiting. One test binary, so the stack is linked once.

mod auth_limits;
mod bad_input;
mod compactor_crash;
mod crash;
mod otlp;
mod overload;
mod python_clients;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use stackdrift_tests::process::Stackdrift;

/// The CPU profile type every CPU push in these tests is stored as.
pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Starts the binary under test in `dir` with `args`.
pub fn start(name: &str, dir: &Path, args: &[&str]) -> Stackdrift {
    Stackdrift::start_in(Path::new(env!("CARGO_BIN_EXE_stackdrift")), name, dir, args)
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a test file");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The seed of a crash test: `CRASH_SEED` to replay a failure, else the clock. Printed.
pub fn crash_seed(test: &str) -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
                | 1
        });
    eprintln!("{test} seed: CRASH_SEED={seed}");
    seed
}

/// xorshift64*: the next number of a seeded sequence.
pub fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
