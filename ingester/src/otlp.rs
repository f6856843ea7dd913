//! OTLP profiles (`opentelemetry.proto.collector.profiles.v1development`): gRPC
//! `ProfilesService/Export` and `POST /v1development/profiles` (protobuf or JSON).
//!
//! ```text
//!  ExportProfilesServiceRequest ─ dictionary (strings, functions, locations, stacks, attributes)
//!   └ ResourceProfiles (resource attributes)
//!      └ ScopeProfiles (scope attributes)
//!         └ Profile (sample_type, period_type, time, attribute_indices)
//!            └ Sample (stack_index, values | timestamps, attribute_indices)
//! ```
//!
//! Mapping (documented for users in docs/ARCHITECTURE.md, "OTLP profiles"):
//! - `service.name` (resource, else scope or profile attribute) → `service_name`; without it,
//!   `unknown_service:<process.executable.name>` or `unknown_service`, as the OTel spec says.
//! - Every other string, bool, int or double attribute of the resource, the scope and the
//!   profile becomes a series label; a sample's attributes become labels of its own series.
//!   Names are sanitized to label names: each character outside `[A-Za-z0-9_]` becomes `_`
//!   (`k8s.pod.name` → `k8s_pod_name`), a leading digit gets a `_` prefix, and a name that a
//!   table column already uses (`time`, `value`, …) gets an `otel_` prefix. Arrays, maps and
//!   bytes are skipped, and so are per-process and per-request identifiers that would make a
//!   series per process or request ([`DROPPED_ATTRIBUTES`]).
//! - The profile type is `family:sample_type:unit:period_type:period_unit`, the family chosen
//!   as for pprof. CPU samples counted as `samples`/`count` with a `cpu`/`nanoseconds` period
//!   (what the OTel eBPF profiler sends) are stored as `process_cpu:cpu:nanoseconds:…`,
//!   each count multiplied by the period, so they add up with pprof CPU profiles.
//! - A sample's weight is the sum of its `values`, or the number of its `timestamps_unix_nano`
//!   when it has no values. The profile's `time_unix_nano` (else now) dates every sample.
//! - A location's lines are its frames, innermost first; an unsymbolized location is named
//!   `binary+0xADDR` (or `0xADDR`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    KeyValueAndUnit, Profile, ProfilesDictionary,
};
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};
use stackdrift_model::labels::{RESERVED_COLUMNS, SERVICE_NAME};
use stackdrift_model::profile_type::default_family;
use stackdrift_model::{
    DecodeLimits, Frame, Labels, NormalizedProfile, ProfileBuilder, ProfileType,
};

use crate::error::IngestError;
use crate::http::{admit, content_type, request_body};
use crate::push::Ingester;

/// Attribute keys that identify one process, thread or request: not stored as labels, since
/// each value would start a series of its own.
pub const DROPPED_ATTRIBUTES: &[&str] = &[
    "process.pid",
    "process.parent_pid",
    "process.command_line",
    "process.command_args",
    "thread.id",
    "trace_id",
    "span_id",
    "profile_id",
    "span_name",
];

/// Most attributes read from one request (dictionary entries are shared, so this bounds work).
const MAX_PROFILES: usize = 10_000;

/// Converts an export request into normalized profiles (one per OTLP `Profile`).
pub fn convert(
    request: &ExportProfilesServiceRequest,
    limits: &DecodeLimits,
    now_us: i64,
) -> Result<Vec<NormalizedProfile>, IngestError> {
    let empty = ProfilesDictionary::default();
    let dict = Dict(request.dictionary.as_ref().unwrap_or(&empty));
    let mut out = Vec::new();
    for (ri, rp) in request.resource_profiles.iter().enumerate() {
        let resource_attrs: Vec<(String, String)> = rp
            .resource
            .as_ref()
            .map(|r| key_values(&r.attributes))
            .unwrap_or_default();
        for (si, sp) in rp.scope_profiles.iter().enumerate() {
            let scope_attrs: Vec<(String, String)> = sp
                .scope
                .as_ref()
                .map(|s| key_values(&s.attributes))
                .unwrap_or_default();
            for (pi, profile) in sp.profiles.iter().enumerate() {
                if out.len() == MAX_PROFILES {
                    return Err(IngestError::TooLarge(format!(
                        "more than {MAX_PROFILES} profiles in one request"
                    )));
                }
                let at = |e: String| {
                    IngestError::BadRequest(format!(
                        "resource_profiles[{ri}].scope_profiles[{si}].profiles[{pi}]: {e}"
                    ))
                };
                let mut attrs = resource_attrs.clone();
                attrs.extend(scope_attrs.iter().cloned());
                attrs.extend(dict.attributes(&profile.attribute_indices).map_err(at)?);
                out.push(
                    convert_profile(&dict, profile, attrs, limits, now_us).map_err(
                        |e| match e {
                            IngestError::BadRequest(m) => at(m),
                            other => other,
                        },
                    )?,
                );
            }
        }
    }
    Ok(out)
}

fn convert_profile(
    dict: &Dict<'_>,
    profile: &Profile,
    attrs: Vec<(String, String)>,
    limits: &DecodeLimits,
    now_us: i64,
) -> Result<NormalizedProfile, IngestError> {
    if profile.samples.len() > limits.max_samples {
        return Err(IngestError::TooLarge(format!(
            "profile has {} samples, the limit is {}",
            profile.samples.len(),
            limits.max_samples
        )));
    }
    let labels = series_labels(&attrs, &[], limits)?;
    let (profile_type, factor) = profile_type(dict, profile)?;
    let mut b = ProfileBuilder::new(limits.max_stack_depth);
    let base = b.series(&labels, &profile_type);
    let mut stack_ids: HashMap<i32, u64> = HashMap::new();
    let mut labelled: HashMap<Vec<i32>, usize> = HashMap::new();
    for (i, sample) in profile.samples.iter().enumerate() {
        let bad = |e: String| IngestError::BadRequest(format!("samples[{i}]: {e}"));
        let mut value: i64 = 0;
        for v in &sample.values {
            if *v < 0 {
                return Err(bad(format!("negative value {v}")));
            }
            value = value
                .checked_add(*v)
                .ok_or_else(|| bad("values overflow".into()))?;
        }
        if sample.values.is_empty() {
            value = i64::try_from(sample.timestamps_unix_nano.len()).unwrap_or(i64::MAX);
        }
        let value = value
            .checked_mul(factor)
            .ok_or_else(|| bad("value times the period overflows".into()))?;
        if value == 0 {
            continue;
        }
        let stack = match stack_ids.get(&sample.stack_index) {
            Some(id) => *id,
            None => {
                let frames = dict.frames(sample.stack_index).map_err(bad)?;
                let id = b.stack(frames);
                stack_ids.insert(sample.stack_index, id);
                id
            }
        };
        let series = if sample.attribute_indices.is_empty() {
            base
        } else if let Some(s) = labelled.get(&sample.attribute_indices) {
            *s
        } else {
            let extra = dict.attributes(&sample.attribute_indices).map_err(bad)?;
            let labels = series_labels(&attrs, &extra, limits)?;
            let s = b.series(&labels, &profile_type);
            labelled.insert(sample.attribute_indices.clone(), s);
            s
        };
        b.add(series, stack, value)
            .map_err(|e| bad(e.to_string()))?;
    }
    let time_us = if profile.time_unix_nano == 0 {
        now_us
    } else {
        i64::try_from(profile.time_unix_nano / 1_000).unwrap_or(i64::MAX)
    };
    let duration_us = i64::try_from(profile.duration_nano / 1_000).unwrap_or(i64::MAX);
    Ok(b.finish(time_us, duration_us))
}

/// The stored profile type, and the factor each sample value is multiplied by.
fn profile_type(dict: &Dict<'_>, profile: &Profile) -> Result<(ProfileType, i64), IngestError> {
    let bad = IngestError::BadRequest;
    let st = profile
        .sample_type
        .ok_or_else(|| bad("profile has no sample_type".into()))?;
    let sample_type = dict.string(st.type_strindex).map_err(bad)?;
    let sample_unit = dict.string(st.unit_strindex).map_err(bad)?;
    let (period_type, period_unit) = match profile.period_type {
        Some(pt) => (
            dict.string(pt.type_strindex).map_err(bad)?,
            dict.string(pt.unit_strindex).map_err(bad)?,
        ),
        None => ("", ""),
    };
    if sample_type.is_empty() {
        return Err(bad("profile sample_type has an empty type".into()));
    }
    let t = |n: &str, st: &str, su: &str, pt: &str, pu: &str| ProfileType {
        name: n.to_owned(),
        sample_type: st.to_owned(),
        sample_unit: su.to_owned(),
        period_type: pt.to_owned(),
        period_unit: pu.to_owned(),
    };
    if sample_type == "samples"
        && period_type == "cpu"
        && period_unit == "nanoseconds"
        && profile.period > 0
    {
        let pt = t("process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds");
        return Ok((pt, profile.period));
    }
    let pt = t(
        default_family(sample_type),
        sample_type,
        sample_unit,
        period_type,
        period_unit,
    );
    if pt.id().split(':').count() != 5 {
        return Err(bad(format!(
            "sample type {sample_type:?} / {sample_unit:?} contains ':'"
        )));
    }
    Ok((pt, 1))
}

/// Series labels from attributes (later pairs of the same name win) plus sample attributes.
fn series_labels(
    attrs: &[(String, String)],
    extra: &[(String, String)],
    limits: &DecodeLimits,
) -> Result<Labels, IngestError> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut service = None;
    let mut executable = None;
    for (k, v) in attrs.iter().chain(extra) {
        match k.as_str() {
            "service.name" => service = Some(v.clone()),
            "process.executable.name" => executable = Some(v.clone()),
            _ => {}
        }
        if DROPPED_ATTRIBUTES.contains(&k.as_str()) || k == "service.name" {
            continue;
        }
        map.insert(label_name(k), v.clone());
    }
    let service = service
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| match executable {
            Some(e) if !e.is_empty() => format!("unknown_service:{e}"),
            _ => "unknown_service".to_owned(),
        });
    map.insert(SERVICE_NAME.to_owned(), service);
    Labels::new(map, &limits.labels).map_err(|e| IngestError::BadRequest(format!("labels: {e}")))
}

/// An attribute key as a label name.
pub fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if name.starts_with("__") {
        name = format!("otel{}", name.trim_start_matches('_'));
        name.insert(4, '_');
    }
    if name == SERVICE_NAME || RESERVED_COLUMNS.contains(&name.as_str()) {
        name.insert_str(0, "otel_");
    }
    name
}

/// A scalar attribute value as label text; `None` for arrays, maps, bytes and unset values.
fn value_text(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn key_values(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .filter_map(|kv| value_text(kv.value.as_ref()).map(|v| (kv.key.clone(), v)))
        .collect()
}

/// Index lookups into the request's dictionary; index 0 is the "unset" entry.
struct Dict<'a>(&'a ProfilesDictionary);

fn get<'t, T>(table: &'t [T], index: i32, what: &str) -> Result<&'t T, String> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .ok_or_else(|| {
            format!(
                "{what} index {index} out of range (table has {} entries)",
                table.len()
            )
        })
}

impl<'a> Dict<'a> {
    fn string(&self, index: i32) -> Result<&'a str, String> {
        if index == 0 && self.0.string_table.is_empty() {
            return Ok("");
        }
        get(&self.0.string_table, index, "string").map(String::as_str)
    }

    fn attributes(&self, indices: &[i32]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(indices.len());
        for i in indices {
            let a: &KeyValueAndUnit = get(&self.0.attribute_table, *i, "attribute")?;
            let key = self.string(a.key_strindex)?;
            if key.is_empty() {
                continue;
            }
            if let Some(v) = value_text(a.value.as_ref()) {
                out.push((key.to_owned(), v));
            }
        }
        Ok(out)
    }

    /// The frames of a stack, leaf first.
    fn frames(&self, stack_index: i32) -> Result<Vec<Frame>, String> {
        let stack = get(&self.0.stack_table, stack_index, "stack")?;
        let mut frames = Vec::with_capacity(stack.location_indices.len());
        for li in &stack.location_indices {
            let loc = get(&self.0.location_table, *li, "location")?;
            let before = frames.len();
            for line in &loc.lines {
                let f = get(&self.0.function_table, line.function_index, "function")?;
                let name = self.string(f.name_strindex)?;
                let name = if name.is_empty() {
                    self.string(f.system_name_strindex)?
                } else {
                    name
                };
                frames.push(Frame {
                    function: Arc::from(name),
                    file: Arc::from(self.string(f.filename_strindex)?),
                    line: line.line,
                });
            }
            if frames.len() == before {
                let binary = if loc.mapping_index > 0 {
                    let m = get(&self.0.mapping_table, loc.mapping_index, "mapping")?;
                    self.string(m.filename_strindex)?
                } else {
                    ""
                };
                frames.push(Frame::named(if binary.is_empty() {
                    format!("0x{:x}", loc.address)
                } else {
                    format!("{binary}+0x{:x}", loc.address)
                }));
            }
        }
        Ok(frames)
    }
}

/// Decodes the OTLP/HTTP JSON form of an export request (the protobuf JSON mapping: 64-bit
/// integers as numbers or strings, camelCase or original field names, absent fields default).
///
/// The JSON is read against the message descriptors the `opentelemetry-proto` crate ships,
/// as `ProfilesData` (whose fields 1 and 2 are exactly the request's), and re-encoded.
pub fn decode_json(bytes: &[u8]) -> Result<ExportProfilesServiceRequest, IngestError> {
    static DESCRIPTOR: LazyLock<Result<MessageDescriptor, String>> = LazyLock::new(|| {
        let pool = DescriptorPool::decode(opentelemetry_proto::DESCRIPTORS)
            .map_err(|e| format!("OTLP descriptors: {e}"))?;
        pool.get_message_by_name("opentelemetry.proto.profiles.v1development.ProfilesData")
            .ok_or_else(|| "OTLP descriptors lack ProfilesData".to_owned())
    });
    let desc = DESCRIPTOR
        .as_ref()
        .map_err(|e| IngestError::Unavailable(e.clone()))?;
    let bad = |e: String| IngestError::BadRequest(format!("invalid OTLP JSON: {e}"));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message = DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &options)
        .map_err(|e| bad(e.to_string()))?;
    de.end().map_err(|e| bad(e.to_string()))?;
    ExportProfilesServiceRequest::decode(message.encode_to_vec().as_slice())
        .map_err(|e| bad(e.to_string()))
}

// ---- transports -------------------------------------------------------------------------

/// `ProfilesService` over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcProfiles {
    ingester: Arc<Ingester>,
}

impl GrpcProfiles {
    /// A tonic server for `ingester`, accepting gzip-compressed requests.
    pub fn server(ingester: Arc<Ingester>) -> ProfilesServiceServer<Self> {
        let limit = ingester.limits().max_body_bytes();
        ProfilesServiceServer::new(Self { ingester })
            .max_decoding_message_size(limit)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    }
}

#[tonic::async_trait]
impl ProfilesService for GrpcProfiles {
    async fn export(
        &self,
        request: tonic::Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, tonic::Status> {
        let (tenant, request, size, _permit) = crate::grpc::admit(&self.ingester, request)?;
        self.ingester.push_otlp(&tenant, request, size).await?;
        Ok(tonic::Response::new(
            ExportProfilesServiceResponse::default(),
        ))
    }
}

/// `POST /v1development/profiles`: protobuf (`application/x-protobuf`) or JSON
/// (`application/json`), optionally gzip-compressed. The answer uses the request's encoding;
/// errors are a `google.rpc.Status` in that encoding, as OTLP/HTTP specifies.
pub async fn http_export(
    State(ingester): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = content_type(&headers) == "application/json";
    let result = async {
        let (tenant, permit) = admit(&ingester, &headers, body.len())?;
        let limit = ingester.limits_for(&tenant).max_decompressed_bytes;
        let raw = request_body(&headers, &body, limit)?;
        let request = match content_type(&headers).as_str() {
            "application/x-protobuf" | "application/protobuf" | "application/proto" => {
                ExportProfilesServiceRequest::decode(raw.clone()).map_err(|e| {
                    IngestError::BadRequest(format!(
                        "invalid ExportProfilesServiceRequest protobuf: {e}"
                    ))
                })?
            }
            "application/json" => decode_json(&raw)?,
            other => {
                return Err(IngestError::UnsupportedMediaType(format!(
                    "{other} (use application/x-protobuf or application/json)"
                )));
            }
        };
        Ok((tenant, request, permit))
    }
    .await;
    // The body is not needed past decoding; the push may wait a while for its commit.
    let body_bytes = body.len();
    drop(body);
    let result = match result {
        Ok((tenant, request, _permit)) => ingester.push_otlp(&tenant, request, body_bytes).await,
        Err(e) => {
            ingester.reject(&e);
            Err(e)
        }
    };
    match result {
        Ok(()) if json => (
            [(header::CONTENT_TYPE, "application/json")],
            "{}".to_owned(),
        )
            .into_response(),
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportProfilesServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
        Err(e) => {
            let status = RpcStatus {
                code: e.grpc_code() as i32,
                message: e.to_string(),
            };
            let mut resp = if json {
                let body = serde_json::json!({"code": status.code, "message": status.message});
                (
                    e.http_status(),
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            } else {
                (
                    e.http_status(),
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    status.encode_to_vec(),
                )
                    .into_response()
            };
            if let Some(v) = e.retry_after_header() {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

/// `google.rpc.Status`, the OTLP/HTTP error body (details are never sent).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::profiles::v1development::{
        Function, Line, Location, Mapping, ResourceProfiles, Sample, ScopeProfiles, Stack,
        ValueType,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    /// Strings: 0 "", 1 samples, 2 count, 3 cpu, 4 nanoseconds, 5 main, 6 work, 7 app.py,
    /// 8 thread.name, 9 worker-1, 10 libc.so
    fn request() -> ExportProfilesServiceRequest {
        let strings = [
            "",
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "main",
            "work",
            "app.py",
            "thread.name",
            "worker-1",
            "libc.so",
        ];
        let dictionary = ProfilesDictionary {
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            function_table: vec![
                Function::default(),
                Function {
                    name_strindex: 5,
                    filename_strindex: 7,
                    ..Default::default()
                },
                Function {
                    name_strindex: 6,
                    filename_strindex: 7,
                    ..Default::default()
                },
            ],
            mapping_table: vec![
                Mapping::default(),
                Mapping {
                    filename_strindex: 10,
                    ..Default::default()
                },
            ],
            location_table: vec![
                Location::default(),
                Location {
                    lines: vec![Line {
                        function_index: 1,
                        line: 3,
                        column: 0,
                    }],
                    ..Default::default()
                },
                Location {
                    lines: vec![Line {
                        function_index: 2,
                        line: 9,
                        column: 0,
                    }],
                    ..Default::default()
                },
                Location {
                    mapping_index: 1,
                    address: 0x1f,
                    ..Default::default()
                },
            ],
            stack_table: vec![
                Stack::default(),
                Stack {
                    location_indices: vec![2, 1], // work ← main
                },
                Stack {
                    location_indices: vec![3, 2, 1], // libc ← work ← main
                },
            ],
            attribute_table: vec![
                KeyValueAndUnit::default(),
                KeyValueAndUnit {
                    key_strindex: 8,
                    value: Some(AnyValue {
                        value: Some(s("worker-1")),
                    }),
                    unit_strindex: 0,
                },
            ],
            ..Default::default()
        };
        let profile = Profile {
            sample_type: Some(ValueType {
                type_strindex: 1,
                unit_strindex: 2,
            }),
            period_type: Some(ValueType {
                type_strindex: 3,
                unit_strindex: 4,
            }),
            period: 10_000_000,
            time_unix_nano: 1_700_000_000_000_000_000,
            duration_nano: 10_000_000_000,
            samples: vec![
                Sample {
                    stack_index: 1,
                    values: vec![2, 1],
                    ..Default::default()
                },
                Sample {
                    stack_index: 2,
                    timestamps_unix_nano: vec![1, 2, 3, 4],
                    attribute_indices: vec![1],
                    ..Default::default()
                },
                Sample {
                    stack_index: 1,
                    values: vec![1],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("checkout")),
                        kv("k8s.pod.name", s("checkout-7f9")),
                        kv("process.pid", any_value::Value::IntValue(42)),
                        kv("deployment.canary", any_value::Value::BoolValue(true)),
                    ],
                    ..Default::default()
                }),
                scope_profiles: vec![ScopeProfiles {
                    scope: Some(InstrumentationScope {
                        name: "ebpf".into(),
                        attributes: vec![kv("value", s("x"))],
                        ..Default::default()
                    }),
                    profiles: vec![profile],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(dictionary),
        }
    }

    #[test]
    fn converts_cpu_samples_with_labels() {
        let out = convert(&request(), &DecodeLimits::default(), 5).unwrap();
        assert_eq!(out.len(), 1);
        let p = &out[0];
        assert_eq!(p.time_us, 1_700_000_000_000_000);
        assert_eq!(p.duration_us, 10_000_000);
        assert_eq!(p.series.len(), 2, "base series and the thread's series");
        for series in &p.series {
            assert_eq!(
                series.profile_type.id(),
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            );
            assert_eq!(series.labels.service_name(), "checkout");
            assert_eq!(series.labels.get("k8s_pod_name"), Some("checkout-7f9"));
            assert_eq!(series.labels.get("deployment_canary"), Some("true"));
            assert_eq!(series.labels.get("otel_value"), Some("x"));
            assert_eq!(series.labels.get("process_pid"), None);
        }
        let base = p
            .series
            .iter()
            .find(|s| s.labels.get("thread_name").is_none())
            .unwrap();
        assert_eq!(base.samples.len(), 1);
        assert_eq!(
            base.samples[0].1,
            4 * 10_000_000,
            "values summed, times the period"
        );
        let thread = p
            .series
            .iter()
            .find(|s| s.labels.get("thread_name") == Some("worker-1"))
            .unwrap();
        assert_eq!(thread.samples[0].1, 4 * 10_000_000, "counted by timestamps");
        let deep = p.stacks.iter().find(|s| s.frames.len() == 3).unwrap();
        let names: Vec<&str> = deep.frames.iter().map(|f| &*f.function).collect();
        assert_eq!(names, ["libc.so+0x1f", "work", "main"]);
        assert_eq!(&*deep.frames[1].file, "app.py");
        assert_eq!(deep.frames[1].line, 9);
    }

    #[test]
    fn bad_indices_and_values_are_refused() {
        let limits = DecodeLimits::default();
        type Mutation = Box<dyn Fn(&mut ExportProfilesServiceRequest)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|r| {
                    r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 99
                }),
                "stack index 99 out of range",
            ),
            (
                Box::new(|r| {
                    r.dictionary.as_mut().unwrap().stack_table[1].location_indices[0] = -1
                }),
                "location index -1",
            ),
            (
                Box::new(|r| r.dictionary.as_mut().unwrap().function_table[1].name_strindex = 1000),
                "string index 1000",
            ),
            (
                Box::new(|r| {
                    r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].values =
                        vec![-3]
                }),
                "negative value",
            ),
            (
                Box::new(|r| {
                    r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].values =
                        vec![i64::MAX, 1]
                }),
                "overflow",
            ),
            (
                Box::new(|r| {
                    r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].values =
                        vec![i64::MAX / 2]
                }),
                "overflows",
            ),
            (
                Box::new(|r| {
                    r.resource_profiles[0].scope_profiles[0].profiles[0].sample_type = None
                }),
                "no sample_type",
            ),
            (
                Box::new(|r| {
                    r.resource_profiles[0].scope_profiles[0].profiles[0].attribute_indices = vec![7]
                }),
                "attribute index 7",
            ),
        ];
        for (mutate, want) in cases {
            let mut r = request();
            mutate(&mut r);
            let e = convert(&r, &limits, 0).unwrap_err();
            assert_eq!(e.http_status(), http::StatusCode::BAD_REQUEST, "{e}");
            assert!(e.to_string().contains(want), "{want}: {e}");
            assert!(e.to_string().contains("profiles[0]"), "{e}");
        }
        let small = DecodeLimits {
            max_samples: 2,
            ..limits
        };
        let e = convert(&request(), &small, 0).unwrap_err();
        assert_eq!(e.http_status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn service_name_fallbacks_and_label_names() {
        let limits = DecodeLimits::default();
        let l = series_labels(
            &[("process.executable.name".into(), "nginx".into())],
            &[],
            &limits,
        )
        .unwrap();
        assert_eq!(l.service_name(), "unknown_service:nginx");
        assert_eq!(l.get("process_executable_name"), Some("nginx"));
        let l = series_labels(&[], &[], &limits).unwrap();
        assert_eq!(l.service_name(), "unknown_service");
        assert_eq!(label_name("k8s.pod.name"), "k8s_pod_name");
        assert_eq!(label_name("1st"), "_1st");
        assert_eq!(label_name("__x"), "otel_x");
        assert_eq!(label_name("time"), "otel_time");
        assert_eq!(label_name("service_name"), "otel_service_name");
        assert_eq!(label_name("héllo-wörld"), "h_llo_w_rld");
    }

    #[test]
    fn json_with_string_integers_and_snake_case() {
        let json = r#"{
          "resourceProfiles": [{
            "resource": {"attributes": [
              {"key": "service.name", "value": {"stringValue": "api"}},
              {"key": "replicas", "value": {"intValue": "3"}}
            ]},
            "scope_profiles": [{"profiles": [{
              "sampleType": {"typeStrindex": 1, "unitStrindex": 2},
              "time_unix_nano": "1700000000000000000",
              "samples": [{"stackIndex": 1, "values": ["5"]}]
            }]}]
          }],
          "dictionary": {
            "stringTable": ["", "alloc_space", "bytes", "f"],
            "functionTable": [{}, {"nameStrindex": 3}],
            "locationTable": [{}, {"lines": [{"functionIndex": 1, "line": "12"}]}],
            "stackTable": [{}, {"locationIndices": [1]}],
            "linkTable": [{}, {"traceId": "0102", "spanId": "03"}]
          }
        }"#;
        let r = decode_json(json.as_bytes()).unwrap();
        let out = convert(&r, &DecodeLimits::default(), 0).unwrap();
        let s = &out[0].series[0];
        assert_eq!(s.profile_type.id(), "memory:alloc_space:bytes::");
        assert_eq!(s.labels.get("replicas"), Some("3"));
        assert_eq!(s.samples[0].1, 5);
        assert_eq!(out[0].time_us, 1_700_000_000_000_000);
        assert_eq!(out[0].stacks[0].frames[0].line, 12);
        let e = decode_json(b"{\"resourceProfiles\": 5}").unwrap_err();
        assert!(e.to_string().starts_with("invalid OTLP JSON"), "{e}");
    }
}
