//! The ingest pipeline shared by every protocol: validate, decode, then hand to the batcher.

use std::sync::Arc;

use stackdrift_model::clock::SharedClock;
use stackdrift_model::labels::{METRIC_NAME, SERVICE_NAME};
use stackdrift_model::{DecodeLimits, LabelError, Labels, NormalizedProfile, SeriesContext};
use stackdrift_proto::push::v1::PushRequest;
use stackdrift_storage::TenantProfile;

use stackdrift_model::auth::Auth;

use crate::batcher::Batcher;
use crate::error::IngestError;
use crate::inflight::{InflightBudget, InflightPermit};
use crate::limits::{IngestLimits, RateLimiter, TenantLimits};
use crate::metrics::IngestMetrics;

/// The ingester role's core: shared by the HTTP, Connect and gRPC front ends.
#[derive(Debug)]
pub struct Ingester {
    batcher: Batcher,
    limits: TenantLimits,
    auth: Auth,
    rate: RateLimiter,
    inflight: Arc<InflightBudget>,
    clock: SharedClock,
    metrics: IngestMetrics,
}

/// Who may push, and within which limits.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Per-tenant limits.
    pub limits: TenantLimits,
    /// Tenant tokens; disabled by default.
    pub auth: Auth,
    /// Memory pushes in flight may hold, in bytes, estimated as
    /// [`crate::inflight::EXPANSION`] × body bytes; `0`: unlimited.
    pub max_inflight_bytes: usize,
}

impl Ingester {
    /// An ingester that commits through `batcher`.
    pub fn new(
        batcher: Batcher,
        admission: Admission,
        clock: SharedClock,
        metrics: IngestMetrics,
    ) -> Arc<Self> {
        let inflight = InflightBudget::new(
            admission.max_inflight_bytes,
            Some(metrics.inflight_bytes.clone()),
        );
        Arc::new(Self {
            batcher,
            limits: admission.limits,
            auth: admission.auth,
            rate: RateLimiter::default(),
            inflight,
            clock,
            metrics,
        })
    }

    /// Runs `f` with the stacks already committed for `(tenant, service)` (see
    /// [`stackdrift_storage::Store::with_committed_stacks`]), so decoders skip their frames.
    pub fn with_committed_stacks<R>(
        &self,
        tenant: &str,
        service: &str,
        f: impl FnOnce(Option<stackdrift_model::KnownStacks<'_>>) -> R,
    ) -> R {
        self.batcher
            .store()
            .with_committed_stacks(tenant, service, f)
    }

    /// The limits of every tenant.
    pub fn limits(&self) -> &TenantLimits {
        &self.limits
    }

    /// The limits of `tenant`.
    pub fn limits_for(&self, tenant: &str) -> &IngestLimits {
        self.limits.get(tenant)
    }

    /// Admits a request: authenticates it (`Authorization`, `X-Scope-OrgID`), checks its size
    /// against the tenant's body limit, reserves its memory from the in-flight budget and
    /// charges it to the tenant's ingestion rate. Returns the tenant and the reservation, which
    /// the caller holds until the push is answered.
    pub fn admit(
        &self,
        authorization: Option<&[u8]>,
        org_id: Option<&[u8]>,
        body_bytes: usize,
    ) -> Result<(String, InflightPermit), IngestError> {
        let tenant = self.auth.tenant(authorization, org_id).map_err(|e| {
            if self.auth.enabled() {
                IngestError::Unauthenticated(e.0)
            } else {
                IngestError::BadRequest(e.0)
            }
        })?;
        let limits = self.limits.get(&tenant);
        if body_bytes > limits.max_body_bytes {
            return Err(IngestError::TooLarge(format!(
                "request body of {body_bytes} bytes exceeds the limit of {} bytes",
                limits.max_body_bytes
            )));
        }
        let permit = self.inflight.try_acquire(body_bytes).ok_or_else(|| {
            IngestError::Overloaded(format!(
                "the ingester is at its memory limit for pushes in flight ({} MiB); retry shortly",
                self.inflight.limit() >> 20
            ))
        })?;
        self.rate
            .admit(&tenant, body_bytes, limits, self.clock.now_us())?;
        Ok((tenant, permit))
    }

    /// The ingester's clock, µs since the epoch.
    pub fn now_us(&self) -> i64 {
        self.clock.now_us()
    }

    /// Validates and stores a `push.v1` request; returns once it is committed.
    ///
    /// The request is dropped once decoded: while the push waits for its commit it holds only
    /// its normalized rows, not its body.
    #[tracing::instrument(name = "push", skip_all, fields(tenant = %tenant, body_bytes = body_bytes))]
    pub async fn push(
        &self,
        tenant: &str,
        request: PushRequest,
        body_bytes: usize,
    ) -> Result<(), IngestError> {
        let result = async {
            let profiles = self.decode_push(tenant, &request)?;
            drop(request);
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
        let limits = self.limits.get(tenant);
        let mut out = Vec::new();
        for (si, series) in request.series.iter().enumerate() {
            let (labels, family) = series_labels(
                series
                    .labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str())),
                &limits.decode,
            )
            .map_err(|source| IngestError::Labels { series: si, source })?;
            for (pi, sample) in series.samples.iter().enumerate() {
                // Frames of stacks already committed for this service are not built.
                let decoded =
                    self.with_committed_stacks(tenant, labels.service_name(), |known_stacks| {
                        let ctx = SeriesContext {
                            labels: &labels,
                            family: family.as_deref(),
                            now_us,
                            known_stacks,
                        };
                        stackdrift_model::decode_pprof(&sample.raw_profile, ctx, &limits.decode)
                    });
                let profile = decoded.map_err(|source| IngestError::Decode {
                    series: si,
                    profile: pi,
                    source,
                })?;
                check_time(limits, &profile, now_us)?;
                out.push(TenantProfile {
                    tenant: tenant.to_owned(),
                    profile,
                });
            }
        }
        Ok(out)
    }

    /// Validates and stores an OTLP export request; returns once it is committed. The request
    /// is dropped once converted, as in [`Ingester::push`].
    #[tracing::instrument(name = "push_otlp", skip_all, fields(tenant = %tenant, body_bytes = body_bytes))]
    pub async fn push_otlp(
        &self,
        tenant: &str,
        request: opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest,
        body_bytes: usize,
    ) -> Result<(), IngestError> {
        let result = async {
            let limits = self.limits.get(tenant);
            let profiles = crate::otlp::convert(&request, &limits.decode, self.clock.now_us())?;
            drop(request);
            self.push_normalized(tenant, profiles).await
        }
        .await;
        self.account(tenant, body_bytes, &result);
        result
    }

    /// Stores already-normalized profiles (folded text, OTLP) for `tenant`.
    #[tracing::instrument(name = "push_normalized", skip_all, fields(tenant = %tenant, profiles = profiles.len()))]
    pub async fn push_normalized(
        &self,
        tenant: &str,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError> {
        let now_us = self.clock.now_us();
        let limits = self.limits.get(tenant);
        for p in &profiles {
            check_time(limits, p, now_us)?;
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
}

fn check_time(
    limits: &IngestLimits,
    p: &NormalizedProfile,
    now_us: i64,
) -> Result<(), IngestError> {
    if p.time_us > now_us.saturating_add(limits.max_future_us) {
        return Err(IngestError::Unprocessable(format!(
            "profile time {} is more than {}s in the future",
            p.time_us,
            limits.max_future_us / 1_000_000
        )));
    }
    if let Some(max_age) = limits.max_age_us
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
