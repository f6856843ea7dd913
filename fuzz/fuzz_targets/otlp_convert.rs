//! The OTLP profiles converter of `stackdrift_ingester::otlp`: the bytes are decoded as an
//! `ExportProfilesServiceRequest` (protobuf, as over gRPC and `application/x-protobuf`) and
//! converted; the same bytes are also read as OTLP JSON and, when that parses, converted.
//!
//! Never panics; what converts is a set of well-formed profiles.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use prost::Message;
use stackdrift_ingester::otlp::{convert, decode_json};
use stackdrift_model::normalized::NormalizedProfile;
use stackdrift_model::pprof::DecodeLimits;

const NOW_US: i64 = 1_700_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(request) = ExportProfilesServiceRequest::decode(data) {
        if let Ok(profiles) = convert(&request, &limits, NOW_US) {
            profiles.iter().for_each(|p| check(p, &limits));
        }
    }
    if let Ok(request) = decode_json(data) {
        if let Ok(profiles) = convert(&request, &limits, NOW_US) {
            profiles.iter().for_each(|p| check(p, &limits));
        }
    }
});

fn check(p: &NormalizedProfile, limits: &DecodeLimits) {
    let ids: HashSet<u64> = p.stacks.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), p.stacks.len(), "a stack listed twice");
    for s in &p.stacks {
        assert!(s.frames.len() <= limits.max_stack_depth.max(2));
    }
    for series in &p.series {
        for (id, value) in &series.samples {
            assert!(*value > 0, "non-positive value {value}");
            assert!(ids.contains(id), "sample refers to unknown stack {id}");
        }
    }
}
