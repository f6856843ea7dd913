//! Opening, appending to and registering the Delta tables.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, SessionContext, col, lit};
use delta_kernel::expressions::Scalar;
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::transaction::TransactionError;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use rustc_hash::{FxHashMap, FxHashSet};
use stackdrift_model::stack::stack_id_to_i64;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};
use url::Url;

use crate::anomalies::{
    ANOMALIES, ANOMALIES_PARTITIONS, Anomaly, anomalies_batch, anomalies_schema,
};
use crate::config::StorageConfig;
use crate::error::StorageError;
use crate::maintenance::{DataFile, TableSnapshot};
use crate::schema::{
    PartitionSeries, ROLLUPS, ROLLUPS_PARTITIONS, SAMPLES, SAMPLES_PARTITIONS, STACKS,
    STACKS_PARTITIONS, SamplesPartition, StackRow, TenantProfile, label_columns, rollups_schema,
    samples_batch, samples_chunks, samples_head, samples_partitions, samples_schema, samples_tail,
    series_rows, stacks_batch, stacks_schema,
};

/// Stack IDs of one (tenant, service). Looked up for every stack of every push: Fx hashing,
/// not SipHash (the IDs are already hashes).
type StackIds = FxHashSet<i64>;

/// How many times a commit is retried when another writer committed first.
pub(crate) const COMMIT_RETRIES: usize = 100;

/// After this many versions in a row found taken by other writers, an append reloads the
/// table's latest version instead of reading the entries one by one.
const RELOAD_AFTER_TAKEN: usize = 8;

/// What one [`Store::append`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Rows appended to `samples`.
    pub samples: usize,
    /// New rows appended to `stacks`.
    pub stacks: usize,
    /// Version of `samples` after the commit (`None` when nothing was written).
    pub samples_version: Option<u64>,
    /// Time spent writing and committing new stacks.
    pub stacks_commit: std::time::Duration,
    /// Time spent writing and committing the sample rows.
    pub samples_commit: std::time::Duration,
    /// The part of `samples_commit` spent building, encoding and uploading the sample files
    /// (the rest is waiting for the table and committing).
    pub samples_encode: std::time::Duration,
}

/// Handle on the tables of one storage URL. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Store {
    config: StorageConfig,
    samples: Mutex<DeltaTable>,
    stacks: Mutex<DeltaTable>,
    rollups: Mutex<DeltaTable>,
    anomalies: Mutex<DeltaTable>,
    /// Stack IDs known to be in `stacks`, per (tenant, service), loaded on first use.
    known_stacks: Mutex<HashMap<(String, String), StackIds>>,
    /// The subset of `known_stacks` that is committed, readable without waiting for a write:
    /// what [`Store::strip_committed_stacks`] may drop from incoming profiles.
    committed_stacks: std::sync::RwLock<HashMap<(String, String), StackIds>>,
    /// This process's Delta application ID: every samples commit of [`Store::append`]
    /// carries a transaction action `(writer_id, n)` with `n` counting up, so after an error
    /// the store can tell whether the commit landed anyway (see [`Store::append`]).
    writer_id: String,
    /// The last `n` used with `writer_id`.
    appends: std::sync::atomic::AtomicI64,
    /// The samples log version up to which [`Store::commit_adds`] has seen every commit
    /// after the `samples` handle's version: its own, and others' that changed neither
    /// schema nor protocol. The next append tries the version after it (or after the
    /// handle's, if that is later). Changed only under the `samples` lock.
    samples_seen: std::sync::atomic::AtomicU64,
    /// Set while a samples checkpoint is being written in the background.
    checkpointing: Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    /// Opens the tables under `config`, creating any that do not exist yet.
    pub async fn open(config: StorageConfig) -> Result<Arc<Self>, StorageError> {
        let samples = open_or_create(
            &config,
            SAMPLES,
            &samples_schema(std::iter::empty()),
            &SAMPLES_PARTITIONS,
        )
        .await?;
        let stacks = open_or_create(&config, STACKS, &stacks_schema(), &STACKS_PARTITIONS).await?;
        let rollups =
            open_or_create(&config, ROLLUPS, &rollups_schema(), &ROLLUPS_PARTITIONS).await?;
        let anomalies = open_or_create(
            &config,
            ANOMALIES,
            &anomalies_schema(),
            &ANOMALIES_PARTITIONS,
        )
        .await?;
        info!(url = %config.url, samples_version = ?samples.version(), stacks_version = ?stacks.version(), "opened tables");
        Ok(Arc::new(Self {
            config,
            samples: Mutex::new(samples),
            stacks: Mutex::new(stacks),
            rollups: Mutex::new(rollups),
            anomalies: Mutex::new(anomalies),
            known_stacks: Mutex::new(HashMap::new()),
            committed_stacks: std::sync::RwLock::new(HashMap::new()),
            writer_id: writer_id(),
            appends: std::sync::atomic::AtomicI64::new(0),
            samples_seen: std::sync::atomic::AtomicU64::new(0),
            checkpointing: Arc::default(),
        }))
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Appends `profiles`: first the stacks not yet stored (one commit), then all samples (one
    /// atomic commit). A crash between the two leaves only unreferenced stacks behind, which
    /// readers never see through samples; samples never reference a missing stack.
    #[tracing::instrument(name = "append", skip_all, fields(profiles = profiles.len()))]
    pub async fn append(&self, profiles: &[TenantProfile]) -> Result<AppendStats, StorageError> {
        let mut stats = AppendStats::default();
        if profiles.iter().all(|p| p.profile.series.is_empty()) {
            return Ok(stats);
        }
        let started = std::time::Instant::now();
        stats.stacks = self.append_stacks(profiles).await?;
        stats.stacks_commit = started.elapsed();

        stats.samples = profiles.iter().map(|p| p.profile.sample_count()).sum();
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let version = loop {
            // The table as of now decides the columns. The rows are encoded and uploaded
            // without holding the table's lock, so a second batch can encode while this one
            // commits; only numbering and committing take the lock, which keeps this
            // process's transaction numbers in log order.
            let view = self.samples.lock().await.clone();
            let mut labels: Vec<String> = current_label_columns(&view)?;
            let new: Vec<String> = label_columns(profiles)
                .into_iter()
                .filter(|l| !labels.contains(l))
                .collect();
            labels.extend(new.iter().cloned());
            let schema = samples_schema(labels.iter().map(String::as_str));
            let adds = if new.is_empty() {
                // The usual case: every label key is a column already. Each partition's
                // rows are built as their own batch and written straight to their file.
                // Nothing is committed yet: an upload error is simply this append's error.
                let encode = std::time::Instant::now();
                let adds = self
                    .encode_partitioned(&view, profiles)
                    .await
                    .map_err(StorageError::delta(SAMPLES))?;
                stats.samples_encode += encode.elapsed();
                Some(adds)
            } else {
                None
            };
            drop(view);
            let mut table = self.samples.lock().await;
            // A fresh number for every attempt, not one per append: other appends of this
            // process may commit between two attempts, and `landed` below asks whether the
            // log's latest number is at least this one, which only holds for a number taken
            // under this lock hold. A conflict therefore leaves a gap in the numbers.
            let txn = self
                .appends
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            let written = match adds {
                Some(adds) => self.commit_adds(&mut table, adds, txn).await,
                None => {
                    // New label keys grow the schema; older files read the new columns as
                    // NULL. Rare, so this path writes and commits under the lock, through
                    // delta-rs' writer, from the log's latest version.
                    debug!(columns = ?new, "adding label columns");
                    table
                        .update_incremental(None)
                        .await
                        .map_err(StorageError::delta(SAMPLES))?;
                    let batch = samples_batch(profiles, &schema)?;
                    let merged = table
                        .clone()
                        .write(vec![batch])
                        .with_save_mode(SaveMode::Append)
                        .with_writer_properties(writer_properties())
                        .with_target_file_size(NonZeroU64::new(128 << 20))
                        .with_commit_properties(
                            deltalake::kernel::transaction::CommitProperties::default()
                                .with_max_retries(COMMIT_RETRIES)
                                .with_application_transaction(deltalake::kernel::Transaction::new(
                                    &self.writer_id,
                                    txn,
                                )),
                        )
                        .with_schema_mode(SchemaMode::Merge)
                        .await;
                    merged.map(|t| {
                        *table = t;
                        table.version()
                    })
                }
            };
            let error = match written {
                Ok(version) => break version,
                Err(e) => e,
            };
            // An error does not prove the commit failed: the object store may have stored
            // the log entry and lost the answer (a connection cut mid-request; its retry then
            // finds the version taken, by this very commit). Look before reporting a failure
            // or writing again, which would store the rows twice.
            if self.landed(&mut table, txn).await {
                warn!(error = %error, txn, "samples commit reported an error but is in the log");
                break table.version();
            }
            match error {
                // Another writer changed the schema (added label columns) since this handle
                // last looked: catch up and write again against the current schema.
                DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(reason),
                } if attempt < 5 => {
                    attempt += 1;
                    debug!(%reason, attempt, "samples commit conflicted; refreshing the table");
                    table
                        .update_incremental(None)
                        .await
                        .map_err(StorageError::delta(SAMPLES))?;
                }
                e => return Err(StorageError::delta(SAMPLES)(e)),
            }
        };
        stats.samples_commit = started.elapsed();
        stats.samples_version = version;
        Ok(stats)
    }

    /// Encodes the samples of `profiles` (whose label keys are all columns of `table`) one
    /// Parquet file per partition and uploads the files; returns their add actions, for
    /// [`Store::commit_adds`]. The files are written here rather than by `DeltaWriter`: the
    /// columns that hold one value per series are written from their runs, not row by row
    /// (see [`runs_file`]), which made a push cost a quarter less CPU.
    ///
    /// With several partitions (services), up to one encoder per core runs at once, each
    /// with its own share of the partitions balanced by rows: a flush is then not bound to
    /// one core while decoding waits for its acknowledgements. If an upload fails, the files
    /// already uploaded are left uncommitted, for the vacuum to delete.
    async fn encode_partitioned(
        &self,
        table: &DeltaTable,
        profiles: &[TenantProfile],
    ) -> Result<Vec<deltalake::kernel::Add>, DeltaTableError> {
        use deltalake::operations::write::writer::WriterConfig;

        let state = table.snapshot()?;
        let indexed =
            deltalake::table::config::TablePropertiesExt::num_indexed_cols(state.table_config());
        // Columns in the table's order (label columns added by schema merges follow the
        // fixed ones there), as `DeltaWriter` would write them.
        let file_schema = WriterConfig::new(
            state.snapshot().arrow_schema(),
            SAMPLES_PARTITIONS.iter().map(|c| (*c).to_owned()).collect(),
            None,
            None,
            None,
            indexed,
            None,
        )
        .file_schema();
        let store = table.log_store().object_store(None);
        let groups = balance_by_rows(samples_partitions(profiles), *CORES, |(_, series)| {
            series_rows(series)
        });
        write_runs_files(store, &file_schema, &groups, indexed).await
    }

    /// Commits the files `adds` to `samples` with the transaction action `txn`, in one
    /// commit after the latest version this process has seen; returns the version.
    ///
    /// The log entry is delta-rs' (actions, statistics, commit info and protocol checks),
    /// but it is written here rather than through delta-rs' commit loop, whose post-commit
    /// step replays the metadata of every file in the table into the handle's snapshot (and
    /// lists the whole log for expired entries) on every commit: a cost that grows with the
    /// files an ingester has written since the last compaction, about a sixth of its CPU
    /// after 6,000 files. An append reads nothing, so the only commits of others that matter
    /// are those that change the schema or protocol: a version taken by another writer is
    /// read, and unless it is such a change, the next version is tried (far behind, the
    /// table is reloaded instead). The handle is otherwise left where it is (it only
    /// supplies the schema); a checkpoint is written in the background at delta-rs'
    /// interval, as its post-commit step would, with the expired-log cleanup.
    async fn commit_adds(
        &self,
        table: &mut DeltaTable,
        adds: Vec<deltalake::kernel::Add>,
        txn: i64,
    ) -> Result<Option<u64>, DeltaTableError> {
        use deltalake::kernel::transaction::{
            CommitBuilder, CommitConflictError, CommitProperties,
        };
        use std::sync::atomic::Ordering;

        let log_store = table.log_store();
        let (entry, definition, interval, mut version) = {
            let state = table.snapshot()?;
            let prepared =
                CommitBuilder::from(CommitProperties::default().with_application_transaction(
                    deltalake::kernel::Transaction::new(&self.writer_id, txn),
                ))
                .with_actions(
                    adds.into_iter()
                        .map(deltalake::kernel::Action::Add)
                        .collect(),
                )
                .build(
                    Some(state),
                    log_store.clone(),
                    deltalake::protocol::DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: None,
                        predicate: None,
                    },
                )
                .into_prepared_commit_future()
                .await?;
            (
                prepared.commit_or_bytes().clone(),
                (state.metadata().clone(), state.protocol().clone()),
                deltalake::table::config::TablePropertiesExt::checkpoint_interval(
                    state.table_config(),
                )
                .get(),
                state
                    .version()
                    .max(self.samples_seen.load(Ordering::SeqCst))
                    + 1,
            )
        };
        let operation_id = uuid::Uuid::new_v4();
        let conflict = || -> DeltaTableError {
            TransactionError::CommitConflict(CommitConflictError::MetadataChanged).into()
        };
        let mut taken = 0;
        let outcome: Result<(), DeltaTableError> = loop {
            match log_store
                .write_commit_entry(version, entry.clone(), operation_id)
                .await
            {
                Ok(()) => break Ok(()),
                Err(TransactionError::VersionAlreadyExists(_)) if taken < COMMIT_RETRIES => {
                    taken += 1;
                    if taken % RELOAD_AFTER_TAKEN == 0 {
                        // Far behind (other writers are busy, or this one was idle): load
                        // the latest version rather than read every entry up to it.
                        table.update_incremental(None).await?;
                        let state = table.snapshot()?;
                        if (state.metadata(), state.protocol()) != (&definition.0, &definition.1) {
                            break Err(conflict());
                        }
                        version = state.version().max(version) + 1;
                        continue;
                    }
                    let theirs = log_store.read_commit_entry(version).await?;
                    match theirs.map(|e| taken_by(&e, version, &self.writer_id, txn)) {
                        // The object store's own retry found the version taken by the try
                        // whose answer it lost.
                        Some(Taken::ByThisCommit) => break Ok(()),
                        Some(Taken::Compatibly) => {
                            self.samples_seen.store(version, Ordering::SeqCst);
                            version += 1;
                        }
                        Some(Taken::WithNewDefinition) | None => break Err(conflict()),
                    }
                }
                Err(TransactionError::VersionAlreadyExists(_)) => {
                    break Err(TransactionError::MaxCommitAttempts(COMMIT_RETRIES as i32).into());
                }
                Err(e) => break Err(e.into()),
            }
        };
        match outcome {
            Ok(()) => {
                self.samples_seen.store(version, Ordering::SeqCst);
                if (version + 1).is_multiple_of(interval) {
                    self.checkpoint_in_background(table, version);
                }
                Ok(Some(version))
            }
            Err(failed) => {
                let _ = log_store
                    .abort_commit_entry(version, entry, operation_id)
                    .await;
                Err(failed)
            }
        }
    }

    /// Writes the samples checkpoint for `version` (and deletes log entries past their
    /// retention, if the table allows) on a background task, unless one is being written.
    /// A failure is logged only: the next interval's checkpoint covers this one's versions.
    fn checkpoint_in_background(&self, table: &DeltaTable, version: u64) {
        use std::sync::atomic::Ordering;

        if self.checkpointing.swap(true, Ordering::SeqCst) {
            return;
        }
        let busy = self.checkpointing.clone();
        let mut table = table.clone();
        tokio::spawn(async move {
            let written = async {
                table.update_incremental(Some(version)).await?;
                deltalake::checkpoints::create_checkpoint(&table, None).await?;
                let cleanup =
                    deltalake::table::config::TablePropertiesExt::enable_expired_log_cleanup(
                        table.snapshot()?.table_config(),
                    );
                if cleanup {
                    deltalake::checkpoints::cleanup_metadata(&table, None).await?;
                }
                Ok::<_, DeltaTableError>(())
            }
            .await;
            match written {
                Ok(()) => debug!(version, "samples checkpoint written"),
                Err(e) => {
                    warn!(error = %e, version, "samples checkpoint failed; the next one covers it")
                }
            }
            busy.store(false, Ordering::SeqCst);
        });
    }

    /// Whether the samples commit `txn` of this process is in the log (brings `table` up to
    /// date). `false` also when the log cannot be read: the caller then reports its error.
    async fn landed(&self, table: &mut DeltaTable, txn: i64) -> bool {
        table.update_incremental(None).await.is_ok()
            && matches!(self.last_append(table).await, Ok(Some(v)) if v >= txn)
    }

    /// The last transaction number of this process's [`Store::append`] calls in the samples
    /// log (as of its latest version), `None` before the first. Numbers count commit
    /// attempts, so without conflicts this is how many appends landed.
    pub async fn committed_appends(&self) -> Result<Option<i64>, StorageError> {
        let mut table = self.samples.lock().await;
        table
            .update_incremental(None)
            .await
            .map_err(StorageError::delta(SAMPLES))?;
        self.last_append(&table).await
    }

    async fn last_append(&self, table: &DeltaTable) -> Result<Option<i64>, StorageError> {
        table
            .snapshot()
            .map_err(StorageError::delta(SAMPLES))?
            .transaction_version(table.log_store().as_ref(), &self.writer_id)
            .await
            .map_err(StorageError::delta(SAMPLES))
    }

    /// Bulk load for benchmarks and imports: appends each group of `groups` as its own data
    /// file (as if each had been one ingest flush), committing `files_per_commit` files per
    /// commit so that building a day of 1-second flushes does not take a day of commits. The
    /// first group goes through [`Store::append`] (it sets up label columns and stacks); every
    /// later group must use no new label key. Stacks are written as usual.
    pub async fn append_as_files(
        &self,
        groups: &[Vec<TenantProfile>],
        files_per_commit: usize,
    ) -> Result<usize, StorageError> {
        let Some((first, rest)) = groups.split_first() else {
            return Ok(0);
        };
        self.append(first).await?;
        let mut files = 1;
        for chunk in rest.chunks(files_per_commit.max(1)) {
            let all: Vec<TenantProfile> = chunk.iter().flatten().cloned().collect();
            self.append_stacks(&all).await?;
            let mut table = self.samples.lock().await;
            let labels = current_label_columns(&table)?;
            if let Some(new) = label_columns(&all)
                .into_iter()
                .find(|l| !labels.contains(l))
            {
                return Err(StorageError::Internal(format!(
                    "append_as_files: label {new} is not a column yet"
                )));
            }
            let schema = samples_schema(labels.iter().map(String::as_str));
            let state = table.snapshot().map_err(StorageError::delta(SAMPLES))?;
            let config = deltalake::operations::write::writer::WriterConfig::new(
                state.snapshot().arrow_schema(),
                SAMPLES_PARTITIONS.iter().map(|c| (*c).to_owned()).collect(),
                Some(writer_properties()),
                None,
                None,
                deltalake::table::config::TablePropertiesExt::num_indexed_cols(
                    state.table_config(),
                ),
                None,
            );
            let mut actions = Vec::with_capacity(chunk.len());
            for group in chunk {
                let batch = samples_batch(group, &schema)?;
                let mut writer = deltalake::operations::write::writer::DeltaWriter::new(
                    table.log_store().object_store(None),
                    config.clone(),
                );
                writer
                    .write(&batch)
                    .await
                    .map_err(StorageError::delta(SAMPLES))?;
                let adds = writer.close().await.map_err(StorageError::delta(SAMPLES))?;
                files += adds.len();
                actions.extend(adds.into_iter().map(deltalake::kernel::Action::Add));
            }
            deltalake::kernel::transaction::CommitBuilder::default()
                .with_actions(actions)
                .with_max_retries(COMMIT_RETRIES)
                .build(
                    Some(state),
                    table.log_store(),
                    deltalake::protocol::DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: None,
                        predicate: None,
                    },
                )
                .await
                .map_err(StorageError::delta(SAMPLES))?;
            table
                .update_incremental(None)
                .await
                .map_err(StorageError::delta(SAMPLES))?;
        }
        Ok(files)
    }

    /// Drops from `profiles` the frames of stacks already committed to `stacks` for every
    /// service that uses them (the sample rows keep their `stack_id`). Cheap, never waits for
    /// a write; a stack not known to be committed is kept. Returns how many were dropped.
    ///
    /// Steady-state pushes mostly repeat known stacks, so this keeps a batch's memory to its
    /// sample rows plus the few new stacks.
    pub fn strip_committed_stacks(&self, profiles: &mut [TenantProfile]) -> usize {
        let committed = self
            .committed_stacks
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if committed.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        for tp in profiles {
            // Each stack's services, and each service's committed set (looked up once).
            if tp.profile.stacks.is_empty() {
                continue; // the steady state: every stack was known at decode time
            }
            let mut sets: HashMap<&str, Option<&StackIds>> = HashMap::new();
            let mut services: FxHashMap<u64, Vec<&str>> = FxHashMap::default();
            for s in &tp.profile.series {
                let svc = s.labels.service_name();
                sets.entry(svc)
                    .or_insert_with(|| committed.get(&(tp.tenant.clone(), svc.to_owned())));
                for (id, _) in &s.samples {
                    let v = services.entry(*id).or_default();
                    if !v.contains(&svc) {
                        v.push(svc);
                    }
                }
            }
            let before = tp.profile.stacks.len();
            tp.profile.stacks.retain(|stack| {
                let id = stack_id_to_i64(stack.id);
                let committed_everywhere = services.get(&stack.id).is_some_and(|svcs| {
                    svcs.iter().all(|svc| {
                        sets.get(svc)
                            .copied()
                            .flatten()
                            .is_some_and(|set| set.contains(&id))
                    })
                });
                !committed_everywhere
            });
            dropped += before - tp.profile.stacks.len();
        }
        dropped
    }

    /// Calls `f` with a predicate that is true for stacks already committed to `stacks` for
    /// `(tenant, service)` (or with `None` when none are known), for decoders that can then
    /// skip building those stacks' frames. Holds a read lock for the duration of `f`.
    pub fn with_committed_stacks<R>(
        &self,
        tenant: &str,
        service: &str,
        f: impl FnOnce(Option<stackdrift_model::KnownStacks<'_>>) -> R,
    ) -> R {
        let committed = self
            .committed_stacks
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match committed.get(&(tenant.to_owned(), service.to_owned())) {
            Some(set) if !set.is_empty() => {
                let known = |id: u64| set.contains(&stack_id_to_i64(id));
                f(Some(&known))
            }
            _ => f(None),
        }
    }

    async fn append_stacks(&self, profiles: &[TenantProfile]) -> Result<usize, StorageError> {
        let mut known = self.known_stacks.lock().await;
        let mut rows: Vec<StackRow<'_>> = Vec::new();
        let mut added: Vec<((String, String), i64)> = Vec::new();
        for tp in profiles {
            if tp.profile.stacks.is_empty() {
                continue; // every stack of this profile is known: nothing to look up
            }
            // Which service each stack belongs to: every series naming it.
            let mut by_stack: FxHashMap<u64, HashSet<&str>> = FxHashMap::default();
            for s in &tp.profile.series {
                for (id, _) in &s.samples {
                    by_stack
                        .entry(*id)
                        .or_default()
                        .insert(s.labels.service_name());
                }
            }
            for stack in &tp.profile.stacks {
                let Some(services) = by_stack.get(&stack.id) else {
                    continue;
                };
                for service in services {
                    let key = (tp.tenant.clone(), (*service).to_owned());
                    if !known.contains_key(&key) {
                        let ids = self.load_stack_ids(&key.0, &key.1).await?;
                        self.committed_stacks
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(key.clone(), ids.clone());
                        known.insert(key.clone(), ids);
                    }
                    let set = known.entry(key.clone()).or_default();
                    let id = stack_id_to_i64(stack.id);
                    if set.insert(id) {
                        added.push((key, id));
                        rows.push(StackRow {
                            tenant: &tp.tenant,
                            service_name: service,
                            id: stack.id,
                            frames: &stack.frames,
                        });
                    }
                }
            }
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let batch = stacks_batch(&rows)?;
        let mut table = self.stacks.lock().await;
        let result = table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties())
            .with_commit_properties(
                deltalake::kernel::transaction::CommitProperties::default()
                    .with_max_retries(COMMIT_RETRIES),
            )
            .await;
        match result {
            Ok(t) => {
                *table = t;
                let mut committed = self
                    .committed_stacks
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                for (key, id) in added {
                    committed.entry(key).or_default().insert(id);
                }
                Ok(rows.len())
            }
            Err(e) => {
                // Not written: forget the IDs so the next attempt writes them again.
                for (key, id) in added {
                    if let Some(set) = known.get_mut(&key) {
                        set.remove(&id);
                    }
                }
                Err(StorageError::Delta {
                    table: STACKS,
                    source: e,
                })
            }
        }
    }

    async fn load_stack_ids(&self, tenant: &str, service: &str) -> Result<StackIds, StorageError> {
        let ctx = SessionContext::new();
        let provider = self.provider(&self.stacks, STACKS, &ctx).await?;
        let df = ctx
            .read_table(provider)?
            .filter(
                col("tenant")
                    .eq(lit(tenant))
                    .and(col("service_name").eq(lit(service))),
            )?
            .select_columns(&["stack_id"])?;
        let mut ids = StackIds::default();
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            let col = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .ok_or_else(|| StorageError::Internal("stack_id is not Int64".into()))?;
            ids.extend(col.values().iter().copied());
        }
        debug!(
            tenant,
            service,
            stacks = ids.len(),
            "loaded known stack ids"
        );
        Ok(ids)
    }

    /// Brings the tables up to their latest versions and registers them in `ctx` as views:
    /// `samples`, `stacks` (deduplicated by stack ID: two ingesters may both write a new stack
    /// before compaction merges the copies), `stacks_raw` (every copy) and `_rollups` (the
    /// compactor's hourly stack totals, valid only with the `samples` files that name them:
    /// see [`Store::register_with_files`]).
    ///
    /// With `tenant` set, every view is filtered to that tenant's rows and the unfiltered
    /// table providers never enter the catalog, so no SQL text can reach another tenant.
    pub async fn register(
        &self,
        ctx: &SessionContext,
        tenant: Option<&str>,
    ) -> Result<(), StorageError> {
        self.register_views(ctx, tenant, false).await.map(|_| ())
    }

    /// [`Store::register`], also returning the data files of the exact `samples` version it
    /// registered (to decide which hours `_rollups` can answer).
    pub async fn register_with_files(
        &self,
        ctx: &SessionContext,
        tenant: Option<&str>,
    ) -> Result<Vec<DataFile>, StorageError> {
        self.register_views(ctx, tenant, true).await
    }

    async fn register_views(
        &self,
        ctx: &SessionContext,
        tenant: Option<&str>,
        files: bool,
    ) -> Result<Vec<DataFile>, StorageError> {
        let (samples, files) = {
            // One lock for the provider and the file list, so both are the same version.
            let mut table = self.samples.lock().await;
            let provider = provider_of(&mut table, SAMPLES, ctx).await?;
            let files = if files {
                TableSnapshot::new(SAMPLES, table.clone()).files()?
            } else {
                Vec::new()
            };
            (provider, files)
        };
        let stacks = self.provider(&self.stacks, STACKS, ctx).await?;
        let rollups = self.provider(&self.rollups, ROLLUPS, ctx).await?;
        let anomalies = self.provider(&self.anomalies, ANOMALIES, ctx).await?;
        let scoped = |provider| -> Result<DataFrame, StorageError> {
            let df = ctx.read_table(provider)?;
            Ok(match tenant {
                Some(t) => df.filter(col("tenant").eq(lit(t)))?,
                None => df,
            })
        };
        let samples = scoped(samples)?;
        let stacks_raw = scoped(stacks)?;
        let rollups = scoped(rollups)?;
        let anomalies = scoped(anomalies)?;
        // Copies of a stack are identical rows (the ID is a hash of the frames), so a
        // DISTINCT over every column removes them. (`first_value(frames)` per stack ID would
        // too, but DataFusion sizes each sliced list value by its whole batch: a few thousand
        // stacks then "need" gigabytes of the memory pool.)
        let stacks = stacks_raw.clone().distinct()?;
        for (name, df) in [
            (SAMPLES, samples),
            ("stacks_raw", stacks_raw),
            (STACKS, stacks),
            ("_rollups", rollups),
            (ANOMALIES, anomalies),
        ] {
            ctx.deregister_table(name)?;
            ctx.register_table(name, df.into_view())?;
        }
        Ok(files)
    }

    /// The table's DataFusion provider at its latest version.
    async fn provider(
        &self,
        lock: &Mutex<DeltaTable>,
        name: &'static str,
        ctx: &SessionContext,
    ) -> Result<Arc<dyn TableProvider>, StorageError> {
        provider_of(&mut *lock.lock().await, name, ctx).await
    }

    /// Appends detector findings to `anomalies` (one commit). Rows whose `anomaly_id` the
    /// table already holds are skipped, so a replay over a range the detector has seen adds
    /// nothing twice. Returns the rows written.
    pub async fn append_anomalies(&self, rows: &[Anomaly]) -> Result<Vec<Anomaly>, StorageError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let known = self.anomaly_ids(rows).await?;
        let fresh: Vec<Anomaly> = rows
            .iter()
            .filter(|r| !known.contains(&r.anomaly_id))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(fresh);
        }
        let batch = anomalies_batch(&fresh)?;
        let mut table = self.anomalies.lock().await;
        table
            .update_incremental(None)
            .await
            .map_err(StorageError::delta(ANOMALIES))?;
        let written = table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties())
            .with_commit_properties(
                deltalake::kernel::transaction::CommitProperties::default()
                    .with_max_retries(COMMIT_RETRIES),
            )
            .await
            .map_err(StorageError::delta(ANOMALIES))?;
        *table = written;
        Ok(fresh)
    }

    /// The IDs among `rows` that `anomalies` already holds.
    async fn anomaly_ids(&self, rows: &[Anomaly]) -> Result<HashSet<String>, StorageError> {
        let ctx = SessionContext::new();
        let provider = self.provider(&self.anomalies, ANOMALIES, &ctx).await?;
        let from = rows.iter().map(|r| r.window_end_us).min().unwrap_or(0);
        let until = rows.iter().map(|r| r.window_end_us).max().unwrap_or(0);
        let df = ctx
            .read_table(provider)?
            .filter(
                col("detected_at")
                    .gt_eq(lit(ScalarValue::TimestampMicrosecond(
                        Some(from),
                        Some("UTC".into()),
                    )))
                    .and(
                        col("detected_at").lt_eq(lit(ScalarValue::TimestampMicrosecond(
                            Some(until),
                            Some("UTC".into()),
                        ))),
                    ),
            )?
            .select_columns(&["anomaly_id"])?;
        let mut ids = HashSet::new();
        for batch in df.collect().await? {
            // Parquet strings come back as views: cast to plain strings first.
            let col = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .ok_or_else(|| StorageError::Internal("anomaly_id is not a string".into()))?;
            ids.extend(col.iter().flatten().map(str::to_owned));
        }
        Ok(ids)
    }

    /// Reads a small object stored beside the `anomalies` table (the detector's progress),
    /// `None` when it does not exist.
    pub async fn read_state(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let store = self.anomalies.lock().await.object_store();
        let path = object_store::path::Path::from(format!("_detector/{name}"));
        match store.get(&path).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| StorageError::Internal(format!("reading {path}: {e}")))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::Internal(format!("reading {path}: {e}"))),
        }
    }

    /// Writes (replaces) a small object beside the `anomalies` table. Paths under `_detector/`
    /// are hidden from Delta readers and from vacuum.
    pub async fn write_state(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let store = self.anomalies.lock().await.object_store();
        let path = object_store::path::Path::from(format!("_detector/{name}"));
        store
            .put(&path, bytes.into())
            .await
            .map_err(|e| StorageError::Internal(format!("writing {path}: {e}")))?;
        Ok(())
    }

    /// The data files of `stacks` holding one tenant's service, at the table's latest version
    /// (paths relative to the table root).
    pub async fn stack_files(
        &self,
        tenant: &str,
        service: &str,
    ) -> Result<Vec<String>, StorageError> {
        let files = self.snapshot(STACKS).await?.files()?;
        Ok(files
            .into_iter()
            .filter(|f| {
                f.partition.get("tenant").map(String::as_str) == Some(tenant)
                    && f.partition.get("service_name").map(String::as_str) == Some(service)
            })
            .map(|f| f.path)
            .collect())
    }

    /// Reads the stack IDs and leaf-first function names of one `stacks` file (a path from
    /// [`Store::stack_files`]), and nothing else of it: `f(stack_id, functions)` per row.
    pub async fn read_stack_functions(
        &self,
        path: &str,
        mut f: impl FnMut(i64, &mut dyn Iterator<Item = &str>),
    ) -> Result<(), StorageError> {
        let store = self.stacks.lock().await.object_store();
        let location = object_store::path::Path::from_url_path(path)
            .map_err(|e| StorageError::Internal(format!("stacks file {path}: {e}")))?;
        // Stacks files are small next to samples files: one GET, then decode two leaves.
        let bytes = store
            .get(&location)
            .await
            .map_err(|e| StorageError::Internal(format!("reading stacks file {path}: {e}")))?
            .bytes()
            .await
            .map_err(|e| StorageError::Internal(format!("reading stacks file {path}: {e}")))?;
        let err = |e: deltalake::parquet::errors::ParquetError| {
            StorageError::Internal(format!("reading stacks file {path}: {e}"))
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(err)?;
        // Leaves: `stack_id`, and the `function` of each element of `frames`.
        let leaves: Vec<usize> = builder
            .parquet_schema()
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let parts = c.path().parts();
                parts == ["stack_id"]
                    || (parts.first().map(String::as_str) == Some("frames")
                        && parts.last().map(String::as_str) == Some("function"))
            })
            .map(|(i, _)| i)
            .collect();
        if leaves.len() != 2 {
            return Err(StorageError::Internal(format!(
                "stacks file {path} lacks stack_id or frames.function"
            )));
        }
        let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
        let reader = builder.with_projection(mask).build().map_err(err)?;
        let bad = || StorageError::Internal(format!("stacks file {path}: unexpected column types"));
        for batch in reader {
            let batch = batch?;
            let ids = batch
                .column_by_name("stack_id")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(bad)?;
            let frames = batch
                .column_by_name("frames")
                .and_then(|c| c.as_list_opt::<i32>())
                .ok_or_else(bad)?;
            let structs = frames.values().as_struct_opt().ok_or_else(bad)?;
            let function = structs.column_by_name("function").ok_or_else(bad)?;
            let function = arrow::compute::cast(function, &DataType::Utf8)?;
            let names = function.as_string_opt::<i32>().ok_or_else(bad)?;
            let offsets = frames.value_offsets();
            for row in 0..batch.num_rows() {
                if ids.is_null(row) || frames.is_null(row) {
                    continue;
                }
                let (a, b) = (offsets[row], offsets[row + 1]);
                let (a, b) = (
                    usize::try_from(a).unwrap_or(0),
                    usize::try_from(b).unwrap_or(0),
                );
                let mut functions = (a..b.max(a)).map(|i| names.value(i));
                f(ids.value(row), &mut functions);
            }
        }
        Ok(())
    }

    /// The table pinned at its latest version, for the compactor's planning and rewrites.
    pub async fn snapshot(&self, name: &str) -> Result<TableSnapshot, StorageError> {
        let label = match name {
            SAMPLES => SAMPLES,
            STACKS => STACKS,
            ROLLUPS => ROLLUPS,
            ANOMALIES => ANOMALIES,
            other => return Err(StorageError::Internal(format!("unknown table {other}"))),
        };
        Ok(TableSnapshot::new(label, self.table(label).await?))
    }

    /// A snapshot of a table handle (for maintenance operations such as optimize and vacuum),
    /// brought up to date first.
    pub async fn table(&self, name: &str) -> Result<DeltaTable, StorageError> {
        let (lock, label) = match name {
            SAMPLES => (&self.samples, SAMPLES),
            STACKS => (&self.stacks, STACKS),
            ROLLUPS => (&self.rollups, ROLLUPS),
            ANOMALIES => (&self.anomalies, ANOMALIES),
            other => return Err(StorageError::Internal(format!("unknown table {other}"))),
        };
        let mut t = lock.lock().await;
        t.update_incremental(None)
            .await
            .map_err(StorageError::delta(label))?;
        Ok(t.clone())
    }
}

/// `table`'s DataFusion provider after bringing it to its latest version.
async fn provider_of(
    table: &mut DeltaTable,
    name: &'static str,
    ctx: &SessionContext,
) -> Result<Arc<dyn TableProvider>, StorageError> {
    table
        .update_incremental(None)
        .await
        .map_err(StorageError::delta(name))?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(StorageError::delta(name))?;
    table
        .table_provider()
        .await
        .map_err(|e| StorageError::Internal(format!("table provider for {name}: {e}")))
}

/// What a version an append wanted holds, when another commit took it first.
#[derive(Debug, PartialEq, Eq)]
enum Taken {
    /// This very append (its transaction action `(app_id, txn)`): an earlier try stored it
    /// and lost the answer.
    ByThisCommit,
    /// Another writer's commit that changes neither schema nor protocol: step over it.
    Compatibly,
    /// A schema or protocol change, or an entry that cannot be read: the append must be
    /// prepared again against the new table.
    WithNewDefinition,
}

/// Reads the log entry `entry` of `version` (delta-rs' parser) for [`Store::commit_adds`].
fn taken_by(entry: &bytes::Bytes, version: u64, app_id: &str, txn: i64) -> Taken {
    use deltalake::kernel::Action;

    let Ok(actions) = deltalake::logstore::get_actions(version, entry) else {
        return Taken::WithNewDefinition;
    };
    if actions
        .iter()
        .any(|a| matches!(a, Action::Txn(t) if t.app_id == app_id && t.version == txn))
    {
        Taken::ByThisCommit
    } else if actions
        .iter()
        .any(|a| matches!(a, Action::Metadata(_) | Action::Protocol(_)))
    {
        Taken::WithNewDefinition
    } else {
        Taken::Compatibly
    }
}

/// Cores this process may use (read once: on Linux it reads the cgroup's CPU quota).
static CORES: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

/// Rows per row group of an ingest file: the rows of `stack_id` and `value` are built and
/// encoded a row group at a time, so a flush holds one chunk of them per encoder.
pub const SAMPLES_CHUNK_ROWS: usize = 32 * 1024;

/// Writes the `(partition, rows)` chunks received on `chunks`, each partition to its own file,
/// with one Delta writer, and returns the add actions once the channel closes; when writing
/// fails, deletes what this writer had uploaded (and closes the channel). What ingest files
/// were written with before [`write_runs_files`]; the tests compare the two.
#[cfg(test)]
async fn write_partitions(
    store: Arc<dyn object_store::ObjectStore>,
    config: deltalake::operations::write::writer::WriterConfig,
    mut chunks: tokio::sync::mpsc::Receiver<(SamplesPartition, arrow::array::RecordBatch)>,
) -> Result<Vec<deltalake::kernel::Add>, DeltaTableError> {
    let mut writer = deltalake::operations::write::writer::DeltaWriter::new(store, config);
    while let Some((key, batch)) = chunks.recv().await {
        let values = partition_values(key);
        if let Err(e) = writer.write_partition(batch, &values).await {
            chunks.close();
            if let Err(abort) = writer.abort().await {
                warn!(error = %abort, "aborting samples uploads after a write error");
            }
            return Err(e);
        }
    }
    writer.close().await
}

/// A `samples` partition's values, in partition column order, as Delta scalars.
fn partition_values(key: SamplesPartition) -> indexmap::IndexMap<String, Scalar> {
    [
        ("tenant".to_owned(), Scalar::String(key.tenant)),
        ("service_name".to_owned(), Scalar::String(key.service_name)),
        ("day".to_owned(), Scalar::Date(key.day)),
    ]
    .into_iter()
    .collect()
}

/// Writes each partition of `groups` as one Parquet file (see [`runs_file`]), encoding up
/// to one group per thread, uploads the files and returns their add actions. A file is named
/// and placed as `DeltaWriter` would: `<partition path>/part-00001-<uuid>-c000.zstd.parquet`,
/// the partition values percent-encoded by delta-rs' own `serialize_encoded`. If an upload
/// fails, the files already uploaded are left uncommitted, for the vacuum to delete.
async fn write_runs_files(
    store: Arc<dyn object_store::ObjectStore>,
    file_schema: &arrow::datatypes::SchemaRef,
    groups: &[Vec<(SamplesPartition, PartitionSeries<'_>)>],
    indexed: DataSkippingNumIndexedCols,
) -> Result<Vec<deltalake::kernel::Add>, DeltaTableError> {
    type Encoded = (SamplesPartition, Vec<u8>, deltalake::protocol::Stats);
    let encode = || -> Vec<Result<Vec<Encoded>, String>> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .iter()
                .map(|group| {
                    scope.spawn(move || {
                        group
                            .iter()
                            .map(|(key, series)| {
                                let (bytes, stats) = runs_file(file_schema, series, indexed)
                                    .map_err(|e| e.to_string())?;
                                Ok((key.clone(), bytes, stats))
                            })
                            .collect::<Result<Vec<_>, String>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a samples encoder panicked".into()))
                })
                .collect()
        })
    };
    // CPU-bound: off the async worker where the runtime allows it.
    let encoded = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(encode),
        _ => encode(),
    };
    let mut files = Vec::new();
    for group in encoded {
        files.extend(group.map_err(DeltaTableError::generic)?);
    }
    let uploads = files.into_iter().map(|(key, bytes, stats)| {
        let store = store.clone();
        async move {
            let values = partition_values(key);
            let dir = values
                .iter()
                .map(|(k, v)| format!("{k}={}", v.serialize_encoded()))
                .collect::<Vec<_>>()
                .join("/");
            let path = object_store::path::Path::parse(dir)
                .map_err(|e| DeltaTableError::generic(e.to_string()))?
                .clone()
                .join(format!("part-00001-{}-c000.zstd.parquet", uuid::Uuid::new_v4()).as_str());
            let size = bytes.len() as i64;
            store
                .put(&path, bytes.into())
                .await
                .map_err(|e| DeltaTableError::generic(e.to_string()))?;
            Ok::<_, DeltaTableError>(deltalake::kernel::Add {
                path: path.to_string(),
                size,
                partition_values: values
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.serialize())))
                    .collect(),
                modification_time: chrono::Utc::now().timestamp_millis(),
                data_change: true,
                stats: Some(serde_json::to_string(&stats)?),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
                clustering_provider: None,
            })
        }
    });
    futures::future::try_join_all(uploads).await
}

/// One partition's `samples` file: a row group per chunk of at most [`SAMPLES_CHUNK_ROWS`]
/// rows. The columns that hold one value per series (`profile_type`, `time`, `duration`,
/// the labels) are written from their runs (see [`crate::runs`]); `stack_id` and `value`
/// through arrow-rs with [`writer_properties`]. Returns the file and its Delta statistics,
/// as delta-rs would compute them from the file's metadata (the first `indexed` columns).
fn runs_file(
    file_schema: &arrow::datatypes::SchemaRef,
    series: &[(&TenantProfile, &stackdrift_model::Series)],
    indexed: DataSkippingNumIndexedCols,
) -> Result<(Vec<u8>, deltalake::protocol::Stats), deltalake::parquet::errors::ParquetError> {
    use crate::runs::{byte_array_chunk, int64_chunk};
    use deltalake::parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
    use deltalake::parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
    use deltalake::parquet::file::writer::SerializedFileWriter;

    let parquet = ArrowSchemaConverter::new().convert(file_schema)?;
    let mut props = writer_properties();
    add_encoded_arrow_schema_to_metadata(file_schema, &mut props);
    let mut file =
        SerializedFileWriter::new(Vec::new(), parquet.root_schema_ptr(), Arc::new(props))?;
    let factory = ArrowRowGroupWriterFactory::new(&file, file_schema.clone());
    let mut stats = FileStats::new(file_schema.fields().len());
    let profile_types: Vec<String> = series.iter().map(|(_, s)| s.profile_type.id()).collect();
    let mut first = 0;
    for (i, chunk) in samples_chunks(series, SAMPLES_CHUNK_ROWS).enumerate() {
        let types = &profile_types[first..first + chunk.len()];
        first += chunk.len();
        let mut writers: Vec<Option<_>> = factory
            .create_column_writers(i)?
            .into_iter()
            .map(Some)
            .collect();
        let mut group = file.next_row_group()?;
        for (c, field) in file_schema.fields().iter().enumerate() {
            let descr = parquet.column(c);
            let column = &mut stats.columns[c];
            match field.name().as_str() {
                "profile_type" => {
                    let runs: Vec<(Option<&[u8]>, usize)> = types
                        .iter()
                        .zip(chunk)
                        .map(|(t, (_, s))| (Some(t.as_bytes()), s.samples.len()))
                        .collect();
                    column.add_bytes(&runs);
                    let (bytes, close) = byte_array_chunk(descr, &runs)?;
                    group.append_column(&bytes, close)?;
                }
                "time" | "duration" => {
                    let time = field.name() == "time";
                    let runs: Vec<(Option<i64>, usize)> = chunk
                        .iter()
                        .map(|(tp, s)| {
                            let p = &tp.profile;
                            (
                                Some(if time { p.time_us } else { p.duration_us }),
                                s.samples.len(),
                            )
                        })
                        .collect();
                    column.add_i64(runs.iter().map(|(v, _)| *v), 0);
                    let (bytes, close) = int64_chunk(descr, &runs)?;
                    group.append_column(&bytes, close)?;
                }
                "stack_id" | "value" => {
                    let stack = field.name() == "stack_id";
                    let values: Vec<i64> = chunk
                        .iter()
                        .flat_map(|(_, s)| s.samples.iter())
                        .map(|(id, v)| if stack { stack_id_to_i64(*id) } else { *v })
                        .collect();
                    column.add_i64(values.iter().map(|v| Some(*v)), 0);
                    let array: arrow::array::ArrayRef =
                        Arc::new(arrow::array::Int64Array::from(values));
                    let Some(mut writer) = writers.get_mut(c).and_then(Option::take) else {
                        return Err(deltalake::parquet::errors::ParquetError::General(format!(
                            "no column writer for {}",
                            field.name()
                        )));
                    };
                    for leaf in compute_leaves(field, &array)? {
                        writer.write(&leaf)?;
                    }
                    writer.close()?.append_to_row_group(&mut group)?;
                }
                label => {
                    let runs: Vec<(Option<&[u8]>, usize)> = chunk
                        .iter()
                        .map(|(_, s)| (s.labels.get(label).map(str::as_bytes), s.samples.len()))
                        .collect();
                    column.add_bytes(&runs);
                    let (bytes, close) = byte_array_chunk(descr, &runs)?;
                    group.append_column(&bytes, close)?;
                }
            }
        }
        group.close()?;
    }
    let rows = series_rows(series) as i64;
    Ok((file.into_inner()?, stats.finish(file_schema, rows, indexed)))
}

/// Minimum, maximum and null count of each column of a file being written.
struct FileStats {
    columns: Vec<ColumnStats>,
}

#[derive(Default)]
struct ColumnStats {
    min_bytes: Option<Vec<u8>>,
    max_bytes: Option<Vec<u8>>,
    min_i64: Option<i64>,
    max_i64: Option<i64>,
    nulls: i64,
}

impl ColumnStats {
    fn add_bytes(&mut self, runs: &[(Option<&[u8]>, usize)]) {
        for (v, n) in runs {
            match v {
                Some(v) => {
                    if self.min_bytes.as_deref().is_none_or(|m| *v < m) {
                        self.min_bytes = Some(v.to_vec());
                    }
                    if self.max_bytes.as_deref().is_none_or(|m| *v > m) {
                        self.max_bytes = Some(v.to_vec());
                    }
                }
                None => self.nulls += *n as i64,
            }
        }
    }

    fn add_i64(&mut self, values: impl Iterator<Item = Option<i64>>, nulls: i64) {
        for v in values.flatten() {
            self.min_i64 = Some(self.min_i64.map_or(v, |m| m.min(v)));
            self.max_i64 = Some(self.max_i64.map_or(v, |m| m.max(v)));
        }
        self.nulls += nulls;
    }
}

impl FileStats {
    fn new(columns: usize) -> Self {
        Self {
            columns: (0..columns).map(|_| ColumnStats::default()).collect(),
        }
    }

    /// Delta's `stats` of the file, as delta-rs writes them: `numRecords`, and for each of
    /// the first `indexed` columns its minimum and maximum (timestamps as RFC 3339 UTC, cut
    /// to milliseconds) and its null count.
    fn finish(
        self,
        schema: &arrow::datatypes::SchemaRef,
        rows: i64,
        indexed: DataSkippingNumIndexedCols,
    ) -> deltalake::protocol::Stats {
        use deltalake::protocol::{ColumnCountStat, ColumnValueStat};
        let limit = match indexed {
            DataSkippingNumIndexedCols::AllColumns => usize::MAX,
            DataSkippingNumIndexedCols::NumColumns(n) => n as usize,
        };
        let mut stats = deltalake::protocol::Stats {
            num_records: rows,
            ..Default::default()
        };
        for (field, column) in schema.fields().iter().zip(self.columns).take(limit) {
            let name = field.name().clone();
            let value = |b: Option<Vec<u8>>, i: Option<i64>| -> Option<serde_json::Value> {
                match field.data_type() {
                    DataType::Utf8 => b.map(|b| String::from_utf8_lossy(&b).into_owned().into()),
                    DataType::Timestamp(..) => i.and_then(delta_timestamp).map(Into::into),
                    _ => i.map(Into::into),
                }
            };
            if let Some(min) = value(column.min_bytes, column.min_i64) {
                stats
                    .min_values
                    .insert(name.clone(), ColumnValueStat::Value(min));
            }
            if let Some(max) = value(column.max_bytes, column.max_i64) {
                stats
                    .max_values
                    .insert(name.clone(), ColumnValueStat::Value(max));
            }
            stats
                .null_count
                .insert(name, ColumnCountStat::Value(column.nulls));
        }
        stats
    }
}

/// A timestamp in µs as Delta's statistics write it (delta-rs' format): seconds, plus
/// milliseconds (cut, not rounded) when there is a fraction.
fn delta_timestamp(us: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_micros(us)?;
    let format = if us.rem_euclid(1_000_000) == 0 {
        "%Y-%m-%dT%H:%M:%SZ"
    } else {
        "%Y-%m-%dT%H:%M:%S%.3fZ"
    };
    Some(t.format(format).to_string())
}

/// Splits `items` into at most `n` groups of about equal row counts (largest first, each to
/// the group with the fewest rows so far); no group is empty.
fn balance_by_rows<T>(mut items: Vec<T>, n: usize, rows: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    items.sort_by_key(|item| std::cmp::Reverse(rows(item)));
    // No more groups than items: the first `n` items each open one.
    let n = n.max(1).min(items.len());
    let mut groups: Vec<(usize, Vec<T>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for item in items {
        if let Some(g) = groups.iter_mut().min_by_key(|(r, _)| *r) {
            g.0 += rows(&item);
            g.1.push(item);
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Parquet writer properties of the files the ingester writes (public for the benches).
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .build()
}

/// Rows per row group in files the compactor writes. Its files are sorted by profile type and
/// time, so small row groups span short time slices, and a query over part of a file's time
/// range skips the rest by row-group statistics.
const COMPACTED_ROW_GROUP_ROWS: usize = 65_536;

/// [`writer_properties`] for compacted files.
pub(crate) fn compacted_writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(COMPACTED_ROW_GROUP_ROWS))
        .build()
}

/// Label columns currently in the `samples` table, in table order.
fn current_label_columns(table: &DeltaTable) -> Result<Vec<String>, StorageError> {
    let fixed: HashSet<String> = samples_head()
        .iter()
        .chain(samples_tail().iter())
        .map(|f| f.name().clone())
        .collect();
    let schema = table
        .snapshot()
        .map_err(StorageError::delta(SAMPLES))?
        .schema();
    Ok(schema
        .fields()
        .map(|f| f.name().clone())
        .filter(|n| !fixed.contains(n))
        .collect())
}

/// A Delta application ID unique to this process (see `Store::writer_id`): std's randomly
/// keyed hasher over the process ID and the time.
fn writer_id() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = std::hash::RandomState::new().hash_one((std::process::id(), nanos));
    format!("stackdrift-ingest-{digest:016x}")
}

async fn open_or_create(
    config: &StorageConfig,
    name: &'static str,
    schema: &arrow::datatypes::SchemaRef,
    partitions: &[&str],
) -> Result<DeltaTable, StorageError> {
    let url: Url = config.table_url(name)?;
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .map_err(StorageError::delta(name))?
        .with_storage_options(config.delta_options())
        .build()
        .map_err(StorageError::delta(name))?;
    match table.load().await {
        Ok(()) => return Ok(table),
        Err(DeltaTableError::NotATable(_)) => {}
        Err(e) => {
            return Err(StorageError::Delta {
                table: name,
                source: e,
            });
        }
    }
    let fields: Vec<StructField> = schema
        .fields()
        .iter()
        .map(|f| StructField::try_from_arrow(f.as_ref()))
        .collect::<Result<_, _>>()
        .map_err(|e| StorageError::Internal(format!("schema of {name}: {e}")))?;
    let created = table
        .create()
        .with_table_name(name)
        .with_columns(fields)
        .with_partition_columns(partitions.iter().copied())
        .with_save_mode(SaveMode::Ignore)
        .with_configuration_property(deltalake::TableProperty::CheckpointInterval, Some("20"))
        .await;
    match created {
        Ok(t) => {
            info!(table = name, %url, "created table");
            Ok(t)
        }
        Err(e) => {
            // Another process may have created it at the same moment: load what it made.
            let mut again = DeltaTableBuilder::from_url(url)
                .map_err(StorageError::delta(name))?
                .with_storage_options(config.delta_options())
                .build()
                .map_err(StorageError::delta(name))?;
            if again.load().await.is_ok() {
                return Ok(again);
            }
            Err(StorageError::Delta {
                table: name,
                source: e,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::samples_rows;

    #[test]
    fn a_taken_version_is_read_for_schema_changes_and_this_commit() {
        let taken = |lines: &[&str]| {
            let entry = bytes::Bytes::from(lines.join("\n") + "\n");
            taken_by(&entry, 5, "stackdrift-ingest-1", 7)
        };
        let add = r#"{"add":{"path":"a.parquet","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}"#;
        let info = r#"{"commitInfo":{"operation":"WRITE"}}"#;
        let txn = |app: &str, n: i64| format!(r#"{{"txn":{{"appId":"{app}","version":{n}}}}}"#);
        let metadata = r#"{"metaData":{"id":"t","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[]}","partitionColumns":[],"configuration":{},"createdTime":1}}"#;
        let protocol = r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#;

        // Other writers' appends and compactions are stepped over.
        assert_eq!(taken(&[add, &txn("x", 3), info]), Taken::Compatibly);
        assert_eq!(
            taken(&[r#"{"remove":{"path":"a.parquet","dataChange":true}}"#]),
            Taken::Compatibly
        );
        // Schema and protocol changes are not.
        assert_eq!(taken(&[add, info, metadata]), Taken::WithNewDefinition);
        assert_eq!(taken(&[protocol]), Taken::WithNewDefinition);
        // What cannot be read is taken for a change (the caller then reloads the table).
        assert_eq!(taken(&["{\"add\":"]), Taken::WithNewDefinition);
        // This append's own transaction action: the commit is there; another number of
        // this process or another process's number is someone else's commit.
        let mine = txn("stackdrift-ingest-1", 7);
        assert_eq!(taken(&[add, &mine]), Taken::ByThisCommit);
        assert_eq!(
            taken(&[add, &txn("stackdrift-ingest-1", 6)]),
            Taken::Compatibly
        );
        assert_eq!(
            taken(&[add, &txn("stackdrift-ingest-2", 7)]),
            Taken::Compatibly
        );
    }

    #[test]
    fn balance_by_rows_spreads_partitions_evenly_and_keeps_every_one() {
        let items: Vec<(usize, usize)> = [50, 10, 40, 30, 20, 5].into_iter().enumerate().collect();
        let groups = balance_by_rows(items, 2, |(_, rows)| *rows);
        let rows: Vec<usize> = groups
            .iter()
            .map(|g| g.iter().map(|(_, r)| r).sum())
            .collect();
        assert_eq!(rows, vec![80, 75]);
        let mut keys: Vec<usize> = groups.iter().flatten().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        assert_eq!(keys, (0..6).collect::<Vec<_>>());

        // Fewer partitions than encoders: one group each, none empty; none at all: no group.
        assert_eq!(balance_by_rows(vec![3], 8, |r| *r).len(), 1);
        assert!(balance_by_rows(Vec::<usize>::new(), 8, |r| *r).is_empty());
    }

    /// A profile of `service` at `time_us` with two profile types, `stacks` stacks each.
    fn profile(
        service: &str,
        time_us: i64,
        labels: &[(&str, &str)],
        stacks: usize,
    ) -> TenantProfile {
        use stackdrift_model::{Frame, LabelLimits, Labels, ProfileBuilder};
        let mut b = ProfileBuilder::new(16);
        let mut all = vec![("service_name", service)];
        all.extend_from_slice(labels);
        let labels = Labels::new(all, &LabelLimits::default()).unwrap();
        for (k, pt) in [
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
            "process_cpu:samples:count:cpu:nanoseconds",
        ]
        .into_iter()
        .enumerate()
        {
            let series = b.series(&labels, &pt.parse().unwrap());
            for i in 0..stacks {
                let id = b.stack(vec![
                    Frame::named(format!("f{i}").as_str()),
                    Frame::named("main"),
                ]);
                b.add(series, id, (i * 10 + k + 1) as i64).unwrap();
            }
        }
        TenantProfile {
            tenant: "team a/b".to_owned(),
            profile: b.finish(time_us, 10_000_000),
        }
    }

    async fn read_rows(
        store: &Arc<dyn object_store::ObjectStore>,
        path: &str,
    ) -> arrow::array::RecordBatch {
        let bytes = store
            .get(&object_store::path::Path::parse(path).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    /// The files written from runs hold the rows `DeltaWriter` writes for the same series,
    /// in the same partition directories, with the same add-action statistics.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_from_runs_match_what_delta_writer_writes() {
        use deltalake::operations::write::writer::WriterConfig;
        let profiles = vec![
            profile(
                "svc/a%b c",
                1_700_000_000_123_456,
                &[("region", "eu"), ("pod", "p1")],
                5,
            ),
            profile("svc/a%b c", 1_700_000_001_000_000, &[("region", "us")], 3),
            // More rows than one chunk: two row groups.
            profile(
                "api",
                1_700_000_002_000_000,
                &[("pod", "p2")],
                SAMPLES_CHUNK_ROWS / 2 + 7,
            ),
        ];
        let schema = samples_schema(["pod", "region"]);
        let indexed = DataSkippingNumIndexedCols::NumColumns(32);
        let config = WriterConfig::new(
            schema.clone(),
            SAMPLES_PARTITIONS.iter().map(|c| (*c).to_owned()).collect(),
            Some(writer_properties()),
            None,
            None,
            indexed,
            None,
        );
        let file_schema = config.file_schema();
        let parts = samples_partitions(&profiles);
        assert_eq!(parts.len(), 2);

        let ours: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let adds = write_runs_files(
            ours.clone(),
            &file_schema,
            std::slice::from_ref(&parts),
            indexed,
        )
        .await
        .unwrap();

        let theirs: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let writer = tokio::spawn(write_partitions(theirs.clone(), config, rx));
        for (key, series) in &parts {
            let batch = samples_rows(series, &schema, &file_schema).unwrap();
            tx.send((key.clone(), batch)).await.unwrap();
        }
        drop(tx);
        let expected = writer.await.unwrap().unwrap();

        assert_eq!(adds.len(), expected.len());
        for want in &expected {
            let got = adds
                .iter()
                .find(|a| a.partition_values == want.partition_values)
                .unwrap_or_else(|| panic!("no file for {:?}", want.partition_values));
            let dir = |p: &str| p.rsplit_once('/').unwrap().0.to_owned();
            assert_eq!(dir(&got.path), dir(&want.path));
            let stats = |a: &deltalake::kernel::Add| -> serde_json::Value {
                serde_json::from_str(a.stats.as_deref().unwrap()).unwrap()
            };
            assert_eq!(stats(got), stats(want), "{}", want.path);
            assert_eq!(
                read_rows(&ours, &got.path).await,
                read_rows(&theirs, &want.path).await,
                "{}",
                want.path
            );
        }
        // The time column's statistics are cut to milliseconds, as delta-rs writes them.
        let svc = adds.iter().find(|a| a.path.contains("svc")).unwrap();
        assert!(
            svc.stats
                .as_deref()
                .unwrap()
                .contains("\"2023-11-14T22:13:20.123Z\""),
            "{:?}",
            svc.stats
        );
    }
}
