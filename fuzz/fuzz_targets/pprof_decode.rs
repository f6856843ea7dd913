//! pprof decoding and normalization ([`stackdrift_model::pprof::decode_pprof`]) on arbitrary
//! bytes, gzipped or raw (the decoder detects gzip by its magic number, as for a push).
//!
//! Never panics; whatever it accepts is a well-formed [`NormalizedProfile`].
#![no_main]

use std::collections::HashSet;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use stackdrift_model::labels::{LabelLimits, Labels, SERVICE_NAME};
use stackdrift_model::normalized::NormalizedProfile;
use stackdrift_model::pprof::{DecodeLimits, SeriesContext, decode_pprof};

static LABELS: LazyLock<Labels> = LazyLock::new(|| {
    Labels::new(
        [(SERVICE_NAME, "fuzz-svc"), ("env", "fuzz")],
        &LabelLimits::default(),
    )
    .expect("valid labels")
});

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let ctx = SeriesContext {
        labels: &LABELS,
        family: None,
        now_us: 1_700_000_000_000_000,
        known_stacks: None,
    };
    if let Ok(profile) = decode_pprof(data, ctx, &limits) {
        check(&profile, &limits);
    }
});

/// Invariants of a decoded profile that the tables rely on.
fn check(p: &NormalizedProfile, limits: &DecodeLimits) {
    let mut ids = HashSet::new();
    for s in &p.stacks {
        assert!(ids.insert(s.id), "stack {} listed twice", s.id);
        assert!(
            s.frames.len() <= limits.max_stack_depth.max(2),
            "stack deeper than the limit: {}",
            s.frames.len()
        );
    }
    for series in &p.series {
        assert!(!series.samples.is_empty(), "empty series kept");
        let mut seen = HashSet::new();
        for (id, value) in &series.samples {
            assert!(*value > 0, "non-positive value {value}");
            assert!(seen.insert(*id), "stack {id} twice in one series");
            assert!(ids.contains(id), "sample refers to unknown stack {id}");
        }
    }
}
