//! Groups many pushes into one commit and answers each push only once its rows are committed.
//!
//! ```text
//!  push ─┐                      ┌─ flush when rows ≥ max_rows or the oldest waited max_age
//!  push ─┼─▶ mpsc ─▶ batch loop ┤
//!  push ─┘        ▲             └─ Store::append (one samples commit) ─▶ answer every waiter
//!                 └── each push waits on its own oneshot: Ok only after the commit
//! ```
//!
//! Up to `max_flushes` batches are flushed at once: while one is encoded and committed the
//! loop gathers the next, so decoding pushes and writing batches overlap. Each flush is its
//! own samples commit; the store encodes them in parallel and commits them one at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stackdrift_storage::{Store, TenantProfile};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::error::IngestError;
use crate::metrics::IngestMetrics;

/// When a batch is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// A batch is committed at the latest this long after its first push arrived.
    pub max_age: Duration,
    /// A batch is committed as soon as it holds this many sample rows.
    pub max_rows: usize,
    /// At most this many batches are being flushed at once (at least 1). A batch that is due
    /// while they all are waits, and keeps gathering pushes, until one is done.
    pub max_flushes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_millis(500),
            max_rows: 500_000,
            max_flushes: 2,
        }
    }
}

struct Item {
    profiles: Vec<TenantProfile>,
    rows: usize,
    arrived: Instant,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to submit profiles to the batch loop.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Item>,
    store: Arc<Store>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item").field("rows", &self.rows).finish()
    }
}

impl Batcher {
    /// Starts the batch loop. It stops after `shutdown` is cancelled, once everything already
    /// submitted has been flushed.
    pub fn spawn(
        store: Arc<Store>,
        config: BatchConfig,
        metrics: IngestMetrics,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let handle = tokio::spawn(run(rx, store.clone(), config, metrics, shutdown));
        (Self { tx, store }, handle)
    }

    /// The store batches are committed to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Submits profiles and waits until they are committed.
    pub async fn submit(&self, mut profiles: Vec<TenantProfile>) -> Result<(), IngestError> {
        // Frames of stacks already in the table need not wait in memory for the commit.
        self.store.strip_committed_stacks(&mut profiles);
        let rows = profiles.iter().map(|p| p.profile.sample_count()).sum();
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Item {
                profiles,
                rows,
                arrived: Instant::now(),
                done,
            })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(IngestError::Unavailable(e)),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Item>,
    store: Arc<Store>,
    config: BatchConfig,
    metrics: IngestMetrics,
    shutdown: CancellationToken,
) {
    let max_flushes = config.max_flushes.max(1);
    let mut flushes: JoinSet<()> = JoinSet::new();
    let mut batch: Vec<Item> = Vec::new();
    let mut rows = 0usize;
    loop {
        // Wait for the first item of a batch.
        let first = tokio::select! {
            item = rx.recv() => item,
            () = shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        // The age counts from when the oldest push arrived, not from when this loop got to
        // it: pushes that queued up during the previous commit are flushed without waiting
        // another interval.
        let deadline = first.arrived + config.max_age;
        rows += first.rows;
        batch.push(first);
        while rows < config.max_rows {
            let timeout = deadline.saturating_duration_since(Instant::now());
            if timeout.is_zero() {
                // Due: take what is already queued, then flush.
                while rows < config.max_rows {
                    match rx.try_recv() {
                        Ok(item) => {
                            rows += item.rows;
                            batch.push(item);
                        }
                        Err(_) => break,
                    }
                }
                break;
            }
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => { rows += item.rows; batch.push(item); }
                    None => break,
                },
                () = tokio::time::sleep(timeout) => break,
                () = shutdown.cancelled() => break,
            }
        }
        // Due, but every flush slot is busy: keep gathering (up to `max_rows`) until one
        // frees up.
        let mut open = true;
        while flushes.len() >= max_flushes {
            tokio::select! {
                done = flushes.join_next() => reap(done),
                item = rx.recv(), if open && rows < config.max_rows => match item {
                    Some(item) => { rows += item.rows; batch.push(item); }
                    None => open = false,
                },
            }
        }
        while let Some(done) = flushes.try_join_next() {
            reap(Some(done));
        }
        flushes.spawn(flush(
            store.clone(),
            std::mem::take(&mut batch),
            metrics.clone(),
        ));
        rows = 0;
    }
    // Shutting down: refuse new pushes, flush what was already submitted.
    rx.close();
    while let Some(item) = rx.recv().await {
        batch.push(item);
    }
    while let Some(done) = flushes.join_next().await {
        reap(Some(done));
    }
    if !batch.is_empty() {
        info!(pushes = batch.len(), "flushing on shutdown");
        flush(store, batch, metrics).await;
    }
    debug!("batcher stopped");
}

/// Logs a flush task that did not finish (a panic: its pushes are answered as if the
/// process were shutting down, since their senders are dropped).
fn reap(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = done {
        error!(error = %e, "a batch flush did not finish; its pushes were not acknowledged");
    }
}

#[tracing::instrument(name = "flush", skip_all, fields(pushes = items.len()))]
async fn flush(store: Arc<Store>, mut items: Vec<Item>, metrics: IngestMetrics) {
    let profiles: Vec<TenantProfile> = items
        .iter_mut()
        .flat_map(|i| std::mem::take(&mut i.profiles))
        .collect();
    let start = Instant::now();
    let result = store.append(&profiles).await;
    let elapsed = start.elapsed();
    metrics
        .flush_seconds
        .with_label_values(&[] as &[&str])
        .observe(elapsed.as_secs_f64());
    match result {
        Ok(stats) => {
            metrics
                .commit_seconds
                .with_label_values(&["stacks"])
                .observe(stats.stacks_commit.as_secs_f64());
            metrics
                .commit_seconds
                .with_label_values(&["samples"])
                .observe(stats.samples_commit.as_secs_f64());
            metrics
                .encode_seconds
                .with_label_values(&[] as &[&str])
                .observe(stats.samples_encode.as_secs_f64());
            metrics
                .batch_rows
                .with_label_values(&[] as &[&str])
                .observe(stats.samples as f64);
            for p in &profiles {
                metrics.profiles.with_label_values(&[&p.tenant]).inc();
                metrics
                    .samples
                    .with_label_values(&[&p.tenant])
                    .inc_by(p.profile.sample_count() as u64);
            }
            debug!(
                pushes = items.len(),
                rows = stats.samples,
                new_stacks = stats.stacks,
                version = ?stats.samples_version,
                elapsed_ms = elapsed.as_millis() as u64,
                "committed batch"
            );
            for item in items {
                let _ = item.done.send(Ok(()));
            }
        }
        Err(e) => {
            metrics
                .commit_errors
                .with_label_values(&[] as &[&str])
                .inc();
            error!(error = %e, pushes = items.len(), "commit failed; pushes not acknowledged");
            let msg = e.to_string();
            for item in items {
                let _ = item.done.send(Err(msg.clone()));
            }
        }
    }
}
