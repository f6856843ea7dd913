//! Per-tenant ingest limits and the per-tenant ingestion rate limiter.
//!
//! Defaults come from the command line; a TOML file may override any of them per tenant:
//!
//! ```toml
//! [tenants.acme]
//! ingestion_rate_bytes = 20_000_000   # bytes/s of request bodies, as received; 0 = unlimited
//! ingestion_burst_bytes = 8_000_000
//! max_samples = 50_000
//! max_profile_age_secs = 0            # accept backfills of any age
//!
//! [tenants.ci]
//! max_body_bytes = 1_048_576
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;
use stackdrift_model::DecodeLimits;
use stackdrift_model::tenant::validate_tenant;

use crate::error::IngestError;

/// Limits applied to one tenant's pushes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IngestLimits {
    /// Limits applied to each profile.
    pub decode: DecodeLimits,
    /// Request body bytes, as received.
    pub max_body_bytes: usize,
    /// Request body bytes after `Content-Encoding` is undone; decompression stops here, so a
    /// gzip bomb costs at most this much memory.
    pub max_decompressed_bytes: usize,
    /// Profiles dated more than this far in the future are rejected (µs).
    pub max_future_us: i64,
    /// Profiles older than this are rejected (µs); `None` accepts any age (backfills).
    pub max_age_us: Option<i64>,
    /// Sustained request bytes per second; 0 turns rate limiting off.
    pub rate_bytes_per_sec: f64,
    /// Bytes a tenant may send at once above the sustained rate.
    pub burst_bytes: f64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            decode: DecodeLimits::default(),
            max_body_bytes: 256 << 20,
            max_decompressed_bytes: 64 << 20,
            max_future_us: 10 * 60 * 1_000_000,
            max_age_us: Some(60 * 60 * 1_000_000),
            rate_bytes_per_sec: 4.0 * 1024.0 * 1024.0,
            burst_bytes: 2.0 * 1024.0 * 1024.0,
        }
    }
}

/// Seconds as microseconds, saturating.
pub fn secs_to_us(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// One tenant's overrides, as written in the limits file. Absent keys keep the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`IngestLimits::rate_bytes_per_sec`].
    pub ingestion_rate_bytes: Option<u64>,
    /// See [`IngestLimits::burst_bytes`].
    pub ingestion_burst_bytes: Option<u64>,
    /// See [`IngestLimits::max_body_bytes`].
    pub max_body_bytes: Option<usize>,
    /// See [`IngestLimits::max_decompressed_bytes`].
    pub max_decompressed_bytes: Option<usize>,
    /// Largest profile after decompression, in bytes.
    pub max_profile_bytes: Option<usize>,
    /// Most samples in one profile.
    pub max_samples: Option<usize>,
    /// Deeper stacks are truncated to this many frames.
    pub max_stack_depth: Option<usize>,
    /// Label names per series.
    pub max_label_names: Option<usize>,
    /// Bytes in a label name.
    pub max_label_name_length: Option<usize>,
    /// Bytes in a label value.
    pub max_label_value_length: Option<usize>,
    /// Profiles older than this many seconds are rejected; 0 accepts any age.
    pub max_profile_age_secs: Option<u64>,
    /// Profiles dated more than this many seconds ahead are rejected.
    pub max_future_secs: Option<u64>,
}

impl LimitOverrides {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: &IngestLimits) -> IngestLimits {
        let mut l = *base;
        if let Some(v) = self.ingestion_rate_bytes {
            l.rate_bytes_per_sec = v as f64;
        }
        if let Some(v) = self.ingestion_burst_bytes {
            l.burst_bytes = v as f64;
        }
        if let Some(v) = self.max_body_bytes {
            l.max_body_bytes = v;
        }
        if let Some(v) = self.max_decompressed_bytes {
            l.max_decompressed_bytes = v;
        }
        if let Some(v) = self.max_profile_bytes {
            l.decode.max_uncompressed_bytes = v;
        }
        if let Some(v) = self.max_samples {
            l.decode.max_samples = v;
        }
        if let Some(v) = self.max_stack_depth {
            l.decode.max_stack_depth = v;
        }
        if let Some(v) = self.max_label_names {
            l.decode.labels.max_names = v;
        }
        if let Some(v) = self.max_label_name_length {
            l.decode.labels.max_name_len = v;
        }
        if let Some(v) = self.max_label_value_length {
            l.decode.labels.max_value_len = v;
        }
        if let Some(v) = self.max_profile_age_secs {
            l.max_age_us = (v > 0).then(|| secs_to_us(v));
        }
        if let Some(v) = self.max_future_secs {
            l.max_future_us = secs_to_us(v);
        }
        l
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default)]
    tenants: HashMap<String, LimitOverrides>,
}

/// The limits of every tenant: defaults plus per-tenant overrides.
#[derive(Debug, Clone, Default)]
pub struct TenantLimits {
    defaults: IngestLimits,
    overrides: HashMap<String, IngestLimits>,
}

impl TenantLimits {
    /// The same limits for every tenant.
    pub fn uniform(defaults: IngestLimits) -> Self {
        Self {
            defaults,
            overrides: HashMap::new(),
        }
    }

    /// `defaults` with the per-tenant overrides of a TOML limits file.
    pub fn from_toml(defaults: IngestLimits, text: &str) -> Result<Self, String> {
        let file: LimitsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut overrides = HashMap::new();
        for (tenant, o) in file.tenants {
            validate_tenant(&tenant)?;
            overrides.insert(tenant, o.apply(&defaults));
        }
        Ok(Self {
            defaults,
            overrides,
        })
    }

    /// Reads a limits file.
    pub fn from_file(defaults: IngestLimits, path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read limits file {}: {e}", path.display()))?;
        Self::from_toml(defaults, &text).map_err(|e| format!("limits file {}: {e}", path.display()))
    }

    /// The limits of `tenant`.
    pub fn get(&self, tenant: &str) -> &IngestLimits {
        self.overrides.get(tenant).unwrap_or(&self.defaults)
    }

    /// The largest body any tenant may send (the transport-level cap).
    pub fn max_body_bytes(&self) -> usize {
        self.overrides
            .values()
            .map(|l| l.max_body_bytes)
            .fold(self.defaults.max_body_bytes, usize::max)
    }
}

/// Token buckets of request bytes, one per tenant.
///
/// A push is admitted while its tenant's bucket is not in debt, and then takes its full size
/// (the bucket may go negative), so a push larger than the burst still gets through once the
/// bucket has refilled, and the long-run rate stays at the limit. A push arriving while the
/// bucket is in debt is refused with the time until it is out of debt.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_us: i64,
}

impl RateLimiter {
    /// Charges `bytes` to `tenant` at time `now_us`.
    pub fn admit(
        &self,
        tenant: &str,
        bytes: usize,
        limits: &IngestLimits,
        now_us: i64,
    ) -> Result<(), IngestError> {
        let rate = limits.rate_bytes_per_sec;
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = limits.burst_bytes.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: burst,
            at_us: now_us,
        });
        let elapsed = (now_us - b.at_us).max(0) as f64 / 1e6;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at_us = b.at_us.max(now_us);
        if b.tokens < 0.0 {
            let wait = (-b.tokens / rate).ceil().max(1.0) as u64;
            return Err(IngestError::RateLimited {
                message: format!(
                    "tenant {tenant} is over its ingestion rate of {} bytes/s (burst {})",
                    rate as u64, burst as u64
                ),
                retry_after_secs: wait,
            });
        }
        b.tokens -= bytes as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_per_tenant() {
        let text = r#"
            [tenants.acme]
            max_samples = 5
            max_profile_age_secs = 0
            max_body_bytes = 999999999
            [tenants.beta]
            max_label_names = 3
        "#;
        let t = TenantLimits::from_toml(IngestLimits::default(), text).unwrap();
        assert_eq!(t.get("acme").decode.max_samples, 5);
        assert_eq!(t.get("acme").max_age_us, None);
        assert_eq!(t.get("beta").decode.labels.max_names, 3);
        assert_eq!(t.get("beta").decode.max_samples, 16_000);
        assert_eq!(t.get("other"), &IngestLimits::default());
        assert_eq!(t.max_body_bytes(), 999_999_999);
        let e = TenantLimits::from_toml(IngestLimits::default(), "[tenants.a]\nmax_sample = 1")
            .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = TenantLimits::from_toml(IngestLimits::default(), "[tenants.\"a/b\"]").unwrap_err();
        assert!(e.contains("invalid tenant"), "{e}");
    }

    #[test]
    fn token_bucket_allows_the_rate_and_refuses_beyond() {
        let limits = IngestLimits {
            rate_bytes_per_sec: 1000.0,
            burst_bytes: 2000.0,
            ..IngestLimits::default()
        };
        let r = RateLimiter::default();
        let s = 1_000_000;
        // A burst's worth passes, then the bucket is in debt.
        r.admit("a", 1500, &limits, 0).unwrap();
        r.admit("a", 1500, &limits, 0).unwrap();
        let e = r.admit("a", 10, &limits, 0).unwrap_err();
        assert_eq!(e.http_status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after_secs(), Some(1));
        assert!(
            e.to_string().contains("ingestion rate of 1000 bytes/s"),
            "{e}"
        );
        // Other tenants have their own bucket.
        r.admit("b", 1500, &limits, 0).unwrap();
        // After the debt is repaid the tenant may push again, even more than the burst.
        r.admit("a", 5000, &limits, s).unwrap();
        let e = r.admit("a", 1, &limits, 2 * s).unwrap_err();
        assert_eq!(e.retry_after_secs(), Some(4));
        assert!(r.admit("a", 1, &limits, 5 * s).is_err());
        r.admit("a", 1, &limits, 6 * s).unwrap();
        // Zero turns it off.
        let off = IngestLimits {
            rate_bytes_per_sec: 0.0,
            ..limits
        };
        for _ in 0..100 {
            r.admit("c", 1 << 30, &off, 0).unwrap();
        }
    }
}
