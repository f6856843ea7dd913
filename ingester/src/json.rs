//! The proto3 JSON form of `push.v1.PushRequest` (Connect with `application/json`).
//!
//! Field names are accepted both in lowerCamel (`rawProfile`) and as declared
//! (`raw_profile`); bytes are base64 (standard or URL-safe, padded or not), as the proto3 JSON
//! mapping allows.

use base64::Engine;
use serde::Deserialize;
use stackdrift_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use stackdrift_proto::types::v1::{LabelPair, ProfileAnnotation};

use crate::error::IngestError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPush {
    #[serde(default)]
    series: Vec<JsonSeries>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSeries {
    #[serde(default)]
    labels: Vec<JsonPair>,
    #[serde(default)]
    samples: Vec<JsonSample>,
    #[serde(default)]
    annotations: Vec<JsonAnnotation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPair {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAnnotation {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSample {
    #[serde(default, alias = "raw_profile", rename = "rawProfile")]
    raw_profile: String,
    #[serde(default, rename = "ID", alias = "id")]
    id: String,
}

fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
}

/// Parses a JSON push request.
pub fn push_request(body: &[u8]) -> Result<PushRequest, IngestError> {
    let parsed: JsonPush = serde_json::from_slice(body)
        .map_err(|e| IngestError::BadRequest(format!("invalid JSON push request: {e}")))?;
    let mut series = Vec::with_capacity(parsed.series.len());
    for (si, s) in parsed.series.into_iter().enumerate() {
        let mut samples = Vec::with_capacity(s.samples.len());
        for (pi, sample) in s.samples.into_iter().enumerate() {
            let raw = decode_base64(&sample.raw_profile).map_err(|e| {
                IngestError::BadRequest(format!(
                    "series {si}, profile {pi}: rawProfile is not base64: {e}"
                ))
            })?;
            samples.push(RawSample {
                raw_profile: raw.into(),
                id: sample.id,
            });
        }
        series.push(RawProfileSeries {
            labels: s
                .labels
                .into_iter()
                .map(|l| LabelPair {
                    name: l.name,
                    value: l.value,
                })
                .collect(),
            samples,
            annotations: s
                .annotations
                .into_iter()
                .map(|a| ProfileAnnotation {
                    key: a.key,
                    value: a.value,
                })
                .collect(),
        });
    }
    Ok(PushRequest { series })
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_camel_and_snake_case() {
        let body = br#"{"series":[{"labels":[{"name":"service_name","value":"a"}],
            "samples":[{"rawProfile":"AAEC","ID":"x"},{"raw_profile":"AAE"}]}]}"#;
        let r = push_request(body).unwrap();
        assert_eq!(r.series[0].labels[0].value, "a");
        assert_eq!(&r.series[0].samples[0].raw_profile[..], &[0, 1, 2]);
        assert_eq!(&r.series[0].samples[1].raw_profile[..], &[0, 1]);
    }

    #[test]
    fn rejects_bad_json_and_base64() {
        assert!(matches!(
            push_request(b"{"),
            Err(IngestError::BadRequest(_))
        ));
        assert!(matches!(
            push_request(br#"{"series":[{"samples":[{"rawProfile":"!!"}]}]}"#),
            Err(IngestError::BadRequest(m)) if m.contains("base64")
        ));
        assert!(matches!(
            push_request(br#"{"bogus":1}"#),
            Err(IngestError::BadRequest(_))
        ));
    }
}
