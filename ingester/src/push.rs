//! The ingest pipeline shared by every protocol: validate, decode, then hand to the batcher.

use std::sync::Arc;

use stackdrift_model::clock::SharedClock;
use stackdrift_model::labels::{METRIC_NAME, SERVICE_NAME};
use stackdrift_model::{DecodeLimits, LabelError, Labels, NormalizedProfile, SeriesContext};
use stackdrift_proto::push::v1::PushRequest;
use stackdrift_storage::TenantProfile;

use crate::batcher::Batcher;
use crate::error::IngestError;
use crate::metrics::IngestMetrics;

/// Per-tenant ingest limits (the same for every tenant until per-tenant overrides land).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Limits applied to each profile.
    pub decode: DecodeLimits,
    /// Request body bytes, as received.
    pub max_body_bytes: usize,
    /// Profiles dated more than this far in the future are rejected (µs).
    pub max_future_us: i64,
    /// Profiles older than this are rejected (µs); `None` accepts any age (backfills).
    pub max_age_us: Option<i64>,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            decode: DecodeLimits::default(),
            max_body_bytes: 256 << 20,
            max_future_us: 10 * 60 * 1_000_000,
            max_age_us: Some(60 * 60 * 1_000_000),
        }
    }
}

/// The ingester role's core: shared by the HTTP, Connect and gRPC front ends.
#[derive(Debug)]
pub struct Ingester {
    batcher: Batcher,
    limits: IngestLimits,
    clock: SharedClock,
    metrics: IngestMetrics,
}

impl Ingester {
    /// An ingester that commits through `batcher`.
    pub fn new(
        batcher: Batcher,
        limits: IngestLimits,
        clock: SharedClock,
        metrics: IngestMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            batcher,
            limits,
            clock,
            metrics,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// The ingester's clock, µs since the epoch.
    pub fn now_us(&self) -> i64 {
        self.clock.now_us()
    }

    /// Validates and stores a `push.v1` request; returns once it is committed.
    pub async fn push(
        &self,
        tenant: &str,
        request: &PushRequest,
        body_bytes: usize,
    ) -> Result<(), IngestError> {
        let result = async {
            let profiles = self.decode_push(tenant, request)?;
            self.batcher.submit(profiles).await
        }
        .await;
        self.account(tenant, body_bytes, &result);
        result
    }

    /// Records metrics for a finished push.
    pub fn account(&self, tenant: &str, body_bytes: usize, result: &Result<(), IngestError>) {
        match result {
            Ok(()) => self
                .metrics
                .bytes
                .with_label_values(&[tenant])
                .inc_by(body_bytes as u64),
            Err(e) => self.metrics.rejected.with_label_values(&[e.reason()]).inc(),
        }
    }

    /// Records a request rejected before it reached [`Ingester::push`].
    pub fn reject(&self, error: &IngestError) {
        self.metrics
            .rejected
            .with_label_values(&[error.reason()])
            .inc();
    }

    fn decode_push(
        &self,
        tenant: &str,
        request: &PushRequest,
    ) -> Result<Vec<TenantProfile>, IngestError> {
        let now_us = self.clock.now_us();
        let mut out = Vec::new();
        for (si, series) in request.series.iter().enumerate() {
            let (labels, family) = series_labels(
                series
                    .labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str())),
                &self.limits.decode,
            )
            .map_err(|source| IngestError::Labels { series: si, source })?;
            for (pi, sample) in series.samples.iter().enumerate() {
                let ctx = SeriesContext {
                    labels: &labels,
                    family: family.as_deref(),
                    now_us,
                };
                let profile =
                    stackdrift_model::decode_pprof(&sample.raw_profile, ctx, &self.limits.decode)
                        .map_err(|source| IngestError::Decode {
                        series: si,
                        profile: pi,
                        source,
                    })?;
                self.check_time(&profile, now_us)?;
                out.push(TenantProfile {
                    tenant: tenant.to_owned(),
                    profile,
                });
            }
        }
        Ok(out)
    }

    /// Stores already-normalized profiles (folded text, OTLP) for `tenant`.
    pub async fn push_normalized(
        &self,
        tenant: &str,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError> {
        let now_us = self.clock.now_us();
        for p in &profiles {
            self.check_time(p, now_us)?;
        }
        let profiles = profiles
            .into_iter()
            .map(|profile| TenantProfile {
                tenant: tenant.to_owned(),
                profile,
            })
            .collect();
        self.batcher.submit(profiles).await
    }

    fn check_time(&self, p: &NormalizedProfile, now_us: i64) -> Result<(), IngestError> {
        if p.time_us > now_us.saturating_add(self.limits.max_future_us) {
            return Err(IngestError::Unprocessable(format!(
                "profile time {} is more than {}s in the future",
                p.time_us,
                self.limits.max_future_us / 1_000_000
            )));
        }
        if let Some(max_age) = self.limits.max_age_us
            && p.time_us < now_us.saturating_sub(max_age)
        {
            return Err(IngestError::Unprocessable(format!(
                "profile time {} is more than {}s in the past",
                p.time_us,
                max_age / 1_000_000
            )));
        }
        Ok(())
    }
}

/// Splits pushed labels into the series label set and the profile family (`__name__`).
///
/// Other `__`-prefixed labels are SDK metadata (`__session_id__`, `__delta__`) and are dropped.
/// Without `service_name`, `app_name` or `service` stands in for it.
pub fn series_labels<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    limits: &DecodeLimits,
) -> Result<(Labels, Option<String>), LabelError> {
    let mut family = None;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, value) in pairs {
        if name == METRIC_NAME {
            if !value.is_empty() {
                family = Some(value.to_owned());
            }
        } else if !name.starts_with("__") {
            kept.push((name.to_owned(), value.to_owned()));
        }
    }
    if !kept.iter().any(|(k, v)| k == SERVICE_NAME && !v.is_empty()) {
        let fallback = ["app_name", "service"]
            .iter()
            .find_map(|alt| kept.iter().find(|(k, v)| k == alt && !v.is_empty()))
            .map(|(_, v)| v.clone());
        if let Some(v) = fallback {
            kept.retain(|(k, _)| k != SERVICE_NAME);
            kept.push((SERVICE_NAME.to_owned(), v));
        }
    }
    Ok((Labels::new(kept, &limits.labels)?, family))
}
