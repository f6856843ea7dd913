//! Wire types for every protobuf protocol stackdrift speaks.
//!
//! ```text
//!   protos/*.proto ──(build.rs: protox → tonic-prost-build)──▶ OUT_DIR/*.rs ──▶ these modules
//! ```
//!
//! * [`pprof`] (= [`perftools::profiles`]), the pprof profile format.
//! * [`types`]: Pyroscope `types.v1` (labels, series, profile types).
//! * [`push`]: Pyroscope `push.v1.PusherService` (what SDKs push to).
//! * [`querier`]: Pyroscope `querier.v1.QuerierService` (what Grafana queries).
//!
//! OTLP profile types come from the `opentelemetry-proto` crate, not from here.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all)]

/// Encoded `FileDescriptorSet` of every message here, for reflection (Connect's JSON form).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/stackdrift_descriptors.bin"));

/// `perftools.profiles`: pprof. Also re-exported as [`pprof`].
pub mod perftools {
    pub mod profiles {
        include!(concat!(env!("OUT_DIR"), "/perftools.profiles.rs"));
    }
}

/// Pyroscope `types.v1`.
pub mod types {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/types.v1.rs"));
    }
}

/// Pyroscope `push.v1`.
pub mod push {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/push.v1.rs"));

        impl PushRequest {
            /// A request with one series (`labels`) carrying one raw profile.
            pub fn one_profile<'a>(
                labels: impl IntoIterator<Item = (&'a str, &'a str)>,
                raw_profile: impl Into<::prost::bytes::Bytes>,
                id: impl Into<String>,
            ) -> Self {
                PushRequest {
                    series: vec![RawProfileSeries {
                        labels: labels
                            .into_iter()
                            .map(|(name, value)| crate::types::v1::LabelPair {
                                name: name.into(),
                                value: value.into(),
                            })
                            .collect(),
                        samples: vec![RawSample {
                            raw_profile: raw_profile.into(),
                            id: id.into(),
                        }],
                        annotations: vec![],
                    }],
                }
            }
        }
    }
}

/// Pyroscope `querier.v1`.
pub mod querier {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/querier.v1.rs"));
    }
}

pub use perftools::profiles as pprof;
