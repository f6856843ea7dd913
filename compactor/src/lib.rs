//! The compactor role: keeps the tables fast to read and bounded in size.
//!
//! Each pass, per partition of `samples` (tenant, service, day):
//! 1. **Retention.** A profile type's rows are deleted once their whole UTC day is older than
//!    the first matching rule of the [`RetentionPolicy`] (tenant, service and profile-type
//!    globs). A partition with nothing left is removed without being read.
//! 2. **Downsampling.** Once a whole day is older than a [`Tier`]'s age, its rows are summed
//!    per (profile type, labels, stack, bucket) into that tier's bucket (defaults: raw for 24 h,
//!    then 1-minute buckets, then 1-hour buckets after 7 days). Sums are unchanged, and every
//!    later query reads the coarser rows.
//! 3. **Compaction.** Files are grouped by the time window (default 1 h) their first row falls
//!    in. A closed window's files are merged into files sorted by (profile type, time, stack)
//!    once; an open window's new files are merged when there are enough of them.
//!
//! Closed-window merges and day rewrites also commit hourly stack totals to `rollups` (before
//! the `samples` files they total, which carry the rollup ID), for flame graphs over whole
//! hours. `stacks` partitions (tenant, service) are merged with each stack ID once. Every change to a
//! partition is one atomic Delta commit (old files out, new files in), retried past concurrent
//! ingest commits. Vacuum then deletes files no longer referenced once the grace period has
//! passed, so queries already reading them finish.

mod plan;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use stackdrift_storage::maintenance::{TAG_RESOLUTION, TAG_ROLLUP, TAG_WINDOW, sql_string};
use stackdrift_storage::{
    CommitKind, DataFile, SamplesRewrite, StorageError, Store, TableSnapshot, Written,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use policy::{RetentionPolicy, RetentionRule, Tier};

use crate::plan::{Partition, Rules, Step};

/// The time the compactor acts at (µs since the epoch); injected in tests.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Now, in µs since the epoch.
    fn now_us(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// A clock that stays where it is set (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now_us`.
    pub fn new(now_us: i64) -> Self {
        Self(AtomicI64::new(now_us))
    }

    /// Moves the clock to `now_us`.
    pub fn set(&self, now_us: i64) {
        self.0.store(now_us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// When and how the compactor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactorConfig {
    /// Time between passes.
    pub interval: Duration,
    /// Size at which written files roll over.
    pub target_file_bytes: u64,
    /// Compaction window: a closed window ends as one sorted set of files.
    pub window: Duration,
    /// How long after its end a window counts as closed (late pushes still land in it).
    pub settle: Duration,
    /// An open window's new files are merged once there are this many.
    pub open_min_files: usize,
    /// Downsampling tiers, by age.
    pub tiers: Vec<Tier>,
    /// Retention rules.
    pub retention: RetentionPolicy,
    /// Files removed from the table are deleted this long after their removal.
    pub vacuum_grace: Duration,
    /// Memory for a rewrite's sort or aggregation before it spills to disk.
    pub memory_limit: usize,
    /// Plan and report only: nothing is written or deleted.
    pub dry_run: bool,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            target_file_bytes: 128 << 20,
            window: Duration::from_secs(3_600),
            settle: Duration::from_secs(300),
            open_min_files: 32,
            tiers: policy::parse_tiers(DEFAULT_TIERS).unwrap_or_default(),
            retention: RetentionPolicy::default(),
            vacuum_grace: Duration::from_secs(3_600),
            memory_limit: 1 << 30,
            dry_run: false,
        }
    }
}

/// The default downsampling tiers.
pub const DEFAULT_TIERS: &str = "24h=1m,7d=1h";

/// Files and bytes of one table before and after a pass, and what the pass did to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableReport {
    /// Data files before the pass.
    pub files_before: u64,
    /// Their bytes.
    pub bytes_before: u64,
    /// Data files after the pass (ingest commits during the pass not counted).
    pub files_after: u64,
    /// Their bytes.
    pub bytes_after: u64,
    /// Files removed by the pass's commits.
    pub files_removed: u64,
    /// Files added by the pass's commits.
    pub files_added: u64,
    /// Bytes of the files removed.
    pub bytes_removed: u64,
    /// Bytes of the files added.
    pub bytes_added: u64,
    /// Rows deleted by retention (whole files, from their stats; rows dropped by a rewrite
    /// from the difference of rows read and written).
    pub rows_deleted: u64,
    /// Commits made.
    pub commits: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// The `samples` table.
    pub samples: TableReport,
    /// The `stacks` table.
    pub stacks: TableReport,
    /// Files deleted (or, in a dry run, that would be) by vacuum.
    pub vacuumed: Vec<String>,
    /// One line per change (or, in a dry run, per change that would be made).
    pub changes: Vec<String>,
}

/// Compactor metrics.
#[derive(Debug, Clone)]
pub struct CompactorMetrics {
    /// Files removed and added, per table and direction.
    pub files: IntCounterVec,
    /// Bytes removed and added, per table and direction.
    pub bytes: IntCounterVec,
    /// Rows deleted by retention, per table.
    pub rows_deleted: IntCounterVec,
    /// Files deleted by vacuum, per table.
    pub vacuumed: IntCounterVec,
    /// Commits, per kind (compact, downsample, retention, stacks).
    pub commits: IntCounterVec,
    /// Passes, per outcome.
    pub passes: IntCounterVec,
    /// Pass duration.
    pub pass_seconds: Histogram,
}

impl CompactorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            files: IntCounterVec::new(
                Opts::new("stackdrift_compactor_files_total", "Files removed or added"),
                &["table", "op"],
            )?,
            bytes: IntCounterVec::new(
                Opts::new("stackdrift_compactor_bytes_total", "Bytes removed or added"),
                &["table", "op"],
            )?,
            rows_deleted: IntCounterVec::new(
                Opts::new(
                    "stackdrift_compactor_retention_rows_deleted_total",
                    "Rows deleted by retention",
                ),
                &["table"],
            )?,
            vacuumed: IntCounterVec::new(
                Opts::new(
                    "stackdrift_compactor_vacuumed_files_total",
                    "Unreferenced files deleted by vacuum",
                ),
                &["table"],
            )?,
            commits: IntCounterVec::new(
                Opts::new("stackdrift_compactor_commits_total", "Maintenance commits"),
                &["kind"],
            )?,
            passes: IntCounterVec::new(
                Opts::new("stackdrift_compactor_passes_total", "Compaction passes"),
                &["outcome"],
            )?,
            pass_seconds: Histogram::with_opts(
                HistogramOpts::new("stackdrift_compactor_pass_seconds", "Pass duration")
                    .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]),
            )?,
        };
        registry.register(Box::new(m.files.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.rows_deleted.clone()))?;
        registry.register(Box::new(m.vacuumed.clone()))?;
        registry.register(Box::new(m.commits.clone()))?;
        registry.register(Box::new(m.passes.clone()))?;
        registry.register(Box::new(m.pass_seconds.clone()))?;
        Ok(m)
    }
}

/// Called with a line of progress during a pass (the CLI prints them for `--once`).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// The compactor.
pub struct Compactor {
    store: Arc<Store>,
    config: CompactorConfig,
    metrics: CompactorMetrics,
    clock: Arc<dyn Clock>,
    progress: Option<Progress>,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Compactor {
    /// A compactor of `store`'s tables on the system clock.
    pub fn new(store: Arc<Store>, config: CompactorConfig, metrics: CompactorMetrics) -> Self {
        Self {
            store,
            config,
            metrics,
            clock: Arc::new(SystemClock),
            progress: None,
        }
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports progress lines to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn say(&self, line: &str) {
        if let Some(p) = &self.progress {
            p(line);
        }
    }

    /// One pass: retention, downsampling and compaction of `samples`, deduplication of
    /// `stacks`, then vacuum of both.
    pub async fn run_once(&self) -> Result<PassReport, StorageError> {
        let started = Instant::now();
        let timer = self.metrics.pass_seconds.start_timer();
        let result = self.pass().await;
        timer.observe_duration();
        match &result {
            Ok(r) => {
                self.metrics.passes.with_label_values(&["ok"]).inc();
                info!(
                    samples_files_before = r.samples.files_before,
                    samples_files_after = r.samples.files_after,
                    samples_bytes_before = r.samples.bytes_before,
                    samples_bytes_after = r.samples.bytes_after,
                    samples_rows_deleted = r.samples.rows_deleted,
                    stacks_files_before = r.stacks.files_before,
                    stacks_files_after = r.stacks.files_after,
                    commits = r.samples.commits + r.stacks.commits,
                    vacuumed = r.vacuumed.len(),
                    dry_run = self.config.dry_run,
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

    async fn pass(&self) -> Result<PassReport, StorageError> {
        let now_us = self.clock.now_us();
        let mut report = PassReport::default();
        self.drop_dead_rollups(now_us, &mut report.changes).await?;
        report.samples = self.samples(now_us, &mut report.changes).await?;
        report.stacks = self.stacks(now_us, &mut report.changes).await?;
        for table in ["samples", "stacks", "rollups"] {
            let snapshot = self.store.snapshot(table).await?;
            let gone = snapshot
                .vacuum(self.config.vacuum_grace, self.config.dry_run, now_us / 1000)
                .await?;
            if !self.config.dry_run {
                self.metrics
                    .vacuumed
                    .with_label_values(&[table])
                    .inc_by(gone.len() as u64);
            }
            if !gone.is_empty() {
                self.say(&format!(
                    "{table}: vacuum {} {} unreferenced files",
                    if self.config.dry_run {
                        "would delete"
                    } else {
                        "deleted"
                    },
                    gone.len()
                ));
            }
            report
                .vacuumed
                .extend(gone.into_iter().map(|p| format!("{table}/{p}")));
        }
        Ok(report)
    }

    fn snapshot_config(&self, s: TableSnapshot) -> TableSnapshot {
        s.with_target_file_bytes(self.config.target_file_bytes)
            .with_memory_limit(self.config.memory_limit)
    }

    async fn samples(
        &self,
        now_us: i64,
        changes: &mut Vec<String>,
    ) -> Result<TableReport, StorageError> {
        let mut snapshot = self.snapshot_config(self.store.snapshot("samples").await?);
        let files = snapshot.files()?;
        let mut report = TableReport {
            files_before: files.len() as u64,
            bytes_before: files.iter().map(|f| f.size).sum(),
            ..TableReport::default()
        };
        let mut partitions: BTreeMap<(String, String, i32), Vec<&DataFile>> = BTreeMap::new();
        for f in &files {
            let part = |k: &str| f.partition.get(k).cloned().unwrap_or_default();
            let day = part("day");
            let Some(day) = parse_day(&day) else {
                warn!(path = %f.path, day, "samples file with an unreadable day partition");
                continue;
            };
            partitions
                .entry((part("tenant"), part("service_name"), day))
                .or_default()
                .push(f);
        }
        let rules = Rules {
            now_us,
            window: self.config.window,
            settle: self.config.settle,
            open_min_files: self.config.open_min_files,
            tiers: &self.config.tiers,
            retention: &self.config.retention,
        };
        let total = partitions.len();
        for (n, ((tenant, service, day), part_files)) in partitions.into_iter().enumerate() {
            let partition = Partition {
                tenant: &tenant,
                service: &service,
                day,
                files: part_files,
            };
            let mut step = plan::plan(&partition, &rules, None);
            if step == Step::NeedTypes {
                let owned: Vec<DataFile> = partition.files.iter().map(|f| (*f).clone()).collect();
                let types: BTreeSet<String> = snapshot
                    .distinct_profile_types(&owned)
                    .await?
                    .into_iter()
                    .collect();
                step = plan::plan(&partition, &rules, Some(&types));
            }
            let name = format!("samples {tenant}/{service}/{}", day_name(day));
            if let Some(line) = self
                .apply(&mut snapshot, &partition, step, now_us, &mut report)
                .await?
            {
                let line = format!("[{}/{total}] {name}: {line}", n + 1);
                self.say(&line);
                changes.push(line);
            }
        }
        report.finish();
        Ok(report)
    }

    async fn apply(
        &self,
        snapshot: &mut TableSnapshot,
        p: &Partition<'_>,
        step: Step,
        now_us: i64,
        report: &mut TableReport,
    ) -> Result<Option<String>, StorageError> {
        let dry = self.config.dry_run;
        let all: Vec<DataFile> = p.files.iter().map(|f| (*f).clone()).collect();
        let bytes = |fs: &[DataFile]| fs.iter().map(|f| f.size).sum::<u64>();
        match step {
            Step::Keep | Step::NeedTypes => Ok(None),
            Step::Expire => {
                let rows: u64 = all.iter().filter_map(|f| f.rows).sum();
                let line = format!(
                    "retention {} {} files ({} rows, {} bytes): whole day expired",
                    if dry { "would delete" } else { "deleted" },
                    all.len(),
                    rows,
                    bytes(&all)
                );
                if !dry {
                    snapshot
                        .commit(
                            &all,
                            Written::default(),
                            CommitKind::Delete {
                                predicate: partition_predicate(p),
                            },
                            now_us / 1000,
                        )
                        .await?;
                    self.count_parts("samples", "retention", &all, (0, 0), rows, report);
                }
                Ok(Some(line))
            }
            Step::Rewrite { drop, bucket_us } => {
                let rows_in: u64 = all.iter().filter_map(|f| f.rows).sum();
                let mut line = String::new();
                if !drop.is_empty() {
                    let _ = write!(line, "retention drops {}; ", drop.join(", "));
                }
                if bucket_us > 0 {
                    let _ = write!(line, "downsample to {}s buckets; ", bucket_us / 1_000_000);
                }
                if dry {
                    let _ = write!(
                        line,
                        "would rewrite {} files ({rows_in} rows, {} bytes)",
                        all.len(),
                        bytes(&all)
                    );
                    return Ok(Some(line));
                }
                let mut tags = std::collections::HashMap::new();
                if bucket_us > 0 {
                    tags.insert(TAG_RESOLUTION.to_owned(), bucket_us.to_string());
                }
                tags.insert(TAG_WINDOW.to_owned(), "day".to_owned());
                let rollup_id = new_rollup_id();
                let written = snapshot
                    .rewrite_samples(
                        &all,
                        &SamplesRewrite {
                            drop_profile_types: drop.clone(),
                            bucket_us: (bucket_us > 0).then_some(bucket_us),
                            tags,
                            rollup_id: Some(rollup_id.clone()),
                        },
                    )
                    .await?;
                self.rollups(p, &rollup_id, &written).await?;
                let _ = write!(
                    line,
                    "rewrote {} files ({rows_in} rows, {} bytes) into {} ({} rows, {} bytes)",
                    all.len(),
                    bytes(&all),
                    written.files(),
                    written.rows,
                    written.bytes
                );
                let deleted = if !drop.is_empty() && bucket_us == 0 {
                    rows_in.saturating_sub(written.rows)
                } else {
                    0
                };
                let kind = if drop.is_empty() {
                    CommitKind::Optimize {
                        what: format!("downsample {} to {bucket_us}us", day_name(p.day)),
                    }
                } else {
                    CommitKind::Delete {
                        predicate: format!(
                            "{} AND profile_type IN ({})",
                            partition_predicate(p),
                            drop.iter()
                                .map(|t| sql_string(t))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                };
                let label = if drop.is_empty() {
                    "downsample"
                } else {
                    "retention"
                };
                let stats = (written.files() as u64, written.bytes);
                snapshot.commit(&all, written, kind, now_us / 1000).await?;
                self.count_parts("samples", label, &all, stats, deleted, report);
                Ok(Some(line))
            }
            Step::Merge(windows) => {
                let mut line = String::new();
                let mut remove = Vec::new();
                let mut written = Written::default();
                let name = format!("{}/{}/{}", p.tenant, p.service, day_name(p.day));
                // Closed windows get hourly totals (one rollup ID for this commit's files).
                let rollup_id = new_rollup_id();
                for (w, (label, idx)) in windows.iter().enumerate() {
                    let files: Vec<DataFile> = idx.iter().map(|&i| p.files[i].clone()).collect();
                    if !dry {
                        self.say(&format!(
                            "  samples {name}: merging window {} ({}/{}): {} files",
                            window_name(label),
                            w + 1,
                            windows.len(),
                            files.len()
                        ));
                    }
                    let _ = write!(
                        line,
                        "{}window {}: {} files ({} bytes)",
                        if line.is_empty() { "" } else { "; " },
                        window_name(label),
                        files.len(),
                        bytes(&files)
                    );
                    if !dry {
                        let tags = std::collections::HashMap::from([(
                            TAG_WINDOW.to_owned(),
                            label.clone(),
                        )]);
                        let w = snapshot
                            .rewrite_samples(
                                &files,
                                &SamplesRewrite {
                                    tags,
                                    rollup_id: (label != "open").then(|| rollup_id.clone()),
                                    ..SamplesRewrite::default()
                                },
                            )
                            .await?;
                        let _ = write!(line, " → {} ({} bytes)", w.files(), w.bytes);
                        written.extend(w);
                    }
                    remove.extend(files);
                }
                if dry {
                    return Ok(Some(format!("would merge {line}")));
                }
                self.rollups(p, &rollup_id, &written).await?;
                let stats = (written.files() as u64, written.bytes);
                snapshot
                    .commit(
                        &remove,
                        written,
                        CommitKind::Optimize {
                            what: format!("merge {} windows of {name}", windows.len()),
                        },
                        now_us / 1000,
                    )
                    .await?;
                self.count_parts("samples", "compact", &remove, stats, 0, report);
                Ok(Some(format!("merged {line}")))
            }
        }
    }

    /// Commits the hourly totals of `written` to `rollups` (before `written` itself is
    /// committed to `samples`: until then they are unreferenced).
    async fn rollups(
        &self,
        p: &Partition<'_>,
        rollup_id: &str,
        written: &Written,
    ) -> Result<(), StorageError> {
        if written.rollup.is_empty() {
            return Ok(());
        }
        let Some(first) = p.files.first() else {
            return Ok(());
        };
        let mut rollups = self.snapshot_config(self.store.snapshot("rollups").await?);
        rollups
            .append_rollup(&first.partition, rollup_id, &written.rollup)
            .await?;
        self.metrics.commits.with_label_values(&["rollup"]).inc();
        Ok(())
    }

    /// Removes `rollups` files whose rollup ID no `samples` file carries any more (replaced by
    /// a later merge, or written by a pass that stopped before its `samples` commit), once
    /// they are older than the vacuum grace period (a query that listed the old `samples`
    /// files may still read them).
    async fn drop_dead_rollups(
        &self,
        now_us: i64,
        changes: &mut Vec<String>,
    ) -> Result<(), StorageError> {
        let samples = self.store.snapshot("samples").await?.files()?;
        let live: std::collections::HashSet<&str> =
            samples.iter().filter_map(|f| f.tag(TAG_ROLLUP)).collect();
        let mut rollups = self.snapshot_config(self.store.snapshot("rollups").await?);
        let grace_ms = i64::try_from(self.config.vacuum_grace.as_millis()).unwrap_or(i64::MAX);
        let dead: Vec<DataFile> = rollups
            .files()?
            .into_iter()
            .filter(|f| f.tag(TAG_ROLLUP).is_none_or(|id| !live.contains(id)))
            .filter(|f| f.modified_ms.saturating_add(grace_ms) <= now_us / 1000)
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        let line = format!(
            "rollups: {} {} unreferenced files",
            if self.config.dry_run {
                "would drop"
            } else {
                "dropped"
            },
            dead.len()
        );
        if !self.config.dry_run {
            rollups
                .commit(
                    &dead,
                    Written::default(),
                    CommitKind::Optimize {
                        what: "drop unreferenced rollups".into(),
                    },
                    now_us / 1000,
                )
                .await?;
            self.metrics.commits.with_label_values(&["rollup"]).inc();
        }
        self.say(&line);
        changes.push(line);
        Ok(())
    }

    fn count_parts(
        &self,
        table: &str,
        kind: &str,
        removed: &[DataFile],
        (files_added, bytes_added): (u64, u64),
        rows_deleted: u64,
        report: &mut TableReport,
    ) {
        let bytes_removed: u64 = removed.iter().map(|f| f.size).sum();
        report.files_removed += removed.len() as u64;
        report.files_added += files_added;
        report.rows_deleted += rows_deleted;
        report.commits += 1;
        report.bytes_added += bytes_added;
        report.bytes_removed += bytes_removed;
        let m = &self.metrics;
        m.files
            .with_label_values(&[table, "removed"])
            .inc_by(removed.len() as u64);
        m.files
            .with_label_values(&[table, "added"])
            .inc_by(files_added);
        m.bytes
            .with_label_values(&[table, "removed"])
            .inc_by(bytes_removed);
        m.bytes
            .with_label_values(&[table, "added"])
            .inc_by(bytes_added);
        m.rows_deleted
            .with_label_values(&[table])
            .inc_by(rows_deleted);
        m.commits.with_label_values(&[kind]).inc();
    }

    async fn stacks(
        &self,
        now_us: i64,
        changes: &mut Vec<String>,
    ) -> Result<TableReport, StorageError> {
        let mut snapshot = self.snapshot_config(self.store.snapshot("stacks").await?);
        let files = snapshot.files()?;
        let mut report = TableReport {
            files_before: files.len() as u64,
            bytes_before: files.iter().map(|f| f.size).sum(),
            ..TableReport::default()
        };
        let mut partitions: BTreeMap<(String, String), Vec<DataFile>> = BTreeMap::new();
        for f in files {
            let part = |k: &str| f.partition.get(k).cloned().unwrap_or_default();
            partitions
                .entry((part("tenant"), part("service_name")))
                .or_default()
                .push(f);
        }
        let total = partitions.len();
        for (n, ((tenant, service), files)) in partitions.into_iter().enumerate() {
            // Big files stay; small ones are merged once a new one has arrived.
            let small: Vec<DataFile> = files
                .into_iter()
                .filter(|f| f.size < self.config.target_file_bytes / 2)
                .collect();
            let fresh = small
                .iter()
                .filter(|f| {
                    f.tag(stackdrift_storage::maintenance::TAG_DEDUPED)
                        .is_none()
                })
                .count();
            if small.len() < 2 || fresh == 0 {
                continue;
            }
            let mut line = format!(
                "[{}/{total}] stacks {tenant}/{service}: {} files ({} bytes)",
                n + 1,
                small.len(),
                small.iter().map(|f| f.size).sum::<u64>()
            );
            if self.config.dry_run {
                line.push_str(" would be merged");
            } else {
                let written = snapshot.rewrite_stacks(&small).await?;
                let _ = write!(
                    line,
                    " merged into {} ({} stacks, {} bytes)",
                    written.files(),
                    written.rows,
                    written.bytes
                );
                let stats = (written.files() as u64, written.bytes);
                snapshot
                    .commit(
                        &small,
                        written,
                        CommitKind::Optimize {
                            what: format!("dedup stacks of {tenant}/{service}"),
                        },
                        now_us / 1000,
                    )
                    .await?;
                self.count_parts("stacks", "stacks", &small, stats, 0, &mut report);
            }
            self.say(&line);
            changes.push(line);
        }
        report.finish();
        Ok(report)
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
                    // Each change is one atomic commit: stopping between them is safe.
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

impl TableReport {
    fn finish(&mut self) {
        self.files_after =
            (self.files_before + self.files_added).saturating_sub(self.files_removed);
        self.bytes_after =
            (self.bytes_before + self.bytes_added).saturating_sub(self.bytes_removed);
    }
}

/// A fresh rollup ID.
fn new_rollup_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// SQL predicate selecting one partition of `samples`.
fn partition_predicate(p: &Partition<'_>) -> String {
    format!(
        "tenant = {} AND service_name = {} AND day = DATE {}",
        sql_string(p.tenant),
        sql_string(p.service),
        sql_string(&day_name(p.day))
    )
}

/// `YYYY-MM-DD` → days since the epoch.
fn parse_day(text: &str) -> Option<i32> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// Days since the epoch → `YYYY-MM-DD`.
fn day_name(day: i32) -> String {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|e| e.checked_add_signed(chrono::Duration::days(i64::from(day))))
        .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

/// A window label (its start in µs, or `open`) for people.
fn window_name(label: &str) -> String {
    match label.parse::<i64>() {
        Ok(us) => chrono::DateTime::from_timestamp_micros(us)
            .map_or_else(|| label.to_owned(), |t| t.format("%H:%M").to_string()),
        Err(_) => label.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(parse_day("1970-01-02"), Some(1));
        assert_eq!(day_name(1), "1970-01-02");
        assert_eq!(parse_day(&day_name(20_000)), Some(20_000));
        assert_eq!(parse_day("yesterday"), None);
    }
}
