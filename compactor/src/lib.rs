//! The compactor role: keeps the tables fast to read by merging the many small files that
//! frequent ingest commits leave behind.
//!
//! Each pass runs delta-rs `optimize` (bin-packing compaction) on `samples` and `stacks`:
//! one atomic commit per table replaces small files with larger ones, so readers see either
//! the old set of files or the new one. Downsampling and retention come with the compactor
//! issue; this module is where they will run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};
use stackdrift_storage::{StorageError, Store};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// When and how the compactor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactorConfig {
    /// Time between passes.
    pub interval: Duration,
    /// Target size of compacted files.
    pub target_file_bytes: u64,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            target_file_bytes: 128 << 20,
        }
    }
}

/// What one pass did to one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Files removed (merged into new ones).
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Partitions touched.
    pub partitions: u64,
}

/// Compactor metrics.
#[derive(Debug, Clone)]
pub struct CompactorMetrics {
    /// Files removed and added, per table and direction.
    pub files: IntCounterVec,
    /// Passes, per outcome.
    pub passes: IntCounterVec,
}

impl CompactorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            files: IntCounterVec::new(
                Opts::new("stackdrift_compactor_files_total", "Files removed or added"),
                &["table", "op"],
            )?,
            passes: IntCounterVec::new(
                Opts::new("stackdrift_compactor_passes_total", "Compaction passes"),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(m.files.clone()))?;
        registry.register(Box::new(m.passes.clone()))?;
        Ok(m)
    }
}

/// The compactor.
#[derive(Debug)]
pub struct Compactor {
    store: Arc<Store>,
    config: CompactorConfig,
    metrics: CompactorMetrics,
}

impl Compactor {
    /// A compactor of `store`'s tables.
    pub fn new(store: Arc<Store>, config: CompactorConfig, metrics: CompactorMetrics) -> Self {
        Self {
            store,
            config,
            metrics,
        }
    }

    /// One pass over both tables; returns what it did per table (`samples`, `stacks`).
    pub async fn run_once(&self) -> Result<[PassStats; 2], StorageError> {
        let started = Instant::now();
        let result = async {
            let samples = self
                .store
                .compact("samples", self.config.target_file_bytes)
                .await?;
            let stacks = self
                .store
                .compact("stacks", self.config.target_file_bytes)
                .await?;
            Ok(
                [samples, stacks].map(|(removed, added, partitions)| PassStats {
                    files_removed: removed,
                    files_added: added,
                    partitions,
                }),
            )
        }
        .await;
        match &result {
            Ok(stats) => {
                for (table, s) in ["samples", "stacks"].iter().zip(stats) {
                    self.metrics
                        .files
                        .with_label_values(&[table, "removed"])
                        .inc_by(s.files_removed);
                    self.metrics
                        .files
                        .with_label_values(&[table, "added"])
                        .inc_by(s.files_added);
                }
                self.metrics.passes.with_label_values(&["ok"]).inc();
                info!(
                    samples_removed = stats[0].files_removed,
                    samples_added = stats[0].files_added,
                    stacks_removed = stats[1].files_removed,
                    stacks_added = stats[1].files_added,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compaction pass done"
                );
            }
            Err(e) => {
                self.metrics.passes.with_label_values(&["error"]).inc();
                warn!(error = %e, "compaction pass failed");
            }
        }
        result
    }

    /// Runs a pass every `interval` until `shutdown`; a failed pass is logged and retried at
    /// the next interval.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    // A pass is one atomic commit per table: stopping between them is safe.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.run_once() => {}
                    }
                }
            }
        }
        info!("compactor stopped");
    }
}
