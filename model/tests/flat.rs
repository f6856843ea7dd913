//! The flat decoder against prost: same accepted inputs, same data, same normalized output.
//!
//! The oracle for normalization is `reference_normalize`, a deliberately plain rewrite of the
//! normalizer as it was before the flat decoder (over prost's owned `Profile`, hash maps, no
//! caches), so `decode_pprof` is checked against the old semantics, not against itself.

use std::collections::HashMap;

use proptest::prelude::*;
use prost::Message;
use stackdrift_model::labels::{DROPPED_SAMPLE_LABELS, SERVICE_NAME};
use stackdrift_model::pprof::flat::FlatLine;
use stackdrift_model::pprof::{
    FlatProfile, decode_profile, normalize, normalize_flat, read_capped,
};
use stackdrift_model::profile_type::default_family;
use stackdrift_model::{
    DecodeError, DecodeLimits, Frame, LabelLimits, Labels, NormalizedProfile, ProfileBuilder,
    ProfileType, SeriesContext, decode_pprof,
};
use stackdrift_proto::pprof::{
    Function, Label, Line, Location, Mapping, Profile, Sample, ValueType,
};

// ---------------------------------------------------------------------------------------------
// Reference normalizer (the pre-flat semantics, written plainly).

fn reference_normalize(
    p: &Profile,
    ctx: SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<NormalizedProfile, DecodeError> {
    if p.sample_type.is_empty() {
        return Err(DecodeError::NoSampleTypes);
    }
    if p.string_table.first().is_none_or(|s| !s.is_empty()) {
        return Err(DecodeError::BadStringTable);
    }
    if p.sample.len() > limits.max_samples {
        return Err(DecodeError::TooManySamples {
            count: p.sample.len(),
            max: limits.max_samples,
        });
    }
    let string = |i: i64| -> Result<&str, DecodeError> {
        match usize::try_from(i).ok().and_then(|i| p.string_table.get(i)) {
            Some(s) => Ok(s.as_str()),
            None => Err(DecodeError::StringIndex {
                index: i,
                len: p.string_table.len(),
            }),
        }
    };
    let (period_type, period_unit) = match &p.period_type {
        Some(vt) => (string(vt.r#type)?, string(vt.unit)?),
        None => ("", ""),
    };
    let mut types = Vec::new();
    for vt in &p.sample_type {
        let sample_type = string(vt.r#type)?;
        let sample_unit = string(vt.unit)?;
        let family = ctx.family.unwrap_or_else(|| default_family(sample_type));
        let parts = [family, sample_type, sample_unit, period_type, period_unit];
        if sample_type.is_empty() || family.is_empty() || parts.iter().any(|s| s.contains(':')) {
            return Err(DecodeError::ProfileType(format!(
                "sample type {sample_type:?} of family {family:?}"
            )));
        }
        types.push(ProfileType {
            name: family.to_owned(),
            sample_type: sample_type.to_owned(),
            sample_unit: sample_unit.to_owned(),
            period_type: period_type.to_owned(),
            period_unit: period_unit.to_owned(),
        });
    }
    let mut functions: HashMap<u64, (&str, &str)> = HashMap::new();
    for f in &p.function {
        let entry = (string(f.name)?, string(f.filename)?);
        if f.id == 0 || functions.contains_key(&f.id) {
            return Err(DecodeError::BadId {
                kind: "function",
                id: f.id,
            });
        }
        functions.insert(f.id, entry);
    }
    let mut mappings: HashMap<u64, &str> = HashMap::new();
    for m in &p.mapping {
        if m.id == 0 {
            return Err(DecodeError::BadId {
                kind: "mapping",
                id: 0,
            });
        }
        let file = string(m.filename)?;
        if mappings.insert(m.id, file).is_some() {
            return Err(DecodeError::BadId {
                kind: "mapping",
                id: m.id,
            });
        }
    }
    let mut locations: HashMap<u64, Vec<Frame>> = HashMap::new();
    for loc in &p.location {
        let mut frames = Vec::new();
        for line in &loc.line {
            let Some(&(name, file)) = functions.get(&line.function_id) else {
                return Err(DecodeError::UnknownFunction {
                    location: loc.id,
                    function: line.function_id,
                });
            };
            frames.push(Frame {
                function: name.into(),
                file: file.into(),
                line: line.line,
            });
        }
        if loc.line.is_empty() {
            let binary = mappings.get(&loc.mapping_id).copied().unwrap_or("");
            let name = if binary.is_empty() {
                format!("0x{:x}", loc.address)
            } else {
                format!("{binary}+0x{:x}", loc.address)
            };
            frames.push(Frame {
                function: name.into(),
                file: "".into(),
                line: 0,
            });
        }
        if loc.id == 0 || locations.contains_key(&loc.id) {
            return Err(DecodeError::BadId {
                kind: "location",
                id: loc.id,
            });
        }
        locations.insert(loc.id, frames);
    }
    let moves_service = p.sample.iter().any(|s| {
        s.label
            .iter()
            .any(|l| l.str != 0 && string(l.key).is_ok_and(|k| k == SERVICE_NAME))
    });
    let known = if moves_service {
        None
    } else {
        ctx.known_stacks
    };
    let mut builder = ProfileBuilder::new(limits.max_stack_depth).with_known_stacks(known);
    let base: Vec<usize> = types
        .iter()
        .map(|t| builder.series(ctx.labels, t))
        .collect();
    for s in &p.sample {
        if s.value.len() != types.len() {
            return Err(DecodeError::ValueCount {
                got: s.value.len(),
                want: types.len(),
            });
        }
        let mut frames = Vec::new();
        for id in &s.location_id {
            let Some(f) = locations.get(id) else {
                return Err(DecodeError::UnknownLocation(*id));
            };
            frames.extend(f.iter().cloned());
        }
        let stack = builder.stack(frames);
        let mut key: Vec<(i64, i64)> = Vec::new();
        for l in &s.label {
            if l.str == 0 {
                continue;
            }
            let name = string(l.key)?;
            string(l.str)?;
            if !DROPPED_SAMPLE_LABELS.contains(&name) {
                key.push((l.key, l.str));
            }
        }
        let series = if key.is_empty() {
            base.clone()
        } else {
            key.sort_unstable();
            let mut extra = Vec::new();
            for (k, v) in &key {
                extra.push((string(*k)?.to_owned(), string(*v)?.to_owned()));
            }
            let labels = ctx.labels.merged_with(&extra, &limits.labels)?;
            types.iter().map(|t| builder.series(&labels, t)).collect()
        };
        for (i, v) in s.value.iter().enumerate() {
            builder.add(series[i], stack, *v)?;
        }
    }
    let time_us = if p.time_nanos != 0 {
        p.time_nanos / 1_000
    } else {
        ctx.now_us
    };
    Ok(builder.finish(time_us, p.duration_nanos.max(0) / 1_000))
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

fn labels() -> Labels {
    Labels::new([("service_name", "svc")], &LabelLimits::default()).unwrap()
}

fn every_other(id: u64) -> bool {
    id.is_multiple_of(2)
}

/// Checks every field of the flat form against the prost message.
fn assert_same_fields(f: &FlatProfile<'_>, p: &Profile) -> Result<(), TestCaseError> {
    let strings: Vec<&str> = p.string_table.iter().map(String::as_str).collect();
    prop_assert_eq!(&f.strings, &strings);
    let types: Vec<(i64, i64)> = p.sample_type.iter().map(|v| (v.r#type, v.unit)).collect();
    prop_assert_eq!(&f.sample_type, &types);
    prop_assert_eq!(f.period_type, p.period_type.map(|v| (v.r#type, v.unit)));
    prop_assert_eq!(f.time_nanos, p.time_nanos);
    prop_assert_eq!(f.duration_nanos, p.duration_nanos);
    prop_assert_eq!(f.period, p.period);
    prop_assert_eq!(f.samples.len(), p.sample.len());
    for (fs, ps) in f.samples.iter().zip(&p.sample) {
        prop_assert_eq!(f.sample_location_ids(fs), ps.location_id.as_slice());
        prop_assert_eq!(f.sample_values(fs), ps.value.as_slice());
        let fl = f.sample_labels(fs);
        prop_assert_eq!(fl.len(), ps.label.len());
        for (a, b) in fl.iter().zip(&ps.label) {
            prop_assert_eq!(
                (a.key, a.str, a.num, a.num_unit),
                (b.key, b.str, b.num, b.num_unit)
            );
        }
    }
    let mappings: Vec<(u64, i64)> = p.mapping.iter().map(|m| (m.id, m.filename)).collect();
    let flat_mappings: Vec<(u64, i64)> = f.mappings.iter().map(|m| (m.id, m.filename)).collect();
    prop_assert_eq!(flat_mappings, mappings);
    prop_assert_eq!(f.locations.len(), p.location.len());
    for (fl, pl) in f.locations.iter().zip(&p.location) {
        prop_assert_eq!(
            (fl.id, fl.mapping_id, fl.address),
            (pl.id, pl.mapping_id, pl.address)
        );
        let lines: Vec<FlatLine> = pl
            .line
            .iter()
            .map(|l| FlatLine {
                function_id: l.function_id,
                line: l.line,
            })
            .collect();
        prop_assert_eq!(f.location_lines(fl), lines.as_slice());
    }
    let functions: Vec<(u64, i64, i64)> = p
        .function
        .iter()
        .map(|x| (x.id, x.name, x.filename))
        .collect();
    let flat_functions: Vec<(u64, i64, i64)> = f
        .functions
        .iter()
        .map(|x| (x.id, x.name, x.filename))
        .collect();
    prop_assert_eq!(flat_functions, functions);
    // from_prost gives exactly the decoded form (spans included).
    prop_assert_eq!(&FlatProfile::from_prost(p), f);
    Ok(())
}

/// The result with protobuf error messages blanked: they name the problem in each decoder's
/// words (the variant is what must agree).
fn blank(r: Result<NormalizedProfile, DecodeError>) -> Result<NormalizedProfile, DecodeError> {
    r.map_err(|e| match e {
        DecodeError::Protobuf(_) => DecodeError::Protobuf(String::new()),
        other => other,
    })
}

/// The whole contract for one input: flat decode ⇔ prost decode, same fields, same
/// normalization (flat vs the reference over prost, and `normalize` vs both), and
/// `decode_pprof` equal to prost decode + reference normalize. Returns whether it decoded.
fn check(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let prost = Profile::decode(bytes);
    let flat = FlatProfile::decode(bytes);
    let l = labels();
    let known: &(dyn Fn(u64) -> bool + Sync) = &every_other;
    let small = DecodeLimits {
        max_samples: 5,
        max_stack_depth: 3,
        ..Default::default()
    };
    let contexts = [
        (
            SeriesContext {
                labels: &l,
                family: None,
                now_us: 7,
                known_stacks: None,
            },
            DecodeLimits::default(),
        ),
        (
            SeriesContext {
                labels: &l,
                family: Some("fam"),
                now_us: 7,
                known_stacks: Some(known),
            },
            small,
        ),
    ];
    for (ctx, limits) in &contexts {
        let want = decode_profile(bytes, limits.max_uncompressed_bytes)
            .and_then(|p| reference_normalize(&p, *ctx, limits));
        prop_assert_eq!(blank(decode_pprof(bytes, *ctx, limits)), blank(want));
    }
    match (&prost, &flat) {
        (Ok(p), Ok(f)) => {
            assert_same_fields(f, p)?;
            for (ctx, limits) in &contexts {
                let want = reference_normalize(p, *ctx, limits);
                prop_assert_eq!(&normalize_flat(f, *ctx, limits), &want);
                prop_assert_eq!(&normalize(p, *ctx, limits), &want);
            }
            Ok(true)
        }
        (Err(pe), Err(fe)) => {
            let utf8 = pe.to_string().contains("UTF-8");
            match fe {
                DecodeError::InvalidUtf8 => prop_assert!(utf8, "prost: {pe}"),
                DecodeError::Protobuf(_) => prop_assert!(!utf8, "prost: {pe}, flat: {fe}"),
                other => prop_assert!(false, "unexpected error {other:?}"),
            }
            Ok(false)
        }
        (p, f) => {
            prop_assert!(
                false,
                "prost {:?} vs flat {:?}",
                p.as_ref().err(),
                f.as_ref().err()
            );
            Ok(false)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A hand encoder, for what prost never writes: unpacked and split repeated fields, unknown
// fields of every wire type, a period type in two halves, repeated scalars, shuffled fields.

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, u64::from(field) << 3 | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Enc {
    rng: Rng,
    /// Insert unknown fields.
    unknown: bool,
}

impl Enc {
    /// An unknown field (numbers 16..64, above every pprof field) of a random wire type.
    fn unknown_field(&mut self, out: &mut Vec<u8>, depth: u32) {
        let field = 16 + self.rng.below(48) as u32;
        match self.rng.below(5) {
            0 => {
                put_key(out, field, 0);
                put_varint(out, self.rng.next() >> self.rng.below(64));
            }
            1 => {
                put_key(out, field, 1);
                out.extend_from_slice(&self.rng.next().to_le_bytes());
            }
            2 => {
                let len = self.rng.below(6) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                put_bytes(out, field, &bytes);
            }
            3 => {
                put_key(out, field, 5);
                out.extend_from_slice(&(self.rng.next() as u32).to_le_bytes());
            }
            _ => {
                put_key(out, field, 3);
                if depth < 3 {
                    for _ in 0..self.rng.below(3) {
                        self.unknown_field(out, depth + 1);
                    }
                }
                put_key(out, field, 4);
            }
        }
    }

    fn maybe_unknown(&mut self, out: &mut Vec<u8>) {
        if self.unknown && self.rng.chance(4) {
            self.unknown_field(out, 0);
        }
    }

    fn uint(&mut self, out: &mut Vec<u8>, field: u32, v: u64) {
        // Zero is the default: prost omits it, this encoder sometimes writes it.
        if v != 0 || self.rng.chance(3) {
            self.maybe_unknown(out);
            put_key(out, field, 0);
            put_varint(out, v);
        }
    }

    fn int(&mut self, out: &mut Vec<u8>, field: u32, v: i64) {
        self.uint(out, field, v as u64);
    }

    /// A repeated varint field as a random mix of packed runs and unpacked values.
    fn repeated(&mut self, out: &mut Vec<u8>, field: u32, values: &[u64]) {
        let mut rest = values;
        while !rest.is_empty() {
            self.maybe_unknown(out);
            let n = 1 + self.rng.below(rest.len() as u64) as usize;
            let (run, tail) = rest.split_at(n);
            if self.rng.chance(2) {
                for &v in run {
                    put_key(out, field, 0);
                    put_varint(out, v);
                }
            } else {
                let mut packed = Vec::new();
                for &v in run {
                    put_varint(&mut packed, v);
                }
                put_bytes(out, field, &packed);
            }
            rest = tail;
        }
        // An empty packed run is valid and adds nothing.
        if self.rng.chance(8) {
            put_bytes(out, field, &[]);
        }
    }

    fn finish(&mut self, mut out: Vec<u8>) -> Vec<u8> {
        self.maybe_unknown(&mut out);
        out
    }

    fn value_type(&mut self, ty: i64, unit: i64) -> Vec<u8> {
        let mut out = Vec::new();
        self.int(&mut out, 1, ty);
        self.int(&mut out, 2, unit);
        self.finish(out)
    }

    fn sample(&mut self, s: &Sample) -> Vec<u8> {
        let mut out = Vec::new();
        // Fields of a message may come in any order; repeated ones keep theirs.
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut ids = Vec::new();
        self.repeated(&mut ids, 1, &s.location_id);
        parts.push(ids);
        let mut values = Vec::new();
        let v: Vec<u64> = s.value.iter().map(|&v| v as u64).collect();
        self.repeated(&mut values, 2, &v);
        parts.push(values);
        let mut labels = Vec::new();
        for l in &s.label {
            let mut m = Vec::new();
            self.int(&mut m, 1, l.key);
            self.int(&mut m, 2, l.str);
            self.int(&mut m, 3, l.num);
            self.int(&mut m, 4, l.num_unit);
            let m = self.finish(m);
            put_bytes(&mut labels, 3, &m);
        }
        parts.push(labels);
        if self.rng.chance(2) {
            parts.reverse();
        }
        for p in parts {
            out.extend_from_slice(&p);
        }
        self.finish(out)
    }

    fn mapping(&mut self, m: &Mapping) -> Vec<u8> {
        let mut out = Vec::new();
        self.uint(&mut out, 1, m.id);
        self.uint(&mut out, 2, m.memory_start);
        self.uint(&mut out, 3, m.memory_limit);
        self.uint(&mut out, 4, m.file_offset);
        self.int(&mut out, 5, m.filename);
        self.int(&mut out, 6, m.build_id);
        self.uint(&mut out, 7, u64::from(m.has_functions));
        self.uint(&mut out, 10, u64::from(m.has_inline_frames));
        self.finish(out)
    }

    fn location(&mut self, loc: &Location) -> Vec<u8> {
        let mut out = Vec::new();
        self.uint(&mut out, 1, loc.id);
        for line in &loc.line {
            let mut m = Vec::new();
            self.uint(&mut m, 1, line.function_id);
            self.int(&mut m, 2, line.line);
            self.int(&mut m, 3, line.column);
            let m = self.finish(m);
            put_bytes(&mut out, 4, &m);
        }
        self.uint(&mut out, 2, loc.mapping_id);
        self.uint(&mut out, 3, loc.address);
        self.uint(&mut out, 5, u64::from(loc.is_folded));
        self.finish(out)
    }

    fn function(&mut self, f: &Function) -> Vec<u8> {
        let mut out = Vec::new();
        self.int(&mut out, 5, f.start_line);
        self.int(&mut out, 4, f.filename);
        self.int(&mut out, 3, f.system_name);
        self.int(&mut out, 2, f.name);
        self.uint(&mut out, 1, f.id);
        self.finish(out)
    }

    /// The profile, its top-level fields interleaved at random (each repeated field in
    /// order), `period_type` sometimes in two halves and scalars sometimes written twice.
    fn profile(&mut self, p: &Profile) -> Vec<u8> {
        let mut queues: Vec<Vec<Vec<u8>>> = Vec::new();
        let field = |f: u32, bytes: Vec<u8>| {
            let mut out = Vec::new();
            put_bytes(&mut out, f, &bytes);
            out
        };
        queues.push(
            p.sample_type
                .iter()
                .map(|vt| field(1, self.value_type(vt.r#type, vt.unit)))
                .collect(),
        );
        queues.push(p.sample.iter().map(|s| field(2, self.sample(s))).collect());
        queues.push(
            p.mapping
                .iter()
                .map(|m| field(3, self.mapping(m)))
                .collect(),
        );
        queues.push(
            p.location
                .iter()
                .map(|l| field(4, self.location(l)))
                .collect(),
        );
        queues.push(
            p.function
                .iter()
                .map(|f| field(5, self.function(f)))
                .collect(),
        );
        queues.push(
            p.string_table
                .iter()
                .map(|s| field(6, s.as_bytes().to_vec()))
                .collect(),
        );
        let mut scalars = Vec::new();
        for (f, v) in [(9, p.time_nanos), (10, p.duration_nanos), (12, p.period)] {
            if self.rng.chance(3) {
                // An earlier value, overridden by the last one.
                put_key(&mut scalars, f, 0);
                put_varint(&mut scalars, self.rng.next());
                put_key(&mut scalars, f, 0);
                put_varint(&mut scalars, v as u64);
            } else {
                self.int(&mut scalars, f, v);
            }
        }
        self.int(&mut scalars, 7, p.drop_frames);
        self.int(&mut scalars, 14, p.default_sample_type);
        let comments: Vec<u64> = p.comment.iter().map(|&c| c as u64).collect();
        self.repeated(&mut scalars, 13, &comments);
        queues.push(vec![scalars]);
        if let Some(vt) = p.period_type {
            let halves = if self.rng.chance(2) {
                // Two messages merge: the second overrides only what it carries.
                let mut first = Vec::new();
                let junk = self.rng.next() as i64;
                self.int(&mut first, 1, junk);
                self.int(&mut first, 2, vt.unit);
                let mut second = Vec::new();
                put_key(&mut second, 1, 0);
                put_varint(&mut second, vt.r#type as u64);
                vec![field(11, first), field(11, second)]
            } else {
                vec![field(11, self.value_type(vt.r#type, vt.unit))]
            };
            queues.push(halves);
        }
        for q in &mut queues {
            q.reverse();
        }
        let mut out = Vec::new();
        loop {
            let live: Vec<usize> = (0..queues.len())
                .filter(|&i| !queues[i].is_empty())
                .collect();
            if live.is_empty() {
                break;
            }
            let q = live[self.rng.below(live.len() as u64) as usize];
            if let Some(chunk) = queues[q].pop() {
                out.extend_from_slice(&chunk);
            }
            self.maybe_unknown(&mut out);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Random profiles.

const BASE_STRINGS: &[&str] = &[
    "",
    "cpu",
    "nanoseconds",
    "samples",
    "count",
    "main",
    "work",
    "a.go",
    "endpoint",
    "/a",
    "service_name",
    "other",
    "span_id",
    "bin",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_/.]{0,6}", "[a-z:-]{1,4}", "\\PC{0,3}",]
}

type RawSample = (Vec<u64>, Vec<i64>, Vec<(i64, i64, i64, i64)>);
type RawLocation = (u64, u64, u64, Vec<(u64, i64)>);

#[allow(clippy::type_complexity)]
fn arb_profile() -> impl Strategy<Value = Profile> {
    (
        (
            1usize..4,
            proptest::collection::vec(arb_string(), 0..6),
            proptest::collection::vec((0u64..12, 0i64..24, 0i64..24), 0..10),
            proptest::collection::vec(
                (
                    0u64..12,
                    0u64..4,
                    any::<u64>(),
                    proptest::collection::vec((0u64..12, -3i64..200), 0..3),
                ),
                0..10,
            ),
            proptest::collection::vec((0u64..4, 0i64..24), 0..3),
        ),
        (
            proptest::collection::vec(
                (
                    proptest::collection::vec(0u64..12, 0..6),
                    proptest::collection::vec(0i64..1_000, 0..4),
                    proptest::collection::vec((0i64..24, 0i64..24, any::<i64>(), 0i64..4), 0..3),
                ),
                0..12,
            ),
            proptest::option::of((0i64..24, 0i64..24)),
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(any::<i64>(), 0..3),
            0u8..4,
        ),
    )
        .prop_map(
            |(
                (n_types, extra, functions, locations, mappings),
                (samples, period, time, duration, comment, tidiness),
            )| {
                build_profile(
                    n_types, extra, functions, locations, mappings, samples, period, time,
                    duration, comment, tidiness,
                )
            },
        )
}

/// Builds a profile; `tidiness` > 0 makes it mostly valid (IDs 1..=N, indices in range, one
/// value per sample type) so that normalization gets past its checks.
#[allow(clippy::too_many_arguments)]
fn build_profile(
    n_types: usize,
    extra: Vec<String>,
    functions: Vec<(u64, i64, i64)>,
    locations: Vec<RawLocation>,
    mappings: Vec<(u64, i64)>,
    samples: Vec<RawSample>,
    period: Option<(i64, i64)>,
    time: i64,
    duration: i64,
    comment: Vec<i64>,
    tidiness: u8,
) -> Profile {
    let tidy = tidiness > 0;
    let mut strings: Vec<String> = BASE_STRINGS.iter().map(|s| s.to_string()).collect();
    strings.extend(extra);
    let n_strings = strings.len() as i64;
    let s = |i: i64| if tidy { i % n_strings } else { i };
    let n_functions = functions.len() as u64;
    let n_locations = locations.len() as u64;
    let id = |raw: u64, index: usize| if tidy { index as u64 + 1 } else { raw };
    let fid = |raw: u64| {
        if tidy && n_functions > 0 {
            raw % n_functions + 1
        } else {
            raw
        }
    };
    let lid = |raw: u64| {
        if tidy && n_locations > 0 {
            raw % n_locations + 1
        } else {
            raw
        }
    };
    let sample_types: Vec<ValueType> = (0..n_types)
        .map(|i| ValueType {
            r#type: if tidy { [1, 3, 5][i % 3] } else { i as i64 * 3 },
            unit: if tidy { [2, 4, 2][i % 3] } else { i as i64 },
        })
        .collect();
    Profile {
        sample_type: sample_types,
        sample: samples
            .into_iter()
            .map(|(ids, mut values, labels)| {
                if tidy {
                    values.resize(n_types, 1);
                }
                Sample {
                    location_id: ids.into_iter().map(lid).collect(),
                    value: values,
                    label: labels
                        .into_iter()
                        .map(|(key, str, num, num_unit)| Label {
                            key: if tidy {
                                [8, 10, 12, 3][key as usize % 4]
                            } else {
                                key
                            },
                            str: if tidy && tidiness > 1 {
                                str % 3 * 4 % n_strings
                            } else {
                                s(str)
                            },
                            num,
                            num_unit: s(num_unit),
                        })
                        .collect(),
                }
            })
            .collect(),
        mapping: mappings
            .into_iter()
            .enumerate()
            .map(|(i, (raw, filename))| Mapping {
                id: id(raw, i),
                filename: s(filename),
                has_functions: raw % 2 == 0,
                ..Default::default()
            })
            .collect(),
        location: locations
            .into_iter()
            .enumerate()
            .map(|(i, (raw, mapping_id, address, lines))| Location {
                id: id(raw, i),
                mapping_id,
                address,
                line: lines
                    .into_iter()
                    .map(|(f, line)| Line {
                        function_id: fid(f),
                        line,
                        column: line / 2,
                    })
                    .collect(),
                is_folded: address % 3 == 0,
            })
            .collect(),
        function: functions
            .into_iter()
            .enumerate()
            .map(|(i, (raw, name, filename))| Function {
                id: id(raw, i),
                name: s(name),
                system_name: s(name + 1),
                filename: s(filename),
                start_line: name,
            })
            .collect(),
        string_table: strings,
        time_nanos: time,
        duration_nanos: duration,
        period_type: period.map(|(ty, unit)| ValueType {
            r#type: s(ty),
            unit: s(unit),
        }),
        period: time / 3,
        comment,
        drop_frames: s(duration),
        ..Default::default()
    }
}

/// Random field sequences, nested: structurally plausible protobuf with wrong wire types,
/// field 0, groups, bad lengths and the like, which random bytes rarely reach.
fn arb_fields(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let leaf = (
        0u32..18,
        0u8..8,
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(field, wire, v, bytes)| {
            let mut out = Vec::new();
            put_key(&mut out, field, wire);
            match wire {
                0 => put_varint(&mut out, v >> (v % 64)),
                1 => out.extend_from_slice(&v.to_le_bytes()),
                2 => {
                    put_varint(&mut out, bytes.len() as u64);
                    out.extend_from_slice(&bytes);
                }
                5 => out.extend_from_slice(&(v as u32).to_le_bytes()),
                _ => {}
            }
            out
        })
        .boxed();
    if depth == 0 {
        return proptest::collection::vec(leaf, 0..6)
            .prop_map(|v| v.concat())
            .boxed();
    }
    let nested =
        (1u32..7, arb_fields(depth - 1), any::<bool>()).prop_map(|(field, inner, group)| {
            let mut out = Vec::new();
            if group {
                put_key(&mut out, field + 20, 3);
                out.extend_from_slice(&inner);
                put_key(&mut out, field + 20, 4);
            } else {
                put_bytes(&mut out, field, &inner);
            }
            out
        });
    proptest::collection::vec(prop_oneof![leaf, nested], 0..8)
        .prop_map(|v| v.concat())
        .boxed()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<prop::sample::Index>(), 1u8..4).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] ^= b | 1;
        }
        Mutation::Insert(i, b) => {
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let at = i.index(bytes.len());
            let end = (at + *n as usize).min(bytes.len());
            bytes.drain(at..end);
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// (a) Valid profiles, encoded by prost and by the hand encoder.
    #[test]
    fn valid_profiles_decode_like_prost(profile in arb_profile(), seed in any::<u64>(), unknown in any::<bool>()) {
        prop_assert!(check(&profile.encode_to_vec())?);
        let bytes = Enc { rng: Rng(seed), unknown }.profile(&profile);
        prop_assert!(check(&bytes)?, "hand encoding must decode");
        // The hand encoding means the same message.
        prop_assert_eq!(Profile::decode(bytes.as_slice()).unwrap(), profile);
    }

    /// (b) Those encodings, mutated.
    #[test]
    fn mutated_profiles_decode_like_prost(
        profile in arb_profile(),
        seed in any::<u64>(),
        hand in any::<bool>(),
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut bytes = if hand {
            Enc { rng: Rng(seed), unknown: true }.profile(&profile)
        } else {
            profile.encode_to_vec()
        };
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check(&bytes)?;
    }

    /// (c) Random bytes.
    #[test]
    fn random_bytes_decode_like_prost(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes)?;
    }

    /// (d) Random field sequences (wire-level structure without pprof's shape).
    #[test]
    fn random_fields_decode_like_prost(bytes in arb_fields(3)) {
        check(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made cases.

fn flat_err(bytes: &[u8]) -> DecodeError {
    let err = FlatProfile::decode(bytes).unwrap_err();
    assert!(Profile::decode(bytes).is_err(), "prost accepts {bytes:?}");
    err
}

fn protobuf_msg(bytes: &[u8]) -> String {
    match flat_err(bytes) {
        DecodeError::Protobuf(msg) => msg,
        other => panic!("{other:?}"),
    }
}

/// A valid profile with one sample, to attach test fields to.
fn base() -> Vec<u8> {
    let p = Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        string_table: ["", "cpu", "nanoseconds", "main"]
            .map(String::from)
            .to_vec(),
        function: vec![Function {
            id: 1,
            name: 3,
            ..Default::default()
        }],
        location: vec![Location {
            id: 1,
            line: vec![Line {
                function_id: 1,
                line: 3,
                column: 0,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    p.encode_to_vec()
}

#[test]
fn mixed_packed_and_unpacked_location_ids_append() {
    let mut sample = Vec::new();
    put_key(&mut sample, 1, 0);
    put_varint(&mut sample, 1);
    put_bytes(&mut sample, 1, &[1, 1, 0x80, 0x01]);
    put_key(&mut sample, 2, 0);
    put_varint(&mut sample, 5);
    put_key(&mut sample, 1, 0);
    put_varint(&mut sample, 1);
    let mut bytes = base();
    put_bytes(&mut bytes, 2, &sample);
    let flat = FlatProfile::decode(&bytes).unwrap();
    assert_eq!(
        flat.sample_location_ids(&flat.samples[0]),
        [1, 1, 1, 128, 1]
    );
    assert_eq!(flat.sample_values(&flat.samples[0]), [5]);
    let prost = Profile::decode(bytes.as_slice()).unwrap();
    assert_eq!(prost.sample[0].location_id, [1, 1, 1, 128, 1]);
    assert!(check(&bytes).unwrap());
}

#[test]
fn period_type_twice_merges() {
    let mut bytes = base();
    put_bytes(&mut bytes, 11, &[0x08, 1, 0x10, 2]); // type 1, unit 2
    put_bytes(&mut bytes, 11, &[0x08, 3]); // type 3 only
    let flat = FlatProfile::decode(&bytes).unwrap();
    assert_eq!(flat.period_type, Some((3, 2)));
    let prost = Profile::decode(bytes.as_slice()).unwrap();
    assert_eq!(prost.period_type, Some(ValueType { r#type: 3, unit: 2 }));
    // An empty one still sets it.
    let mut bytes = base();
    put_bytes(&mut bytes, 11, &[]);
    assert_eq!(
        FlatProfile::decode(&bytes).unwrap().period_type,
        Some((0, 0))
    );
    assert!(check(&bytes).unwrap());
}

#[test]
fn scalars_last_one_wins() {
    let mut bytes = base();
    for t in [5u64, 9, 2_000] {
        put_key(&mut bytes, 9, 0);
        put_varint(&mut bytes, t);
    }
    assert_eq!(FlatProfile::decode(&bytes).unwrap().time_nanos, 2_000);
    assert!(check(&bytes).unwrap());
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let mut unknown = Vec::new();
    put_key(&mut unknown, 99, 0);
    put_varint(&mut unknown, u64::MAX);
    put_key(&mut unknown, 99, 1);
    unknown.extend_from_slice(&[7; 8]);
    put_bytes(&mut unknown, 99, b"\xff\xfe not utf-8");
    put_key(&mut unknown, 99, 5);
    unknown.extend_from_slice(&[7; 4]);
    put_key(&mut unknown, 98, 3);
    put_key(&mut unknown, 97, 3);
    put_key(&mut unknown, 1, 0);
    put_varint(&mut unknown, 1);
    put_key(&mut unknown, 97, 4);
    put_key(&mut unknown, 98, 4);
    // At the top level and inside every nested message.
    let mut bytes = unknown.clone();
    bytes.extend_from_slice(&base());
    let mut sample = vec![0x08, 1, 0x10, 4];
    sample.extend_from_slice(&unknown);
    let mut label = vec![0x08, 3, 0x10, 1];
    label.extend_from_slice(&unknown);
    put_bytes(&mut sample, 3, &label);
    put_bytes(&mut bytes, 2, &sample);
    bytes.extend_from_slice(&unknown);
    let flat = FlatProfile::decode(&bytes).unwrap();
    assert_eq!(flat.samples.len(), 1);
    assert_eq!(flat.labels[0].key, 3);
    assert!(check(&bytes).unwrap());
}

#[test]
fn group_nesting_follows_prosts_limit() {
    fn nested(depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..depth {
            put_key(&mut out, 20, 3);
        }
        put_key(&mut out, 21, 0);
        put_varint(&mut out, 1);
        for _ in 0..depth {
            put_key(&mut out, 20, 4);
        }
        out
    }
    for depth in [1, 98, 99, 100, 101] {
        // Top level, and inside a sample (one level of budget less).
        let top = nested(depth);
        let mut in_sample = base();
        put_bytes(&mut in_sample, 2, &nested(depth));
        for bytes in [top, in_sample] {
            let ok = check(&bytes).unwrap_or_else(|e| panic!("depth {depth}: {e}"));
            assert_eq!(ok, Profile::decode(bytes.as_slice()).is_ok());
        }
    }
    assert!(FlatProfile::decode(&nested(99)).is_ok());
    assert!(FlatProfile::decode(&nested(100)).is_err());
    // A mismatched or stray end group.
    let mut bytes = Vec::new();
    put_key(&mut bytes, 20, 3);
    put_key(&mut bytes, 21, 4);
    assert!(protobuf_msg(&bytes).contains("end group"));
    let mut bytes = Vec::new();
    put_key(&mut bytes, 20, 4);
    assert!(protobuf_msg(&bytes).contains("end group"));
}

#[test]
fn field_zero_is_rejected() {
    let mut bytes = base();
    put_key(&mut bytes, 0, 0);
    put_varint(&mut bytes, 1);
    assert_eq!(protobuf_msg(&bytes), "field number 0");
}

#[test]
fn varints_follow_the_ten_byte_rule() {
    // u64::MAX: ten bytes, the last 0x01.
    let mut bytes = base();
    put_key(&mut bytes, 9, 0);
    bytes.extend_from_slice(&[0xff; 9]);
    bytes.push(0x01);
    assert_eq!(FlatProfile::decode(&bytes).unwrap().time_nanos, -1);
    assert!(check(&bytes).unwrap());
    // Tenth byte 0x02 overflows.
    let mut bytes = base();
    put_key(&mut bytes, 9, 0);
    bytes.extend_from_slice(&[0xff; 9]);
    bytes.push(0x02);
    assert_eq!(protobuf_msg(&bytes), "varint overflows 64 bits");
    // Eleven bytes.
    let mut bytes = base();
    put_key(&mut bytes, 9, 0);
    bytes.extend_from_slice(&[0x80; 10]);
    bytes.push(0x00);
    assert_eq!(protobuf_msg(&bytes), "varint longer than 10 bytes");
    // Truncated.
    let mut bytes = base();
    put_key(&mut bytes, 9, 0);
    bytes.push(0x80);
    assert_eq!(protobuf_msg(&bytes), "truncated varint");
    // A non-minimal (padded) varint is fine.
    let mut bytes = base();
    put_key(&mut bytes, 9, 0);
    bytes.extend_from_slice(&[0x85, 0x80, 0x80, 0x00]);
    assert_eq!(FlatProfile::decode(&bytes).unwrap().time_nanos, 5);
    assert!(check(&bytes).unwrap());
}

#[test]
fn invalid_utf8_string_is_invalid_utf8() {
    let mut bytes = base();
    put_bytes(&mut bytes, 6, b"ok\xc3");
    assert_eq!(flat_err(&bytes), DecodeError::InvalidUtf8);
    assert!(!check(&bytes).unwrap());
}

#[test]
fn wrong_wire_type_for_a_known_field_is_rejected() {
    let mut bytes = base();
    put_key(&mut bytes, 2, 0); // sample as a varint
    put_varint(&mut bytes, 1);
    assert_eq!(protobuf_msg(&bytes), "invalid wire type 0 for field 2");
    let mut bytes = base();
    put_key(&mut bytes, 9, 1); // time_nanos as fixed64
    bytes.extend_from_slice(&[0; 8]);
    assert_eq!(protobuf_msg(&bytes), "invalid wire type 1 for field 9");
    // Repeated scalars take varint or length-delimited, nothing else.
    let mut sample = Vec::new();
    put_key(&mut sample, 1, 5);
    sample.extend_from_slice(&[1, 0, 0, 0]);
    let mut bytes = base();
    put_bytes(&mut bytes, 2, &sample);
    assert_eq!(protobuf_msg(&bytes), "invalid wire type 5 for field 1");
    // Wire types 6 and 7 do not exist.
    assert_eq!(protobuf_msg(&[0x0e]), "invalid wire type 6");
    // A length past the end.
    let mut bytes = base();
    put_key(&mut bytes, 6, 2);
    put_varint(&mut bytes, 100);
    assert_eq!(protobuf_msg(&bytes), "length beyond the end of the buffer");
}

#[test]
fn read_capped_is_identical_with_any_size_hint() {
    use stackdrift_model::encode::gzip;
    let raw: Vec<u8> = (0..300_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
        .collect();
    let one = gzip(&raw);
    assert_eq!(read_capped(&one, 1 << 20).unwrap(), raw);
    // Two members: the trailer's size is only the last member's.
    let mut two = gzip(&raw[..1_000]);
    two.extend_from_slice(&gzip(&raw[1_000..]));
    assert_eq!(read_capped(&two, 1 << 20).unwrap(), raw);
    let mut two = gzip(&raw[..299_000]);
    two.extend_from_slice(&gzip(&raw[299_000..]));
    assert_eq!(read_capped(&two, 1 << 20).unwrap(), raw);
    // A lying trailer changes nothing but the capacity.
    let mut liar = one.clone();
    let n = liar.len();
    liar[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(
        read_capped(&liar, 1 << 20).is_err(),
        "the trailer is checked"
    );
    // At, and one past, the cap.
    assert_eq!(read_capped(&one, raw.len()).unwrap(), raw);
    assert_eq!(
        read_capped(&one, raw.len() - 1).unwrap_err(),
        DecodeError::TooLarge { max: raw.len() - 1 }
    );
}

/// What flate2's multi-member decoder alone gives (the reference for `read_capped`, which
/// decodes the usual single member with libdeflate and hands anything else to flate2).
fn gunzip_reference(gz: &[u8], max: usize) -> Result<Vec<u8>, ()> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ())?;
    if out.len() > max { Err(()) } else { Ok(out) }
}

/// libdeflate reads only the first member and ignores what follows it: `read_capped` must
/// still give every member, and reject trailing data, exactly as the streaming decoder does.
#[test]
fn read_capped_whole_buffer_path_agrees_with_streaming() {
    use stackdrift_model::encode::gzip;
    let raw: Vec<u8> = (0..100_000u32)
        .map(|i| (i % 241) as u8 ^ (i >> 7) as u8)
        .collect();
    let one = gzip(&raw);
    let same = |gz: &[u8], max: usize| {
        let ours = read_capped(gz, max).map_err(|_| ());
        let reference = gunzip_reference(gz, max);
        let len = |r: &Result<Vec<u8>, ()>| r.as_ref().map(Vec::len).ok();
        assert!(
            ours == reference,
            "input of {} bytes: {:?} against flate2's {:?}",
            gz.len(),
            len(&ours),
            len(&reference)
        );
        ours
    };
    // Two identical members: the last trailer is also the first member's.
    let mut twice = one.clone();
    twice.extend_from_slice(&one);
    assert_eq!(same(&twice, 1 << 20).unwrap().len(), 2 * raw.len());
    // A member, then a copy of its own trailer, or other bytes: errors, not the first member.
    let trailer = one[one.len() - 8..].to_vec();
    for tail in [trailer, vec![0; 8], vec![0x1f, 0x8b], b"trailing".to_vec()] {
        let mut gz = one.clone();
        gz.extend_from_slice(&tail);
        assert!(same(&gz, 1 << 20).is_err(), "{tail:?}");
    }
    // An empty member after the first.
    let mut gz = one.clone();
    gz.extend_from_slice(&gzip(&[]));
    assert_eq!(same(&gz, 1 << 20).unwrap(), raw);
    // A trailer that understates the size: the buffer grows, the outcome is flate2's, and
    // the cap still holds.
    let mut small = one.clone();
    let n = small.len();
    small[n - 4..].copy_from_slice(&100u32.to_le_bytes());
    assert!(same(&small, 1 << 20).is_err());
    assert!(same(&small, 50_000).is_err());
    // Truncated, and one byte flipped at many places.
    for cut in [1, 4, 8, 9, 100, one.len() / 2, one.len() - 11] {
        same(&one[..one.len() - cut], 1 << 20).unwrap_err();
    }
    // (From byte 2 on: before it, the input is no longer gzip and passes through raw.)
    for at in (2..one.len()).step_by(997) {
        let mut gz = one.clone();
        gz[at] ^= 0x5a;
        same(&gz, 1 << 20).ok();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random streams of gzip members (some repeated, some empty), maybe followed by junk
    /// or by a copy of the last trailer, maybe with one byte flipped, under a random cap:
    /// `read_capped` answers exactly as flate2's streaming decoder does.
    #[test]
    fn read_capped_agrees_with_streaming_on_member_streams(
        members in prop::collection::vec((0usize..6_000, any::<u8>(), 1u8..8), 1..4),
        repeat_first in any::<bool>(),
        junk in prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
        trailer_copy in any::<bool>(),
        flip in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        cap in 1usize..30_000,
    ) {
        use stackdrift_model::encode::gzip;
        let member = |&(len, seed, period): &(usize, u8, u8)| {
            let raw: Vec<u8> = (0..len)
                .map(|i| seed.wrapping_add((i % usize::from(period)) as u8) ^ (i >> 6) as u8)
                .collect();
            gzip(&raw)
        };
        let mut gz: Vec<u8> = members.iter().flat_map(member).collect();
        if repeat_first {
            gz.extend_from_slice(&member(&members[0]));
        }
        if trailer_copy {
            let tail = gz[gz.len() - 8..].to_vec();
            gz.extend_from_slice(&tail);
        }
        if let Some(junk) = junk {
            gz.extend_from_slice(&junk);
        }
        if let Some((at, mask)) = flip {
            // Not the magic number: before it, the input is no longer gzip at all.
            let at = 2 + at.index(gz.len() - 2);
            gz[at] ^= mask;
        }
        let ours = read_capped(&gz, cap).map_err(|_| ());
        prop_assert!(ours == gunzip_reference(&gz, cap));
    }
}

#[test]
fn real_profiler_fixtures_decode_like_prost() {
    for name in ["cpu_burn.pb.gz", "cpu_burn_raw.pb"] {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let raw = read_capped(&bytes, 64 << 20).unwrap();
        assert!(check(&raw).unwrap(), "{name}");
    }
}

/// The string table is validated a run of entries at a time (`StringSpan`): runs broken by
/// two-byte lengths, multi-byte characters, other fields between strings, and one invalid
/// byte anywhere must give exactly what prost gives.
#[test]
fn string_table_runs_decode_like_prost() {
    let long = "λ/".repeat(70); // 210 bytes: a two-byte length
    let table = [
        "",
        "main.run",
        "naïve/ünïcode",
        long.as_str(),
        "a",
        "",
        "github.com/acme/svc.(*T).Serve",
        long.as_str(),
        "z",
    ];
    let encode = |corrupt: Option<(usize, usize)>, field_between: bool| {
        let mut bytes = base();
        for (i, s) in table.iter().enumerate().skip(1) {
            let mut b = s.as_bytes().to_vec();
            if let Some((which, at)) = corrupt
                && which == i
                && at < b.len()
            {
                b[at] = 0xff;
            }
            put_bytes(&mut bytes, 6, &b);
            if field_between && i == 4 {
                put_key(&mut bytes, 9, 0); // time_nanos: a varint with bytes ≥ 0x80
                put_varint(&mut bytes, 1 << 40);
            }
        }
        bytes
    };
    for field_between in [false, true] {
        let bytes = encode(None, field_between);
        let flat = FlatProfile::decode(&bytes).expect("valid");
        // After `base()`'s own strings.
        let ours = &flat.strings[flat.strings.len() - (table.len() - 1)..];
        assert_eq!(ours, &table[1..], "between: {field_between}");
        assert!(check(&bytes).unwrap());
        for (i, s) in table
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, s)| !s.is_empty())
        {
            for at in [0, s.len() / 2, s.len() - 1] {
                let bytes = encode(Some((i, at)), field_between);
                assert_eq!(
                    flat_err(&bytes),
                    DecodeError::InvalidUtf8,
                    "string {i} byte {at}"
                );
                assert!(!check(&bytes).unwrap());
            }
        }
    }
}
