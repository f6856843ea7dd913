//! Pyroscope's legacy HTTP ingest: `POST /ingest` (and `/pyroscope/ingest`).
//!
//! ```text
//!  ?name=app.cpu{env=prod,region=eu}&from=…&until=…&format=pprof|folded&sampleRate=100
//!         │                              │                 │
//!    parse_name ──▶ labels + kind   parse_time (s/ms/µs/ns)  body: pprof (raw or gzip)
//!                                                                or folded lines `a;b;c 12`
//! ```
//!
//! Supported formats: `pprof` (raw, gzip, or multipart with `profile` and
//! `sample_type_config` parts, as the Go and Python SDKs send) and `folded` (the default).
//! The `lines`, `trie`, `tree`, `jfr` and `speedscope` formats are refused with 415 and a
//! message naming what is missing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use stackdrift_model::labels::SERVICE_NAME;
use stackdrift_model::pprof::{is_gzip, read_capped};
use stackdrift_model::{
    DecodeLimits, Frame, Labels, NormalizedProfile, ProfileBuilder, ProfileType, SeriesContext,
};

use crate::error::IngestError;
use crate::http::{admit, request_body};
use crate::push::{Ingester, series_labels};

/// Profile kinds a `name` may end with (`app.cpu`, `app.alloc_space`, …).
const KINDS: [&str; 13] = [
    "cpu",
    "itimer",
    "wall",
    "alloc_objects",
    "alloc_space",
    "inuse_objects",
    "inuse_space",
    "goroutines",
    "mutex_count",
    "mutex_duration",
    "block_count",
    "block_duration",
    "exceptions",
];

/// The parts of a `name` query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName {
    /// Application name, without the kind suffix.
    pub app: String,
    /// The kind suffix, if the name had a known one.
    pub kind: Option<String>,
    /// Labels between the braces, in order.
    pub labels: Vec<(String, String)>,
}

/// Parses `app.name.kind{key=value,key2=value2}`.
pub fn parse_name(name: &str) -> Result<AppName, IngestError> {
    let bad = |why: &str| IngestError::BadRequest(format!("invalid name {name:?}: {why}"));
    let name = name.trim();
    let (head, labels) = match name.find('{') {
        None => (name, Vec::new()),
        Some(open) => {
            let Some(body) = name[open + 1..].strip_suffix('}') else {
                return Err(bad("labels must end with '}'"));
            };
            let mut labels = Vec::new();
            for pair in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(bad("labels are key=value pairs"));
                };
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                labels.push((k.trim().to_owned(), v.to_owned()));
            }
            (&name[..open], labels)
        }
    };
    let head = head.trim();
    let (app, kind) = match head.rsplit_once('.') {
        Some((app, kind)) if KINDS.contains(&kind) && !app.is_empty() => {
            (app, Some(kind.to_owned()))
        }
        _ => (head, None),
    };
    if app.is_empty() {
        return Err(bad("the application name is empty"));
    }
    Ok(AppName {
        app: app.to_owned(),
        kind,
        labels,
    })
}

/// Parses a unix time whose unit is given by its digit count: 10 = s, 13 = ms, 16 = µs,
/// 19 = ns (other lengths are read as the nearest of those). Returns µs.
pub fn parse_time(s: &str) -> Result<i64, IngestError> {
    let s = s.trim();
    let v: i64 = s
        .parse()
        .map_err(|_| IngestError::BadRequest(format!("invalid time {s:?}: not an integer")))?;
    if v < 0 {
        return Err(IngestError::BadRequest(format!(
            "invalid time {s:?}: negative"
        )));
    }
    let digits = s.trim_start_matches('+').len();
    Ok(match digits {
        0..=11 => v.saturating_mul(1_000_000),
        12..=14 => v.saturating_mul(1_000),
        15..=17 => v,
        _ => v / 1_000,
    })
}

/// The profile family of a kind (`cpu` → `process_cpu`, `alloc_space` → `memory`, …).
fn family(kind: &str) -> &'static str {
    match kind {
        "wall" => "wall",
        k if k.starts_with("alloc_") || k.starts_with("inuse_") => "memory",
        "goroutines" => "goroutine",
        k if k.starts_with("mutex_") => "mutex",
        k if k.starts_with("block_") => "block",
        "exceptions" => "exceptions",
        _ => "process_cpu",
    }
}

/// The profile type folded samples of `kind` are stored as, and the factor each count is
/// multiplied by (CPU sample counts become nanoseconds at `sample_rate` Hz).
///
/// Public for the fuzz targets (fuzz/), which drive the `/ingest` parsers directly.
pub fn folded_type(kind: &str, sample_rate: u32) -> (ProfileType, i64) {
    let t = |n: &str, st: &str, su: &str, pt: &str, pu: &str| ProfileType {
        name: n.into(),
        sample_type: st.into(),
        sample_unit: su.into(),
        period_type: pt.into(),
        period_unit: pu.into(),
    };
    let period = 1_000_000_000 / i64::from(sample_rate.max(1));
    match kind {
        "wall" => (
            t("wall", "wall", "nanoseconds", "wall", "nanoseconds"),
            period,
        ),
        "alloc_objects" | "inuse_objects" => (t("memory", kind, "count", "space", "bytes"), 1),
        "alloc_space" | "inuse_space" => (t("memory", kind, "bytes", "space", "bytes"), 1),
        "goroutines" => (
            t("goroutine", "goroutine", "count", "goroutine", "count"),
            1,
        ),
        "mutex_count" | "block_count" => (
            t(family(kind), "contentions", "count", "contentions", "count"),
            1,
        ),
        "mutex_duration" | "block_duration" => (
            t(family(kind), "delay", "nanoseconds", "contentions", "count"),
            1,
        ),
        "exceptions" => (
            t("exceptions", "exceptions", "count", "exceptions", "count"),
            1,
        ),
        _ => (
            t("process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds"),
            period,
        ),
    }
}

/// Parses folded stacks (`root;caller;leaf count` per line) into one profile.
pub fn parse_folded(
    text: &str,
    labels: &Labels,
    profile_type: &ProfileType,
    factor: i64,
    limits: &DecodeLimits,
) -> Result<ProfileBuilder<'static>, IngestError> {
    let mut b = ProfileBuilder::new(limits.max_stack_depth);
    let series = b.series(labels, profile_type);
    let mut lines = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        if lines > limits.max_samples {
            return Err(IngestError::TooLarge(format!(
                "folded profile has more than {} lines (the samples-per-profile limit)",
                limits.max_samples
            )));
        }
        let bad = |why: &str| IngestError::BadRequest(format!("folded line {}: {why}", i + 1));
        let Some((stack, count)) = line.rsplit_once(' ') else {
            return Err(bad("expected `frame;frame;… COUNT`"));
        };
        let count: i64 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not an integer"))?;
        if count < 0 {
            return Err(bad("negative count"));
        }
        if count == 0 {
            continue;
        }
        let value = count
            .checked_mul(factor)
            .ok_or_else(|| bad("count overflows"))?;
        let frames: Vec<Frame> = stack.split(';').rev().map(Frame::named).collect();
        let id = b.stack(frames);
        b.add(series, id, value).map_err(|e| bad(&e.to_string()))?;
    }
    Ok(b)
}

/// `POST /ingest`.
pub async fn ingest(
    State(ingester): State<Arc<Ingester>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (tenant, _permit) = match admit(&ingester, &headers, body.len()) {
        Ok(t) => t,
        Err(e) => return reject(&ingester, e),
    };
    let profile = match decode(&ingester, &tenant, &params, &headers, &body) {
        Ok(p) => p,
        Err(e) => return reject(&ingester, e),
    };
    // The body is not needed past decoding; the push may wait a while for its commit.
    let body_bytes = body.len();
    drop(body);
    let result = ingester.push_normalized(&tenant, vec![profile]).await;
    ingester.account(&tenant, body_bytes, &result);
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_response(&e),
    }
}

fn decode(
    ingester: &Ingester,
    tenant: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<NormalizedProfile, IngestError> {
    let limits = ingester.limits_for(tenant).decode;
    let name = params
        .get("name")
        .ok_or_else(|| IngestError::BadRequest("missing query parameter `name`".into()))?;
    let name = parse_name(name)?;
    let now_us = ingester.now_us();
    let from = params.get("from").map(|s| parse_time(s)).transpose()?;
    let until = params.get("until").map(|s| parse_time(s)).transpose()?;
    let sample_rate: u32 = match params.get("sampleRate") {
        None => 100,
        Some(s) => s.parse().ok().filter(|r| *r > 0).ok_or_else(|| {
            IngestError::BadRequest(format!("invalid sampleRate {s:?}: a positive integer"))
        })?,
    };
    // The application name is the service unless the labels name one.
    let has_service = name.labels.iter().any(|(k, _)| k == SERVICE_NAME);
    let pairs = name
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain((!has_service).then_some((SERVICE_NAME, name.app.as_str())));
    let (labels, _) = series_labels(pairs, &limits)
        .map_err(|source| IngestError::Labels { series: 0, source })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let family = name.kind.as_deref().map(family);
    // Decoding context; stacks already committed for this service are not rebuilt.
    let with_ctx =
        |decode: &mut dyn FnMut(SeriesContext<'_>) -> Result<NormalizedProfile, IngestError>| {
            ingester.with_committed_stacks(tenant, labels.service_name(), |known_stacks| {
                decode(SeriesContext {
                    labels: &labels,
                    family,
                    now_us,
                    known_stacks,
                })
            })
        };
    if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        let mut profile =
            with_ctx(&mut |ctx| decode_multipart(content_type, headers, body, ctx, &limits))?;
        apply_window(&mut profile, from, until);
        return Ok(profile);
    }
    let format = params.get("format").map(String::as_str).unwrap_or("folded");
    let mut profile = match format {
        "pprof" => {
            let raw = request_body(headers, body, limits.max_uncompressed_bytes)?;
            with_ctx(&mut |ctx| {
                stackdrift_model::decode_pprof(&raw, ctx, &limits).map_err(|source| {
                    IngestError::Decode {
                        series: 0,
                        profile: 0,
                        source,
                    }
                })
            })?
        }
        "folded" => {
            let raw = request_body(headers, body, limits.max_uncompressed_bytes)?;
            // Some clients gzip the body without saying so.
            let raw = if is_gzip(&raw) {
                read_capped(&raw, limits.max_uncompressed_bytes)
                    .map(Bytes::from)
                    .map_err(|e| IngestError::TooLarge(format!("folded body: {e}")))?
            } else {
                raw
            };
            let text = std::str::from_utf8(&raw)
                .map_err(|_| IngestError::BadRequest("folded body is not valid UTF-8".into()))?;
            let (profile_type, factor) =
                folded_type(name.kind.as_deref().unwrap_or("cpu"), sample_rate);
            let b = parse_folded(text, &labels, &profile_type, factor, &limits)?;
            b.finish(now_us, 0)
        }
        other => {
            return Err(IngestError::UnsupportedMediaType(format!(
                "format={other} (supported: pprof, folded)"
            )));
        }
    };
    apply_window(&mut profile, from, until);
    Ok(profile)
}

/// The client's `from`/`until` window wins over the profile's own clock.
fn apply_window(profile: &mut NormalizedProfile, from: Option<i64>, until: Option<i64>) {
    if let Some(from) = from {
        profile.time_us = from;
        if let Some(until) = until {
            profile.duration_us = until.saturating_sub(from).max(0);
        }
    }
}

/// How an SDK describes one sample type in the `sample_type_config` part.
#[derive(Debug, Default, Deserialize)]
struct SampleTypeConfig {
    units: Option<String>,
}

/// A multipart body: part `profile` (pprof, raw or gzip) and optionally `sample_type_config`
/// (JSON: sample type → `{units, display-name, aggregation, cumulative, sampled}`). With a
/// config, only the sample types it names are stored, and its `units` fill in a unit the pprof
/// leaves empty; the other keys describe how Pyroscope's old UI showed a type and are ignored
/// (values are stored as sent: current SDKs send deltas, never cumulative counters). Other
/// parts (`prev_profile` of old Go SDKs) are ignored.
fn decode_multipart(
    content_type: &str,
    headers: &HeaderMap,
    body: &Bytes,
    ctx: SeriesContext<'_>,
    limits: &DecodeLimits,
) -> Result<NormalizedProfile, IngestError> {
    let bad = |e: String| IngestError::BadRequest(format!("multipart body: {e}"));
    let boundary = crate::multipart::boundary(content_type).map_err(bad)?;
    let raw = request_body(
        headers,
        body,
        limits.max_uncompressed_bytes.saturating_mul(2),
    )?;
    let parts = crate::multipart::parse(&raw, &boundary, 16).map_err(bad)?;
    let profile_part = parts
        .iter()
        .find(|p| p.name == "profile")
        .ok_or_else(|| bad("no part named \"profile\"".into()))?;
    let config: Option<HashMap<String, SampleTypeConfig>> = parts
        .iter()
        .find(|p| p.name == "sample_type_config")
        .map(|p| {
            serde_json::from_slice(p.data)
                .map_err(|e| bad(format!("sample_type_config is not valid JSON: {e}")))
        })
        .transpose()?;
    let decode_err = |source| IngestError::Decode {
        series: 0,
        profile: 0,
        source,
    };
    let mut profile =
        stackdrift_model::pprof::decode_profile(profile_part.data, limits.max_uncompressed_bytes)
            .map_err(decode_err)?;
    if let Some(config) = config {
        select_sample_types(&mut profile, &config)?;
    }
    stackdrift_model::pprof::normalize(&profile, ctx, limits).map_err(decode_err)
}

/// Keeps the sample types `config` names, filling in empty units from it.
fn select_sample_types(
    profile: &mut stackdrift_proto::pprof::Profile,
    config: &HashMap<String, SampleTypeConfig>,
) -> Result<(), IngestError> {
    let name = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let mut keep = Vec::with_capacity(profile.sample_type.len());
    for (i, vt) in profile.sample_type.iter().enumerate() {
        if let Some(c) = config.get(&name(vt.r#type)) {
            keep.push((i, c.units.clone().filter(|_| name(vt.unit).is_empty())));
        }
    }
    if keep.is_empty() {
        let declared: Vec<String> = profile
            .sample_type
            .iter()
            .map(|vt| name(vt.r#type))
            .collect();
        return Err(IngestError::Unprocessable(format!(
            "none of the profile's sample types {declared:?} is named in sample_type_config"
        )));
    }
    let mut types = Vec::with_capacity(keep.len());
    for (i, units) in &keep {
        let mut vt = profile.sample_type[*i];
        if let Some(u) = units {
            vt.unit = profile.string_table.len() as i64;
            profile.string_table.push(u.clone());
        }
        types.push(vt);
    }
    profile.sample_type = types;
    for sample in &mut profile.sample {
        // A sample with the wrong value count is left as is, for normalize to reject.
        if sample.value.len() > keep.iter().map(|(i, _)| *i).max().unwrap_or(0) {
            sample.value = keep.iter().map(|(i, _)| sample.value[*i]).collect();
        }
    }
    Ok(())
}

fn reject(ingester: &Ingester, e: IngestError) -> Response {
    ingester.reject(&e);
    error_response(&e)
}

/// Pyroscope answers `/ingest` errors with a status and a one-line text.
fn error_response(e: &IngestError) -> Response {
    let status = e.http_status();
    let mut resp = (status, format!("{e}\n")).into_response();
    if let Some(v) = e.retry_after_header() {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackdrift_model::LabelLimits;

    #[test]
    fn names() {
        let n = parse_name("my.app.cpu{env=prod, region = \"eu-west\"}").unwrap();
        assert_eq!(n.app, "my.app");
        assert_eq!(n.kind.as_deref(), Some("cpu"));
        assert_eq!(
            n.labels,
            vec![
                ("env".into(), "prod".into()),
                ("region".into(), "eu-west".into())
            ]
        );
        let n = parse_name("my.app").unwrap();
        assert_eq!((n.app.as_str(), n.kind), ("my.app", None));
        assert_eq!(
            parse_name("svc.alloc_space{}").unwrap().kind.as_deref(),
            Some("alloc_space")
        );
        for bad in ["", "{a=b}", "app{a=b", "app{ab}", ".cpu{x=y"] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_by_digit_count() {
        let us = 1_700_000_000_000_000;
        assert_eq!(parse_time("1700000000").unwrap(), us);
        assert_eq!(parse_time("1700000000000").unwrap(), us);
        assert_eq!(parse_time("1700000000000000").unwrap(), us);
        assert_eq!(parse_time("1700000000000000000").unwrap(), us);
        assert!(parse_time("-5").is_err());
        assert!(parse_time("soon").is_err());
    }

    #[test]
    fn folded_stacks() {
        let labels = Labels::new([("service_name", "app")], &LabelLimits::default()).unwrap();
        let (pt, factor) = folded_type("cpu", 100);
        assert_eq!(pt.id(), "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(factor, 10_000_000);
        let text = "main;work;hash 3\nmain;work;hash 2\r\n\nmain;idle 1\nmain 0\n";
        let p = parse_folded(text, &labels, &pt, factor, &DecodeLimits::default())
            .unwrap()
            .finish(1, 0);
        assert_eq!(p.series.len(), 1);
        let mut values: Vec<i64> = p.series[0].samples.iter().map(|s| s.1).collect();
        values.sort();
        assert_eq!(values, vec![10_000_000, 50_000_000]);
        let hash = p.stacks.iter().find(|s| s.frames.len() == 3).unwrap();
        assert_eq!(&*hash.frames[0].function, "hash", "leaf first");
        for (bad, why) in [
            ("main;x", "expected"),
            ("main;x y", "not an integer"),
            ("main;x -1", "negative"),
        ] {
            let e = parse_folded(bad, &labels, &pt, 1, &DecodeLimits::default())
                .err()
                .unwrap();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        let limits = DecodeLimits {
            max_samples: 2,
            ..DecodeLimits::default()
        };
        let e = parse_folded("a 1\nb 1\nc 1\n", &labels, &pt, 1, &limits)
            .err()
            .unwrap();
        assert_eq!(e.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
