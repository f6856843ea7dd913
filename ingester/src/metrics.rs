//! Prometheus metrics of the ingester.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and histograms, registered once per process.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// Profiles accepted, per tenant.
    pub profiles: IntCounterVec,
    /// Request bytes received (as sent, compressed or not), per tenant.
    pub bytes: IntCounterVec,
    /// Sample rows accepted, per tenant.
    pub samples: IntCounterVec,
    /// Requests rejected, per reason.
    pub rejected: IntCounterVec,
    /// Rows per flushed batch.
    pub batch_rows: HistogramVec,
    /// Seconds per flush (commit included).
    pub flush_seconds: HistogramVec,
    /// Seconds per table write + commit (`table` = `stacks` or `samples`).
    pub commit_seconds: HistogramVec,
    /// Time to build, encode and upload one batch's sample files (part of the samples commit).
    pub encode_seconds: HistogramVec,
    /// Failed commits.
    pub commit_errors: IntCounterVec,
    /// Memory reserved by pushes in flight (estimated, bytes).
    pub inflight_bytes: IntGauge,
}

impl IngestMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            inflight_bytes: IntGauge::new(
                "stackdrift_ingest_inflight_bytes",
                "Memory reserved by pushes being decoded or waiting for their commit \
                 (estimated from body sizes)",
            )?,
            profiles: IntCounterVec::new(
                Opts::new(
                    "stackdrift_ingest_profiles_total",
                    "Profiles accepted and committed",
                ),
                &["tenant"],
            )?,
            bytes: IntCounterVec::new(
                Opts::new(
                    "stackdrift_ingest_received_bytes_total",
                    "Request body bytes of accepted pushes",
                ),
                &["tenant"],
            )?,
            samples: IntCounterVec::new(
                Opts::new(
                    "stackdrift_ingest_samples_total",
                    "Sample rows accepted and committed",
                ),
                &["tenant"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "stackdrift_ingest_rejected_total",
                    "Pushes rejected, by reason",
                ),
                &["reason"],
            )?,
            batch_rows: HistogramVec::new(
                HistogramOpts::new("stackdrift_ingest_batch_rows", "Sample rows per commit")
                    .buckets(prometheus::exponential_buckets(100.0, 4.0, 8)?),
                &[],
            )?,
            flush_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "stackdrift_ingest_flush_seconds",
                    "Time to write and commit one batch",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 12)?),
                &[],
            )?,
            commit_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "stackdrift_ingest_commit_seconds",
                    "Time to write and commit one batch's rows, per table",
                )
                .buckets(prometheus::exponential_buckets(0.002, 2.0, 13)?),
                &["table"],
            )?,
            encode_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "stackdrift_ingest_encode_seconds",
                    "Time to build, encode and upload one batch's sample files",
                )
                .buckets(prometheus::exponential_buckets(0.002, 2.0, 13)?),
                &[],
            )?,
            commit_errors: IntCounterVec::new(
                Opts::new(
                    "stackdrift_ingest_commit_errors_total",
                    "Batches whose commit failed",
                ),
                &[],
            )?,
        };
        registry.register(Box::new(m.profiles.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.samples.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.batch_rows.clone()))?;
        registry.register(Box::new(m.flush_seconds.clone()))?;
        registry.register(Box::new(m.commit_seconds.clone()))?;
        registry.register(Box::new(m.encode_seconds.clone()))?;
        registry.register(Box::new(m.commit_errors.clone()))?;
        registry.register(Box::new(m.inflight_bytes.clone()))?;
        Ok(m)
    }
}
