//! Prometheus metrics of the querier.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Query counters and latencies, registered once per process.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    /// Queries finished, per tenant and outcome (`ok` or an error reason).
    pub queries: IntCounterVec,
    /// Seconds per query, per API.
    pub seconds: HistogramVec,
    /// Hours of flame graphs read from the compactor's hourly rollups instead of raw rows.
    pub rollup_hours: IntCounter,
    /// Queries running now.
    pub running: IntGauge,
    /// Queries waiting for admission now.
    pub queued: IntGauge,
}

impl QueryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            queries: IntCounterVec::new(
                Opts::new("stackdrift_query_total", "Queries finished, by outcome"),
                &["tenant", "outcome"],
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new("stackdrift_query_seconds", "Query latency").buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
                &["api"],
            )?,
            rollup_hours: IntCounter::new(
                "stackdrift_query_rollup_hours_total",
                "Hours of flame graphs read from hourly rollups instead of raw rows",
            )?,
            running: IntGauge::new("stackdrift_query_running", "Queries running now")?,
            queued: IntGauge::new(
                "stackdrift_query_queued",
                "Queries waiting for admission now (--max-concurrent-queries)",
            )?,
        };
        registry.register(Box::new(m.queries.clone()))?;
        registry.register(Box::new(m.seconds.clone()))?;
        registry.register(Box::new(m.rollup_hours.clone()))?;
        registry.register(Box::new(m.running.clone()))?;
        registry.register(Box::new(m.queued.clone()))?;
        Ok(m)
    }
}
