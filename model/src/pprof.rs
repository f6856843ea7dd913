//! pprof decoding: bytes (gzipped or raw) → [`FlatProfile`] → [`NormalizedProfile`].
//!
//! ```text
//!  bytes ─▶ read_capped (gunzip, stops at the cap) ─▶ FlatProfile::decode ─▶ validate indices
//!        ─▶ per sample: locations → frames (leaf first) → stack_id
//!        ─▶ per sample type: one series, values summed per stack
//! ```
//!
//! [`decode_profile`] (prost, owned [`Profile`]) stays for callers that edit the message
//! first; [`normalize`] takes such a message through [`FlatProfile::from_prost`].

// Keys here are stack hashes, IDs and short slices: Fx hashing, not SipHash (a profile
// hashes every sample several times, and nothing here is attacker-keyed at scale).
use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::io::Read;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use prost::Message;
use serde::{Deserialize, Serialize};
use stackdrift_proto::pprof::Profile;

use crate::error::DecodeError;
use crate::labels::SERVICE_NAME;
use crate::labels::{DROPPED_SAMPLE_LABELS, LabelLimits, Labels};
use crate::normalized::{KnownStacks, NormalizedProfile, ProfileBuilder};
use crate::profile_type::{ProfileType, default_family};
use crate::stack::{Frame, frame_hash};

pub mod flat;

use flat::FlatLabel;
pub use flat::FlatProfile;

/// Limits applied while decoding one profile (Pyroscope's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Bytes of the profile after decompression.
    pub max_uncompressed_bytes: usize,
    /// Samples in one profile.
    pub max_samples: usize,
    /// Frames per stack; deeper stacks are truncated, not rejected.
    pub max_stack_depth: usize,
    /// Limits on labels.
    pub labels: LabelLimits,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_uncompressed_bytes: 4 << 20,
            max_samples: 16_000,
            max_stack_depth: 1_000,
            labels: LabelLimits::default(),
        }
    }
}

/// True when `bytes` starts with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Returns `bytes`, gunzipped if gzipped, failing once more than `max` bytes would result.
///
/// Decompression stops at `max + 1` bytes, so a gzip bomb costs at most the cap (twice the
/// cap when the gzip trailer understates the size; see [`gunzip_whole`]).
pub fn read_capped(bytes: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    if !is_gzip(bytes) {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge { max });
        }
        return Ok(bytes.to_vec());
    }
    match gunzip_whole(bytes, max) {
        Some(result) => result,
        None => gunzip_streaming(bytes, max),
    }
}

/// Gunzips with flate2 (zlib-rs), a stream of members of any number, stopping at `max + 1`
/// bytes. Handles every input; [`gunzip_whole`] is faster for the usual one. Public for the
/// load generator's decode floor, which is defined with this gunzip.
pub fn gunzip_streaming(bytes: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(gunzip_capacity(bytes, max));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > max {
        return Err(DecodeError::TooLarge { max });
    }
    Ok(out)
}

thread_local! {
    /// libdeflate's decompressor state (tables, ~10 KB), one per thread.
    static INFLATER: std::cell::RefCell<libdeflater::Decompressor> =
        std::cell::RefCell::new(libdeflater::Decompressor::new());
}

/// Gunzips a single-member gzip stream in one call to libdeflate (about twice as fast as
/// zlib-rs on pprof payloads; see BENCHMARKS.md), into a buffer sized from the trailer.
///
/// `None` hands the input to [`gunzip_streaming`], which gives the exact answer: when
/// libdeflate reports bad data (for the error message), and when the stream may hold more
/// than one member. libdeflate decodes only the first member and ignores what follows, so
/// its result stands only when that member's trailer (CRC-32 and size of the output) is
/// the last 8 bytes of the input and those 8 bytes occur nowhere earlier in it: the first
/// member's trailer then can only be at the end, and nothing follows it.
///
/// The output buffer is sized from the trailer's ISIZE when plausible; when the data is
/// larger, the member is decoded again into a buffer twice as large, up to `max + 1`
/// bytes, so a lying trailer costs at most about twice the cap.
fn gunzip_whole(gz: &[u8], max: usize) -> Option<Result<Vec<u8>, DecodeError>> {
    const TRAILER: usize = 8;
    // Shorter than a header, the shortest deflate stream and a trailer: the streaming
    // decoder words the error.
    if gz.len() < 10 + 2 + TRAILER {
        return None;
    }
    let cap = max.saturating_add(1);
    let mut size = gunzip_capacity(gz, max).max(1 << 10).min(cap);
    INFLATER.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        loop {
            let mut out = vec![0u8; size];
            match inflater.gzip_decompress(gz, &mut out) {
                Ok(n) if n > max => return Some(Err(DecodeError::TooLarge { max })),
                Ok(n) => {
                    out.truncate(n);
                    let mut trailer = [0u8; TRAILER];
                    trailer[..4].copy_from_slice(&libdeflater::crc32(&out).to_le_bytes());
                    trailer[4..].copy_from_slice(&(n as u32).to_le_bytes());
                    let at_end = gz[gz.len() - TRAILER..] == trailer;
                    // Any copy in all but the last byte starts before the last 8 bytes.
                    let earlier = memchr::memmem::find(&gz[..gz.len() - 1], &trailer);
                    return (at_end && earlier.is_none()).then_some(Ok(out));
                }
                Err(libdeflater::DecompressionError::InsufficientSpace) if size >= cap => {
                    return Some(Err(DecodeError::TooLarge { max }));
                }
                Err(libdeflater::DecompressionError::InsufficientSpace) => {
                    size = size.saturating_mul(2).min(cap);
                }
                Err(libdeflater::DecompressionError::BadData) => return None,
            }
        }
    })
}

/// Deflate expands at most ~1032×: a larger gzip ISIZE is not this member's size.
const MAX_DEFLATE_RATIO: usize = 1_032;

/// Capacity for gunzipping `gz` with cap `max`: the gzip trailer's ISIZE (the last member's
/// size mod 2^32, the whole size for the usual single member) when plausible, else 4×; never
/// more than `max + 1`, what [`read_capped`] reads at most. Only a hint: a multi-member stream
/// just grows the buffer.
fn gunzip_capacity(gz: &[u8], max: usize) -> usize {
    let isize_hint = gz
        .len()
        .checked_sub(4)
        .and_then(|at| gz.get(at..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map(|tail| u32::from_le_bytes(tail) as usize)
        .filter(|&n| {
            n <= gz
                .len()
                .saturating_mul(MAX_DEFLATE_RATIO)
                .saturating_add(64)
        });
    match isize_hint {
        Some(n) => n.min(max).saturating_add(1),
        None => gz.len().saturating_mul(4).min(max),
    }
}

/// [`read_capped`], with an empty payload (before or after gunzip) as [`DecodeError::Empty`].
fn read_nonempty(bytes: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let raw = read_capped(bytes, max)?;
    if raw.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(raw)
}

/// Decodes a pprof protobuf, gzipped or raw, into owned prost types.
///
/// [`decode_pprof`] does not use it (it decodes into a borrowing [`FlatProfile`]); it is for
/// callers that need a [`Profile`] to edit.
pub fn decode_profile(bytes: &[u8], max_uncompressed: usize) -> Result<Profile, DecodeError> {
    let raw = read_nonempty(bytes, max_uncompressed)?;
    Profile::decode(raw.as_slice()).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("UTF-8") {
            DecodeError::InvalidUtf8
        } else {
            DecodeError::Protobuf(msg)
        }
    })
}

/// What to attach to a decoded profile.
#[derive(Clone, Copy)]
pub struct SeriesContext<'a> {
    /// Validated series labels (`service_name` included).
    pub labels: &'a Labels,
    /// Profile family (`__name__`); inferred from the sample type when `None`.
    pub family: Option<&'a str>,
    /// Time to use when the profile carries none, µs since the epoch.
    pub now_us: i64,
    /// Stacks whose frames the caller already has (see [`KnownStacks`]).
    pub known_stacks: Option<KnownStacks<'a>>,
}

impl std::fmt::Debug for SeriesContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesContext")
            .field("labels", &self.labels)
            .field("family", &self.family)
            .field("now_us", &self.now_us)
            .field("known_stacks", &self.known_stacks.is_some())
            .finish()
    }
}

/// Decodes and normalizes a pprof payload in one step.
pub fn decode_pprof(
    bytes: &[u8],
    ctx: SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<NormalizedProfile, DecodeError> {
    let raw = read_nonempty(bytes, limits.max_uncompressed_bytes)?;
    let profile = FlatProfile::decode(&raw)?;
    normalize_flat(&profile, ctx, limits)
}

struct Strings<'s, 'a>(&'s [&'a str]);

impl<'a> Strings<'_, 'a> {
    fn get(&self, index: i64) -> Result<&'a str, DecodeError> {
        // `let else`, not `ok_or`: the error is built only when the lookup fails.
        let Some(s) = usize::try_from(index).ok().and_then(|i| self.0.get(i)) else {
            return Err(DecodeError::StringIndex {
                index,
                len: self.0.len(),
            });
        };
        Ok(s)
    }
}

/// Turns a decoded pprof into normalized series, one per sample type (and per distinct set of
/// string sample labels). The same as [`normalize_flat`] of [`FlatProfile::from_prost`].
pub fn normalize(
    profile: &Profile,
    ctx: SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<NormalizedProfile, DecodeError> {
    normalize_flat(&FlatProfile::from_prost(profile), ctx, limits)
}

/// Turns a decoded pprof into normalized series, one per sample type (and per distinct set of
/// string sample labels).
pub fn normalize_flat(
    profile: &FlatProfile<'_>,
    ctx: SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<NormalizedProfile, DecodeError> {
    if profile.sample_type.is_empty() {
        return Err(DecodeError::NoSampleTypes);
    }
    if profile.strings.first().is_none_or(|s| !s.is_empty()) {
        return Err(DecodeError::BadStringTable);
    }
    if profile.samples.len() > limits.max_samples {
        return Err(DecodeError::TooManySamples {
            count: profile.samples.len(),
            max: limits.max_samples,
        });
    }
    let strings = Strings(&profile.strings);

    // Profile types, one per sample type.
    let (period_type, period_unit) = match profile.period_type {
        Some((ty, unit)) => (strings.get(ty)?, strings.get(unit)?),
        None => ("", ""),
    };
    let mut types = Vec::with_capacity(profile.sample_type.len());
    for &(ty, unit) in &profile.sample_type {
        let sample_type = strings.get(ty)?;
        let sample_unit = strings.get(unit)?;
        let family = ctx.family.unwrap_or_else(|| default_family(sample_type));
        let parts = [family, sample_type, sample_unit, period_type, period_unit];
        if sample_type.is_empty() || family.is_empty() || parts.iter().any(|p| p.contains(':')) {
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

    // Functions: id → (name, file).
    let mut functions: IdIndex<(&str, &str)> = IdIndex::new(profile.functions.len());
    for f in &profile.functions {
        let entry = (strings.get(f.name)?, strings.get(f.filename)?);
        if f.id == 0 || !functions.insert(f.id, entry) {
            return Err(DecodeError::BadId {
                kind: "function",
                id: f.id,
            });
        }
    }
    let mut mappings: IdIndex<&str> = IdIndex::new(profile.mappings.len());
    for m in &profile.mappings {
        if m.id == 0 || !mappings.insert(m.id, strings.get(m.filename)?) {
            return Err(DecodeError::BadId {
                kind: "mapping",
                id: m.id,
            });
        }
    }

    // Locations: id → a range of `frames`, innermost first. Each frame is hashed once here;
    // a stack's ID is then a hash of a few dozen integers, and its frames are built only if
    // the stack is new to the caller.
    let mut frames: Vec<FrameRef<'_>> = Vec::with_capacity(profile.lines.len() + 16);
    // The [`frame_hash`] of each of `frames`, packed: what every sample reads, one cache line
    // per eight frames (the frames themselves are read only for stacks new to the caller).
    let mut frame_hashes: Vec<u64> = Vec::with_capacity(profile.lines.len() + 16);
    // Location ID → the range of its frames (as u32s: the index is allocated per profile).
    let mut locations: IdIndex<(u32, u32)> = IdIndex::new(profile.locations.len());
    for loc in &profile.locations {
        let start = frames.len();
        let lines = profile.location_lines(loc);
        for line in lines {
            let Some(&(name, file)) = functions.get(line.function_id) else {
                return Err(DecodeError::UnknownFunction {
                    location: loc.id,
                    function: line.function_id,
                });
            };
            frame_hashes.push(frame_hash(name, file, line.line));
            frames.push(FrameRef {
                function: Cow::Borrowed(name),
                file,
                line: line.line,
            });
        }
        if lines.is_empty() {
            // Unsymbolized: name the frame by its address (and binary, when known).
            let binary = mappings.get(loc.mapping_id).copied().unwrap_or("");
            let name = if binary.is_empty() {
                format!("0x{:x}", loc.address)
            } else {
                format!("{binary}+0x{:x}", loc.address)
            };
            frame_hashes.push(frame_hash(&name, "", 0));
            frames.push(FrameRef {
                function: Cow::Owned(name),
                file: "",
                line: 0,
            });
        }
        if loc.id == 0 || !locations.insert(loc.id, (start as u32, frames.len() as u32)) {
            return Err(DecodeError::BadId {
                kind: "location",
                id: loc.id,
            });
        }
    }

    // A sample label may move a sample to another service; then "known for this service"
    // does not hold for its stacks, and every stack keeps its frames.
    let moves_service = profile.samples.iter().any(|s| {
        profile
            .sample_labels(s)
            .iter()
            .any(|l| l.str != 0 && strings.get(l.key).is_ok_and(|k| k == SERVICE_NAME))
    });
    let known = if moves_service {
        None
    } else {
        ctx.known_stacks
    };
    let mut builder = ProfileBuilder::new(limits.max_stack_depth).with_known_stacks(known);
    builder.reserve_stacks(profile.samples.len());
    let base: Vec<usize> = types
        .iter()
        .map(|pt| builder.series(ctx.labels, pt))
        .collect();
    for &series in &base {
        // Most samples of most profiles carry no string label: room for all of them.
        builder.reserve_samples(series, profile.samples.len());
    }
    // Series per distinct set of sample labels, keyed by the sample's (key, str) indices:
    // `series_sets[i]` holds one series index per sample type; set 0 is the unlabelled one.
    let mut series_sets: Vec<Vec<usize>> = vec![base];
    let mut labelled: HashMap<Vec<(i64, i64)>, usize> = HashMap::default();
    let mut label_key: Vec<(i64, i64)> = Vec::new();
    let mut stack_cache: HashMap<&[u64], u64> =
        HashMap::with_capacity_and_hasher(profile.samples.len(), Default::default());
    let mut shared: HashMap<&str, Arc<str>> = HashMap::default();
    let mut hashes: Vec<u64> = Vec::with_capacity(64);

    for sample in &profile.samples {
        let values = profile.sample_values(sample);
        let location_ids = profile.sample_location_ids(sample);
        if values.len() != types.len() {
            return Err(DecodeError::ValueCount {
                got: values.len(),
                want: types.len(),
            });
        }
        let stack = match stack_cache.entry(location_ids) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                hashes.clear();
                for &id in location_ids {
                    let Some(&(start, end)) = locations.get(id) else {
                        return Err(DecodeError::UnknownLocation(id));
                    };
                    let (start, end) = (start as usize, end as usize);
                    if end == start + 1 {
                        // One line per location (nearly all): a push, not an extend.
                        hashes.push(frame_hashes[start]);
                    } else {
                        hashes.extend_from_slice(&frame_hashes[start..end]);
                    }
                }
                let id = builder.stack_hashed(&mut hashes, |keep| {
                    location_ids
                        .iter()
                        .filter_map(|id| locations.get(*id))
                        .flat_map(|&(start, end)| &frames[start as usize..end as usize])
                        .take(keep)
                        .map(|f| f.to_frame(&mut shared))
                        .collect()
                });
                *e.insert(id)
            }
        };
        let set = sample_series(
            profile.sample_labels(sample),
            &strings,
            &types,
            &mut label_key,
            &mut labelled,
            &mut series_sets,
            &mut builder,
            &ctx,
            limits,
        )?;
        let series = &series_sets[set];
        for (i, value) in values.iter().enumerate() {
            builder.add(series[i], stack, *value)?;
        }
    }

    let time_us = if profile.time_nanos != 0 {
        profile.time_nanos / 1_000
    } else {
        ctx.now_us
    };
    Ok(builder.finish(time_us, profile.duration_nanos.max(0) / 1_000))
}

/// A frame of a location, borrowed from the profile.
struct FrameRef<'a> {
    function: Cow<'a, str>,
    file: &'a str,
    line: i64,
}

impl<'a> FrameRef<'a> {
    /// The owned frame; each distinct string becomes one shared allocation per profile.
    fn to_frame(&'a self, shared: &mut HashMap<&'a str, Arc<str>>) -> Frame {
        let mut share = |s: &'a str| shared.entry(s).or_insert_with(|| Arc::from(s)).clone();
        Frame {
            function: share(&self.function),
            file: share(self.file),
            line: self.line,
        }
    }
}

/// pprof ID (function, mapping, location) → value. Writers number IDs 1..=N, so IDs up to a small
/// multiple of the count index a vector, with no hashing; others go to a map.
struct IdIndex<T> {
    dense: Vec<Option<T>>,
    sparse: HashMap<u64, T>,
}

impl<T> IdIndex<T> {
    fn new(count: usize) -> Self {
        let mut dense = Vec::new();
        dense.resize_with(count.saturating_mul(2).saturating_add(1), || None);
        Self {
            dense,
            sparse: HashMap::default(),
        }
    }

    /// False when `id` is already present (the value is then not stored).
    fn insert(&mut self, id: u64, value: T) -> bool {
        match usize::try_from(id).ok().and_then(|i| self.dense.get_mut(i)) {
            Some(slot @ None) => {
                *slot = Some(value);
                true
            }
            Some(Some(_)) => false,
            None => match self.sparse.entry(id) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(value);
                    true
                }
            },
        }
    }

    fn get(&self, id: u64) -> Option<&T> {
        match usize::try_from(id).ok().and_then(|i| self.dense.get(i)) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&id),
        }
    }
}

/// Which of `series_sets` (one series index per sample type) a sample belongs to, by its
/// string labels; a label set seen for the first time adds its series and set. `key` is
/// scratch space, reused across samples.
#[allow(clippy::too_many_arguments)]
fn sample_series(
    sample_labels: &[FlatLabel],
    strings: &Strings<'_, '_>,
    types: &[ProfileType],
    key: &mut Vec<(i64, i64)>,
    labelled: &mut HashMap<Vec<(i64, i64)>, usize>,
    series_sets: &mut Vec<Vec<usize>>,
    builder: &mut ProfileBuilder,
    ctx: &SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<usize, DecodeError> {
    key.clear();
    for l in sample_labels {
        if l.str == 0 {
            continue; // numeric label: not a series dimension
        }
        let name = strings.get(l.key)?;
        strings.get(l.str)?;
        if !DROPPED_SAMPLE_LABELS.contains(&name) {
            key.push((l.key, l.str));
        }
    }
    if key.is_empty() {
        return Ok(0);
    }
    key.sort_unstable();
    if let Some(&set) = labelled.get(key.as_slice()) {
        return Ok(set);
    }
    let mut extra = Vec::with_capacity(key.len());
    for (k, v) in key.iter() {
        extra.push((strings.get(*k)?.to_owned(), strings.get(*v)?.to_owned()));
    }
    let labels = ctx.labels.merged_with(&extra, &limits.labels)?;
    let series: Vec<usize> = types.iter().map(|pt| builder.series(&labels, pt)).collect();
    series_sets.push(series);
    labelled.insert(key.clone(), series_sets.len() - 1);
    Ok(series_sets.len() - 1)
}
