//! The `/ingest` (Pyroscope legacy) parsers of `stackdrift_ingester::legacy`: the `name`
//! parameter, the `from`/`until` times and the folded body.
//!
//! Input layout: line 1 is the `name`, line 2 holds `from until sampleRate` (any of them
//! may be missing or garbage), the rest is the folded body. Never panics; an accepted body
//! yields a well-formed profile.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use stackdrift_ingester::legacy::{folded_type, parse_folded, parse_name, parse_time};
use stackdrift_ingester::push::series_labels;
use stackdrift_model::labels::SERVICE_NAME;
use stackdrift_model::pprof::DecodeLimits;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let name = parts.next().unwrap_or("");
    let params = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");

    let mut words = params.split(' ');
    let from = words.next().map(parse_time);
    let until = words.next().map(parse_time);
    if let (Some(Ok(from)), Some(Ok(until))) = (from, until) {
        assert!(from >= 0 && until >= 0, "negative time accepted");
    }
    let sample_rate: u32 = words
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(100);

    let limits = DecodeLimits::default();
    let Ok(app) = parse_name(name) else {
        return;
    };
    assert!(!app.app.is_empty(), "empty application name accepted");
    // As the handler does: the application is the service unless a label names one.
    let has_service = app.labels.iter().any(|(k, _)| k == SERVICE_NAME);
    let pairs = app
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain((!has_service).then_some((SERVICE_NAME, app.app.as_str())));
    let Ok((labels, _)) = series_labels(pairs, &limits) else {
        return;
    };
    let (profile_type, factor) = folded_type(app.kind.as_deref().unwrap_or("cpu"), sample_rate);
    let Ok(builder) = parse_folded(body, &labels, &profile_type, factor, &limits) else {
        return;
    };
    let profile = builder.finish(1_700_000_000_000_000, 0);
    let ids: HashSet<u64> = profile.stacks.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), profile.stacks.len(), "a stack listed twice");
    for s in &profile.stacks {
        assert!(s.frames.len() <= limits.max_stack_depth.max(2));
    }
    assert!(profile.series.len() <= 1, "folded input makes one series");
    for series in &profile.series {
        for (id, value) in &series.samples {
            assert!(*value > 0, "non-positive value {value}");
            assert!(ids.contains(id), "sample refers to unknown stack {id}");
        }
    }
});
