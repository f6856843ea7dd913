//! Decoder tests: hand-made edge cases, the real-profiler fixtures, and random/mutated input.

use std::collections::BTreeMap;

use prost::Message;
use stackdrift_model::encode::gzip;
use stackdrift_model::pprof::{decode_profile, normalize};
use stackdrift_model::{
    DecodeError, DecodeLimits, Frame, LabelLimits, Labels, NormalizedProfile, PprofBuilder,
    SeriesContext, decode_pprof,
};
use stackdrift_proto::pprof::{Function, Line, Location, Profile, Sample, ValueType};

fn labels() -> Labels {
    Labels::new(
        [("service_name", "svc"), ("env", "test")],
        &LabelLimits::default(),
    )
    .unwrap()
}

fn ctx(l: &Labels) -> SeriesContext<'_> {
    SeriesContext {
        labels: l,
        family: None,
        now_us: 42,
        known_stacks: None,
    }
}

/// Per-function (self, total) for one profile type of a normalized profile.
fn totals(p: &NormalizedProfile, sample_type: &str) -> BTreeMap<String, (i64, i64)> {
    let stacks: BTreeMap<u64, &Vec<Frame>> = p.stacks.iter().map(|s| (s.id, &s.frames)).collect();
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in p
        .series
        .iter()
        .filter(|s| s.profile_type.sample_type == sample_type)
    {
        for (id, v) in &s.samples {
            let frames = stacks[id];
            out.entry(frames[0].function.to_string()).or_default().0 += v;
            let mut seen = std::collections::HashSet::new();
            for f in frames.iter() {
                if seen.insert(&f.function) {
                    out.entry(f.function.to_string()).or_default().1 += v;
                }
            }
        }
    }
    out
}

/// The same, straight from the pprof message, without the normalizer.
fn pprof_totals(p: &Profile, type_index: usize) -> BTreeMap<String, (i64, i64)> {
    let name_of = |loc_id: u64| -> Vec<String> {
        let loc = p.location.iter().find(|l| l.id == loc_id).unwrap();
        loc.line
            .iter()
            .map(|line| {
                let f = p
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .unwrap();
                p.string_table[f.name as usize].clone()
            })
            .collect()
    };
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in &p.sample {
        let v = s.value[type_index];
        if v == 0 {
            continue;
        }
        let names: Vec<String> = s.location_id.iter().flat_map(|l| name_of(*l)).collect();
        out.entry(names[0].clone()).or_default().0 += v;
        let mut seen = std::collections::HashSet::new();
        for n in names {
            if seen.insert(n.clone()) {
                out.entry(n).or_default().1 += v;
            }
        }
    }
    out
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn real_profiler_fixtures_normalize_to_the_same_function_totals() {
    for name in ["cpu_burn.pb.gz", "cpu_burn_raw.pb"] {
        let bytes = fixture(name);
        let l = labels();
        let profile = decode_profile(&bytes, 64 << 20).unwrap();
        let normalized = normalize(&profile, ctx(&l), &DecodeLimits::default()).unwrap();
        assert_eq!(normalized.series.len(), 2, "{name}: samples + cpu");
        for (i, vt) in profile.sample_type.iter().enumerate() {
            let st = &profile.string_table[vt.r#type as usize];
            let want = pprof_totals(&profile, i);
            assert_eq!(totals(&normalized, st), want, "{name} {st}");
            assert!(
                want.contains_key("stackdrift_fixture_gen::hash_blocks"),
                "{want:?}"
            );
        }
        // Profile type IDs follow Pyroscope's convention.
        let ids: Vec<String> = normalized
            .series
            .iter()
            .map(|s| s.profile_type.id())
            .collect();
        assert!(ids.contains(&"process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_owned()));
        assert!(ids.contains(&"process_cpu:samples:count:cpu:nanoseconds".to_owned()));
        // pprof-rs attaches a `thread` sample label: it becomes a series label.
        assert!(normalized.series[0].labels.get("thread").is_some());
        assert!(normalized.time_us > 1_600_000_000_000_000);
    }
}

fn small_profile() -> PprofBuilder {
    let mut b = PprofBuilder::new(
        &[("alloc_objects", "count"), ("alloc_space", "bytes")],
        ("space", "bytes"),
        512 * 1024,
    )
    .time(1_700_000_000_000_000_000, 10_000_000_000);
    let main = Frame::named("main");
    let a = Frame {
        function: "alloc_a".into(),
        file: "a.go".into(),
        line: 10,
    };
    let b2 = Frame::named("alloc_b");
    b.sample(&[a.clone(), main.clone()], &[1, 100], &[]);
    b.sample(&[a.clone(), main.clone()], &[2, 200], &[]);
    b.sample(&[b2.clone(), a.clone(), main.clone()], &[3, 0], &[]);
    b.sample(std::slice::from_ref(&main), &[0, 0], &[]);
    b
}

#[test]
fn hand_made_profile_merges_stacks_and_infers_memory_family() {
    let l = labels();
    let bytes = small_profile().encode_gzip();
    let p = decode_pprof(&bytes, ctx(&l), &DecodeLimits::default()).unwrap();
    assert_eq!(p.time_us, 1_700_000_000_000_000);
    assert_eq!(p.duration_us, 10_000_000);
    let objects = p
        .series
        .iter()
        .find(|s| s.profile_type.sample_type == "alloc_objects")
        .unwrap();
    assert_eq!(
        objects.profile_type.id(),
        "memory:alloc_objects:count:space:bytes"
    );
    assert_eq!(objects.samples.iter().map(|s| s.1).sum::<i64>(), 6);
    assert_eq!(objects.samples.len(), 2);
    let space = p
        .series
        .iter()
        .find(|s| s.profile_type.sample_type == "alloc_space")
        .unwrap();
    assert_eq!(space.samples.len(), 1, "zero values are not stored");
    assert_eq!(space.samples[0].1, 300);
    assert_eq!(p.stacks.len(), 2, "the all-zero stack is dropped");
    let t = totals(&p, "alloc_objects");
    assert_eq!(t["alloc_a"], (3, 6));
    assert_eq!(t["alloc_b"], (3, 3));
    assert_eq!(t["main"], (0, 6));
}

#[test]
fn family_label_and_missing_time() {
    let l = labels();
    let mut profile = small_profile().build();
    profile.time_nanos = 0;
    let c = SeriesContext {
        labels: &l,
        family: Some("my_family"),
        now_us: 99,
        known_stacks: None,
    };
    let p = normalize(&profile, c, &DecodeLimits::default()).unwrap();
    assert_eq!(p.time_us, 99);
    assert!(p.series.iter().all(|s| s.profile_type.name == "my_family"));
}

#[test]
fn inlined_lines_are_expanded_leaf_first() {
    let profile = Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        string_table: ["", "cpu", "nanoseconds", "inner", "outer", "main"]
            .map(String::from)
            .to_vec(),
        function: (1..=3)
            .map(|id| Function {
                id,
                name: id as i64 + 2,
                ..Default::default()
            })
            .collect(),
        location: vec![
            Location {
                id: 1,
                line: vec![
                    Line {
                        function_id: 1,
                        line: 5,
                        column: 0,
                    },
                    Line {
                        function_id: 2,
                        line: 9,
                        column: 0,
                    },
                ],
                ..Default::default()
            },
            Location {
                id: 2,
                line: vec![Line {
                    function_id: 3,
                    line: 1,
                    column: 0,
                }],
                ..Default::default()
            },
            Location {
                id: 3,
                address: 0xdead,
                ..Default::default()
            },
        ],
        sample: vec![Sample {
            location_id: vec![3, 1, 2],
            value: vec![7],
            label: vec![],
        }],
        ..Default::default()
    };
    let l = labels();
    let p = normalize(&profile, ctx(&l), &DecodeLimits::default()).unwrap();
    let names: Vec<&str> = p.stacks[0].frames.iter().map(|f| &*f.function).collect();
    assert_eq!(names, ["0xdead", "inner", "outer", "main"]);
    assert_eq!(p.stacks[0].frames[1].line, 5);
}

#[test]
fn deep_stacks_are_truncated_not_rejected() {
    let mut b = PprofBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
    let frames: Vec<Frame> = (0..1500).map(|i| Frame::named(format!("f{i}"))).collect();
    b.sample(&frames, &[1], &[]);
    let l = labels();
    let p = decode_pprof(&b.encode_gzip(), ctx(&l), &DecodeLimits::default()).unwrap();
    assert_eq!(p.stacks[0].frames.len(), 1000);
    assert_eq!(&*p.stacks[0].frames[0].function, "f0");
    assert_eq!(&*p.stacks[0].frames[999].function, "[truncated]");
}

fn decode_err(profile: &Profile) -> DecodeError {
    let l = labels();
    decode_pprof(&profile.encode_to_vec(), ctx(&l), &DecodeLimits::default()).unwrap_err()
}

#[test]
fn malformed_profiles_are_typed_errors() {
    let good = small_profile().build();
    let l = labels();

    assert_eq!(
        decode_pprof(&[], ctx(&l), &DecodeLimits::default()).unwrap_err(),
        DecodeError::Empty
    );
    let bytes = small_profile().encode_gzip();
    assert!(matches!(
        decode_pprof(&bytes[..bytes.len() / 2], ctx(&l), &DecodeLimits::default()),
        Err(DecodeError::Gzip(_))
    ));
    let raw = good.encode_to_vec();
    assert!(matches!(
        decode_pprof(&raw[..raw.len() - 3], ctx(&l), &DecodeLimits::default()),
        Err(DecodeError::Protobuf(_))
    ));
    assert!(matches!(
        decode_pprof(b"not a profile at all", ctx(&l), &DecodeLimits::default()),
        Err(DecodeError::Protobuf(_))
    ));

    let mut p = good.clone();
    p.sample_type.clear();
    assert_eq!(decode_err(&p), DecodeError::NoSampleTypes);

    let mut p = good.clone();
    p.string_table[0] = "x".into();
    assert_eq!(decode_err(&p), DecodeError::BadStringTable);

    let mut p = good.clone();
    p.function[0].name = 10_000;
    assert!(matches!(
        decode_err(&p),
        DecodeError::StringIndex { index: 10_000, .. }
    ));

    let mut p = good.clone();
    p.sample_type[0].r#type = -1;
    assert!(matches!(
        decode_err(&p),
        DecodeError::StringIndex { index: -1, .. }
    ));

    let mut p = good.clone();
    p.sample[0].location_id.push(999);
    assert_eq!(decode_err(&p), DecodeError::UnknownLocation(999));

    let mut p = good.clone();
    p.location[0].line[0].function_id = 77;
    assert!(matches!(
        decode_err(&p),
        DecodeError::UnknownFunction { function: 77, .. }
    ));

    let mut p = good.clone();
    p.location[1].id = p.location[0].id;
    assert!(matches!(
        decode_err(&p),
        DecodeError::BadId {
            kind: "location",
            ..
        }
    ));

    let mut p = good.clone();
    p.function[0].id = 0;
    assert!(matches!(
        decode_err(&p),
        DecodeError::BadId {
            kind: "function",
            ..
        }
    ));

    // Duplicate function IDs, small (indexed densely) and huge (kept in a map).
    for id in [1, 1 << 40] {
        let mut p = good.clone();
        p.function[0].id = id;
        p.function[1].id = id;
        assert!(
            matches!(
                decode_err(&p),
                DecodeError::BadId {
                    kind: "function",
                    ..
                }
            ),
            "duplicate function id {id}"
        );
    }

    let mut p = good.clone();
    p.sample[0].value.pop();
    assert_eq!(decode_err(&p), DecodeError::ValueCount { got: 1, want: 2 });

    let mut p = good.clone();
    p.sample[0].value[0] = -5;
    assert_eq!(decode_err(&p), DecodeError::NegativeValue(-5));

    let mut p = good.clone();
    p.sample[0].value[0] = i64::MAX;
    assert_eq!(decode_err(&p), DecodeError::ValueOverflow);

    let mut p = good.clone();
    p.string_table[1] = "a:b".into();
    assert!(matches!(decode_err(&p), DecodeError::ProfileType(_)));

    let mut p = good.clone();
    let one = p.sample[0].clone();
    p.sample = vec![one; 16_001];
    assert!(matches!(
        decode_err(&p),
        DecodeError::TooManySamples { count: 16_001, .. }
    ));
}

#[test]
fn invalid_utf8_is_rejected() {
    let mut raw = small_profile().build().encode_to_vec();
    // Find "alloc_a" in the encoded string table and break its UTF-8.
    let pos = raw
        .windows(7)
        .position(|w| w == b"alloc_a")
        .expect("string present");
    raw[pos] = 0xff;
    let l = labels();
    assert_eq!(
        decode_pprof(&raw, ctx(&l), &DecodeLimits::default()).unwrap_err(),
        DecodeError::InvalidUtf8
    );
}

#[test]
fn gzip_bomb_stops_at_the_cap() {
    // 64 MiB of zeros compress to ~64 KiB; with a 1 MiB cap decoding stops early.
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 200_000);
    let limits = DecodeLimits {
        max_uncompressed_bytes: 1 << 20,
        ..Default::default()
    };
    let l = labels();
    assert_eq!(
        decode_pprof(&bomb, ctx(&l), &limits).unwrap_err(),
        DecodeError::TooLarge { max: 1 << 20 }
    );
    let raw = vec![0u8; (1 << 20) + 1];
    assert_eq!(
        decode_pprof(&raw, ctx(&l), &limits).unwrap_err(),
        DecodeError::TooLarge { max: 1 << 20 }
    );
}

#[test]
fn sample_labels_split_series_and_bad_ones_are_rejected() {
    let mut b = PprofBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
    let f = [Frame::named("work"), Frame::named("main")];
    b.sample(&f, &[5], &[("endpoint", "/a"), ("span_id", "abc")]);
    b.sample(&f, &[7], &[("endpoint", "/b")]);
    b.sample(&f, &[1], &[]);
    let l = labels();
    let p = decode_pprof(&b.encode_gzip(), ctx(&l), &DecodeLimits::default()).unwrap();
    let mut by_endpoint: Vec<(Option<String>, i64)> = p
        .series
        .iter()
        .map(|s| (s.labels.get("endpoint").map(String::from), s.samples[0].1))
        .collect();
    by_endpoint.sort();
    assert_eq!(
        by_endpoint,
        vec![(None, 1), (Some("/a".into()), 5), (Some("/b".into()), 7)]
    );
    assert!(p.series.iter().all(|s| s.labels.get("span_id").is_none()));

    let mut b = PprofBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
    b.sample(&f, &[5], &[("bad-name", "x")]);
    assert!(matches!(
        decode_pprof(&b.encode_gzip(), ctx(&l), &DecodeLimits::default()),
        Err(DecodeError::Label(_))
    ));
}

#[test]
fn known_stacks_skip_frames_and_change_nothing_else() {
    let bytes = fixture("cpu_burn.pb.gz");
    let l = labels();
    let limits = DecodeLimits::default();
    let full = decode_pprof(&bytes, ctx(&l), &limits).unwrap();
    assert!(full.stacks.len() > 4, "{}", full.stacks.len());
    // Every stack's ID is the hash of the frames returned for it.
    for st in &full.stacks {
        assert_eq!(st.id, stackdrift_model::stack_id(&st.frames));
    }
    // Say every other stack is known already.
    let known_ids: std::collections::HashSet<u64> =
        full.stacks.iter().step_by(2).map(|s| s.id).collect();
    let is_known = |id: u64| known_ids.contains(&id);
    let partial = decode_pprof(
        &bytes,
        SeriesContext {
            known_stacks: Some(&is_known),
            ..ctx(&l)
        },
        &limits,
    )
    .unwrap();
    assert_eq!(partial.series, full.series, "samples are unchanged");
    let rest: Vec<_> = full
        .stacks
        .iter()
        .filter(|s| !known_ids.contains(&s.id))
        .cloned()
        .collect();
    assert_eq!(partial.stacks, rest, "only unknown stacks carry frames");

    // A sample label that names another service turns the shortcut off: those stacks are
    // "known" for this service only.
    let mut b = PprofBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
    let f = [Frame::named("work"), Frame::named("main")];
    b.sample(&f, &[5], &[("service_name", "other")]);
    let id = stackdrift_model::stack_id(&f);
    let is_known = move |x: u64| x == id;
    let p = decode_pprof(
        &b.encode_gzip(),
        SeriesContext {
            known_stacks: Some(&is_known),
            ..ctx(&l)
        },
        &limits,
    )
    .unwrap();
    assert_eq!(p.series[0].labels.service_name(), "other");
    assert_eq!(p.stacks.len(), 1);
    assert_eq!(p.stacks[0].frames, f);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn seeds() -> Vec<Vec<u8>> {
        vec![
            fixture("cpu_burn_raw.pb"),
            small_profile().build().encode_to_vec(),
            small_profile().encode_gzip(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let l = labels();
            let _ = decode_pprof(&bytes, ctx(&l), &DecodeLimits::default());
        }

        #[test]
        fn mutated_profiles_never_panic(
            seed in 0usize..3,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            cut in any::<prop::sample::Index>(),
            do_cut in any::<bool>(),
        ) {
            let mut bytes = seeds()[seed].clone();
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            let l = labels();
            let small = DecodeLimits { max_stack_depth: 4, max_samples: 50, ..Default::default() };
            let _ = decode_pprof(&bytes, ctx(&l), &small);
            let _ = decode_pprof(&bytes, ctx(&l), &DecodeLimits::default());
        }
    }
}

#[test]
fn sparse_function_and_location_ids_decode_like_dense_ones() {
    let dense = small_profile().build();
    let mut sparse = dense.clone();
    // Renumber every function and location far beyond the dense range.
    let shift = |id: u64| id * 1_000_003 + (1 << 33);
    for f in &mut sparse.function {
        f.id = shift(f.id);
    }
    for loc in &mut sparse.location {
        loc.id = shift(loc.id);
        for line in &mut loc.line {
            line.function_id = shift(line.function_id);
        }
    }
    for sample in &mut sparse.sample {
        for id in &mut sample.location_id {
            *id = shift(*id);
        }
    }
    let l = labels();
    let limits = DecodeLimits::default();
    let a = normalize(&dense, ctx(&l), &limits).unwrap();
    let b = normalize(&sparse, ctx(&l), &limits).unwrap();
    assert!(!a.series.is_empty());
    assert_eq!(a, b);
}
