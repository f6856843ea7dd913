//! pprof decoding: bytes (gzipped or raw) → [`Profile`] → [`NormalizedProfile`].
//!
//! ```text
//!  bytes ─▶ read_capped (gunzip, stops at the cap) ─▶ prost decode ─▶ validate indices
//!        ─▶ per sample: locations → frames (leaf first) → stack_id
//!        ─▶ per sample type: one series, values summed per stack
//! ```

// Keys here are stack hashes, IDs and short slices: Fx hashing, not SipHash (a profile
// hashes every sample several times, and nothing here is attacker-keyed at scale).
use rustc_hash::FxHashMap as HashMap;
use std::io::Read;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use prost::Message;
use serde::{Deserialize, Serialize};
use stackdrift_proto::pprof::Profile;

use crate::error::DecodeError;
use crate::labels::{DROPPED_SAMPLE_LABELS, LabelLimits, Labels};
use crate::normalized::{NormalizedProfile, ProfileBuilder};
use crate::profile_type::{ProfileType, default_family};
use crate::stack::Frame;

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
/// Decompression stops at `max + 1` bytes, so a gzip bomb costs at most the cap.
pub fn read_capped(bytes: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    if !is_gzip(bytes) {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge { max });
        }
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max));
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

/// Decodes a pprof protobuf, gzipped or raw.
pub fn decode_profile(bytes: &[u8], max_uncompressed: usize) -> Result<Profile, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let raw = read_capped(bytes, max_uncompressed)?;
    if raw.is_empty() {
        return Err(DecodeError::Empty);
    }
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
#[derive(Debug, Clone, Copy)]
pub struct SeriesContext<'a> {
    /// Validated series labels (`service_name` included).
    pub labels: &'a Labels,
    /// Profile family (`__name__`); inferred from the sample type when `None`.
    pub family: Option<&'a str>,
    /// Time to use when the profile carries none, µs since the epoch.
    pub now_us: i64,
}

/// Decodes and normalizes a pprof payload in one step.
pub fn decode_pprof(
    bytes: &[u8],
    ctx: SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<NormalizedProfile, DecodeError> {
    let profile = decode_profile(bytes, limits.max_uncompressed_bytes)?;
    normalize(&profile, ctx, limits)
}

struct Strings<'a>(&'a [String]);

impl<'a> Strings<'a> {
    fn get(&self, index: i64) -> Result<&'a str, DecodeError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(String::as_str)
            .ok_or(DecodeError::StringIndex {
                index,
                len: self.0.len(),
            })
    }
}

/// Turns a decoded pprof into normalized series, one per sample type (and per distinct set of
/// string sample labels).
pub fn normalize(
    profile: &Profile,
    ctx: SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<NormalizedProfile, DecodeError> {
    if profile.sample_type.is_empty() {
        return Err(DecodeError::NoSampleTypes);
    }
    if profile.string_table.first().is_none_or(|s| !s.is_empty()) {
        return Err(DecodeError::BadStringTable);
    }
    if profile.sample.len() > limits.max_samples {
        return Err(DecodeError::TooManySamples {
            count: profile.sample.len(),
            max: limits.max_samples,
        });
    }
    let strings = Strings(&profile.string_table);

    // Profile types, one per sample type.
    let (period_type, period_unit) = match &profile.period_type {
        Some(vt) => (strings.get(vt.r#type)?, strings.get(vt.unit)?),
        None => ("", ""),
    };
    let mut types = Vec::with_capacity(profile.sample_type.len());
    for vt in &profile.sample_type {
        let sample_type = strings.get(vt.r#type)?;
        let sample_unit = strings.get(vt.unit)?;
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
    // Each name becomes one shared string, however many frames use it.
    fn share<'s>(shared: &mut HashMap<&'s str, Arc<str>>, s: &'s str) -> Arc<str> {
        shared.entry(s).or_insert_with(|| Arc::from(s)).clone()
    }
    let mut shared: HashMap<&str, Arc<str>> =
        HashMap::with_capacity_and_hasher(profile.function.len() * 2, Default::default());
    let mut functions: HashMap<u64, (Arc<str>, Arc<str>)> =
        HashMap::with_capacity_and_hasher(profile.function.len(), Default::default());
    for f in &profile.function {
        let entry = (
            share(&mut shared, strings.get(f.name)?),
            share(&mut shared, strings.get(f.filename)?),
        );
        if f.id == 0 || functions.insert(f.id, entry).is_some() {
            return Err(DecodeError::BadId {
                kind: "function",
                id: f.id,
            });
        }
    }
    let mut mappings: HashMap<u64, &str> =
        HashMap::with_capacity_and_hasher(profile.mapping.len(), Default::default());
    for m in &profile.mapping {
        if m.id == 0 || mappings.insert(m.id, strings.get(m.filename)?).is_some() {
            return Err(DecodeError::BadId {
                kind: "mapping",
                id: m.id,
            });
        }
    }

    // Locations: id → frames, innermost first.
    let mut locations: HashMap<u64, Vec<Frame>> =
        HashMap::with_capacity_and_hasher(profile.location.len(), Default::default());
    for loc in &profile.location {
        let mut frames = Vec::with_capacity(loc.line.len().max(1));
        for line in &loc.line {
            let (name, file) =
                functions
                    .get(&line.function_id)
                    .ok_or(DecodeError::UnknownFunction {
                        location: loc.id,
                        function: line.function_id,
                    })?;
            frames.push(Frame {
                function: name.clone(),
                file: file.clone(),
                line: line.line,
            });
        }
        if frames.is_empty() {
            // Unsymbolized: name the frame by its address (and binary, when known).
            let binary = mappings.get(&loc.mapping_id).copied().unwrap_or("");
            let name = if binary.is_empty() {
                format!("0x{:x}", loc.address)
            } else {
                format!("{binary}+0x{:x}", loc.address)
            };
            frames.push(Frame::named(name));
        }
        if loc.id == 0 || locations.insert(loc.id, frames).is_some() {
            return Err(DecodeError::BadId {
                kind: "location",
                id: loc.id,
            });
        }
    }

    let mut builder = ProfileBuilder::new(limits.max_stack_depth);
    let base: Vec<usize> = types
        .iter()
        .map(|pt| builder.series(ctx.labels, pt))
        .collect();
    // Series per distinct set of sample labels, keyed by the sample's (key, str) indices.
    let mut labelled: HashMap<Vec<(i64, i64)>, Vec<usize>> = HashMap::default();
    let mut stack_cache: HashMap<&[u64], u64> = HashMap::default();

    for sample in &profile.sample {
        if sample.value.len() != types.len() {
            return Err(DecodeError::ValueCount {
                got: sample.value.len(),
                want: types.len(),
            });
        }
        let stack = match stack_cache.get(sample.location_id.as_slice()) {
            Some(id) => *id,
            None => {
                let mut frames = Vec::with_capacity(sample.location_id.len());
                for id in &sample.location_id {
                    let loc = locations.get(id).ok_or(DecodeError::UnknownLocation(*id))?;
                    frames.extend(loc.iter().cloned());
                }
                let id = builder.stack(frames);
                stack_cache.insert(sample.location_id.as_slice(), id);
                id
            }
        };
        let series = sample_series(
            sample,
            &strings,
            &base,
            &types,
            &mut labelled,
            &mut builder,
            &ctx,
            limits,
        )?;
        for (i, value) in sample.value.iter().enumerate() {
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

/// The series indices (one per sample type) a sample belongs to, by its string labels.
#[allow(clippy::too_many_arguments)]
fn sample_series(
    sample: &stackdrift_proto::pprof::Sample,
    strings: &Strings<'_>,
    base: &[usize],
    types: &[ProfileType],
    labelled: &mut HashMap<Vec<(i64, i64)>, Vec<usize>>,
    builder: &mut ProfileBuilder,
    ctx: &SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<Vec<usize>, DecodeError> {
    let mut key: Vec<(i64, i64)> = Vec::new();
    for l in &sample.label {
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
        return Ok(base.to_vec());
    }
    key.sort_unstable();
    if let Some(series) = labelled.get(&key) {
        return Ok(series.clone());
    }
    let mut extra = Vec::with_capacity(key.len());
    for (k, v) in &key {
        extra.push((strings.get(*k)?.to_owned(), strings.get(*v)?.to_owned()));
    }
    let labels = ctx.labels.merged_with(&extra, &limits.labels)?;
    let series: Vec<usize> = types.iter().map(|pt| builder.series(&labels, pt)).collect();
    labelled.insert(key, series.clone());
    Ok(series)
}
