//! Table maintenance for the compactor: the data files of a pinned table version with their
//! stats and tags, rewriting a set of them (sorted, optionally filtered and downsampled) and
//! replacing or removing them in one atomic Delta commit.
//!
//! Nothing here decides *what* to rewrite; `stackdrift-compactor` plans that. The guarantees
//! are the ones every plan relies on: new files are written first and become visible only
//! with the commit that removes the files they replace, so a reader sees the old set or the
//! new set, never both and never neither. A crash before the commit leaves unreferenced files
//! that vacuum deletes after its grace period.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::functions::expr_fn::date_bin;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::prelude::{Expr, SessionConfig, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add, Remove};
use deltalake::operations::write::writer::{DeltaWriter, WriterConfig};
use deltalake::protocol::DeltaOperation;
use deltalake::table::config::TablePropertiesExt;
use futures::{StreamExt, TryStreamExt};

use crate::error::StorageError;
use crate::schema::{ROLLUPS, SAMPLES, STACKS};
use crate::store::{COMMIT_RETRIES, compacted_writer_properties};

/// File stats may round times (delta-rs writes them in ms): slices pick files with this
/// much slack, and the time filter decides each row.
const STATS_SLACK_US: i64 = 1_000_000;

/// Tag on compactor-written files: the time resolution of their rows in µs (absent or 0: raw
/// rows as ingested).
pub const TAG_RESOLUTION: &str = "stackdrift.resolution_us";
/// Tag on compactor-written `samples` files: the profile types they hold, comma-separated.
pub const TAG_PROFILE_TYPES: &str = "stackdrift.profile_types";
/// Tag on compactor-written `samples` files: the start (µs) of the closed time window whose
/// files they replaced, or `open` for a merge of a window that was still receiving data.
pub const TAG_WINDOW: &str = "stackdrift.window";
/// Tag on compactor-written `samples` files, and on the `rollups` files that total them: the
/// rollup ID. An hour's rows can be read from `rollups` instead of `samples` when every
/// `samples` file with rows in that hour carries a rollup ID (the rollup rows of those IDs for
/// that hour then sum exactly those files' rows).
pub const TAG_ROLLUP: &str = "stackdrift.rollup";
/// Hour of the rollups.
pub const ROLLUP_HOUR_US: i64 = 3_600_000_000;

/// Tag on compactor-written `stacks` files: each stack ID appears once in the file.
pub const TAG_DEDUPED: &str = "stackdrift.deduped";

/// One data file of a table version.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path relative to the table root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows, when the file has stats.
    pub rows: Option<u64>,
    /// Partition values (`tenant`, `service_name`, and `day` as `YYYY-MM-DD` for samples).
    pub partition: BTreeMap<String, String>,
    /// Smallest `time` in the file (µs), from its stats.
    pub min_time_us: Option<i64>,
    /// Largest `time` in the file (µs), from its stats.
    pub max_time_us: Option<i64>,
    /// Tags (see the `TAG_*` constants).
    pub tags: HashMap<String, String>,
    /// When the file was written, ms since the epoch.
    pub modified_ms: i64,
    add: Add,
}

impl DataFile {
    /// A file description that is not (yet) in a table, for planning: `path`, `size`, time
    /// bounds and tags; no partition values or row count.
    pub fn described(
        path: &str,
        size: u64,
        time_us: Option<(i64, i64)>,
        tags: &[(&str, &str)],
    ) -> Self {
        Self {
            path: path.to_owned(),
            size,
            rows: None,
            partition: BTreeMap::new(),
            min_time_us: time_us.map(|t| t.0),
            max_time_us: time_us.map(|t| t.1),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            modified_ms: 0,
            add: Add {
                path: path.to_owned(),
                size: i64::try_from(size).unwrap_or(i64::MAX),
                ..Add::default()
            },
        }
    }

    /// A tag's value.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.get(name).map(String::as_str)
    }
}

/// Hourly stack totals: profile type → (hour start µs, stack ID) → sum of `value`.
pub type Rollup = HashMap<String, HashMap<(i64, i64), i64>>;

/// Files written by a rewrite, not yet committed.
#[derive(Debug, Default)]
pub struct Written {
    adds: Vec<Add>,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Hourly stack totals of the rows written, when the rewrite was asked for them:
    /// profile type → (hour start µs, stack ID) → sum of `value`.
    pub rollup: Rollup,
}

impl Written {
    /// Files written.
    pub fn files(&self) -> usize {
        self.adds.len()
    }

    /// Adds another rewrite's files to this one (to commit them together).
    pub fn extend(&mut self, other: Written) {
        self.adds.extend(other.adds);
        self.rows += other.rows;
        self.bytes += other.bytes;
        for (t, sums) in other.rollup {
            let mine = self.rollup.entry(t).or_default();
            for (k, v) in sums {
                *mine.entry(k).or_default() += v;
            }
        }
    }
}

/// What a samples rewrite does besides merging and sorting.
#[derive(Debug, Clone, Default)]
pub struct SamplesRewrite {
    /// Rows of these profile types are dropped (retention).
    pub drop_profile_types: Vec<String>,
    /// Sum rows into buckets of this many µs (downsampling); `None` keeps rows as they are.
    pub bucket_us: Option<i64>,
    /// Tags put on every written file.
    pub tags: HashMap<String, String>,
    /// Also total the written rows per (profile type, hour, stack) into [`Written::rollup`],
    /// and tag the files with this rollup ID ([`TAG_ROLLUP`]).
    pub rollup_id: Option<String>,
}

/// What a commit records in the table history.
#[derive(Debug, Clone)]
pub enum CommitKind {
    /// Files merged or downsampled; the data is the same (sums included).
    Optimize {
        /// Human-readable description of what was merged (kept in the commit info).
        what: String,
    },
    /// Rows deleted (retention).
    Delete {
        /// SQL predicate over the table of what was deleted (see [`sql_string`]); commits
        /// racing with this one are checked against it.
        predicate: String,
    },
}

/// Where the slices of one rewrite go: its writer, the profile types and rollup seen so far.
struct Sink<'a> {
    writer: &'a mut DeltaWriter,
    types: &'a mut BTreeSet<String>,
    rollup: &'a mut Rollup,
}

/// A table pinned at one version, for planning and rewriting.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    name: &'static str,
    table: DeltaTable,
    target_file_bytes: u64,
    memory_limit: usize,
}

impl TableSnapshot {
    pub(crate) fn new(name: &'static str, table: DeltaTable) -> Self {
        Self {
            name,
            table,
            target_file_bytes: 128 << 20,
            memory_limit: 1 << 30,
        }
    }

    /// Size at which written files roll over to a new file.
    pub fn with_target_file_bytes(mut self, bytes: u64) -> Self {
        self.target_file_bytes = bytes.max(1 << 20);
        self
    }

    /// Memory pool of the rewrite queries; sorts and aggregations beyond it spill to disk.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes.max(64 << 20);
        self
    }

    /// Table name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The pinned version.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// Every data file of the pinned version.
    pub fn files(&self) -> Result<Vec<DataFile>, StorageError> {
        let state = self
            .table
            .snapshot()
            .map_err(StorageError::delta(self.name))?;
        let mut out = Vec::new();
        for view in state.log_data().iter() {
            #[allow(deprecated)] // the Add is what a Remove and a scan selection need
            let add = view.add_action();
            let partition = add
                .partition_values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect();
            let (rows, min_time_us, max_time_us) = parse_stats(add.stats.as_deref());
            let tags = add
                .tags
                .iter()
                .flatten()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
                .collect();
            out.push(DataFile {
                modified_ms: add.modification_time,
                path: add.path.clone(),
                size: u64::try_from(add.size).unwrap_or(0),
                rows,
                partition,
                min_time_us,
                max_time_us,
                tags,
                add,
            });
        }
        Ok(out)
    }

    /// A session for rewrite queries: bounded memory, spilling to the OS temp directory.
    fn session(&self) -> Result<SessionContext, StorageError> {
        // A fair pool: with a greedy one, the first sorter to grow took the whole pool and the
        // others could not even reserve what they need to spill. One partition: the rewrite
        // runs beside ingest and queries, and a single aggregate + sort gets the whole pool.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(
                datafusion::execution::memory_pool::FairSpillPool::new(self.memory_limit),
            ))
            .build_arc()?;
        let mut config = SessionConfig::new()
            .with_batch_size(8192)
            .with_target_partitions(1);
        // Read strings as plain Utf8, not views: a sort buffers its input batches, and view
        // arrays keep (and are charged for) the whole decoded Parquet page buffers they point
        // into, so a day's downsampling ran out of its memory pool at 1,000 stacks per profile.
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        self.table
            .update_datafusion_session(&ctx.state())
            .map_err(StorageError::delta(self.name))?;
        Ok(ctx)
    }

    /// A DataFrame over exactly `files`.
    async fn read(
        &self,
        ctx: &SessionContext,
        files: &[DataFile],
    ) -> Result<datafusion::prelude::DataFrame, StorageError> {
        let provider = self
            .table
            .table_provider()
            .with_session(Arc::new(ctx.state()))
            .with_adds(files.iter().map(|f| f.add.clone()))
            .await
            .map_err(StorageError::DataFusion)?;
        Ok(ctx.read_table(provider)?)
    }

    /// The profile types present in `files` (a scan of one column).
    pub async fn distinct_profile_types(
        &self,
        files: &[DataFile],
    ) -> Result<Vec<String>, StorageError> {
        self.expect(SAMPLES)?;
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.session()?;
        let df = self
            .read(&ctx, files)
            .await?
            .select(vec![col("profile_type")])?
            .distinct()?;
        let mut out = Vec::new();
        for batch in df.collect().await? {
            let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
            let strings = column.as_string::<i32>();
            out.extend(strings.iter().flatten().map(str::to_owned));
        }
        out.sort();
        Ok(out)
    }

    /// Writes the rows of `files` (all of one partition) into new files sorted by
    /// (profile_type, time, stack_id), after `spec`'s filter and downsampling. Nothing is
    /// visible until [`TableSnapshot::commit`].
    pub async fn rewrite_samples(
        &self,
        files: &[DataFile],
        spec: &SamplesRewrite,
    ) -> Result<Written, StorageError> {
        self.expect(SAMPLES)?;
        if files.is_empty() {
            return Ok(Written::default());
        }
        let schema = self.arrow_schema()?;
        let mut writer = self.writer(&schema)?;
        let mut written = Written::default();
        let mut types: BTreeSet<String> = BTreeSet::new();
        // Downsampling aggregates one time slice at a time (an hour, or the bucket when that
        // is wider), so its hash table holds one slice's groups, not a whole day's; each
        // slice reads only the files whose time range overlaps it.
        let slices: Vec<Option<(i64, i64)>> = match spec.bucket_us.filter(|b| *b > 0) {
            Some(bucket) => {
                let slice = bucket.max(3_600_000_000);
                let lo = files.iter().filter_map(|f| f.min_time_us).min();
                let hi = files.iter().filter_map(|f| f.max_time_us).max();
                let all_stats = files
                    .iter()
                    .all(|f| f.min_time_us.is_some() && f.max_time_us.is_some());
                match (lo, hi) {
                    (Some(lo), Some(hi)) if all_stats => {
                        let first = (lo - STATS_SLACK_US).div_euclid(slice) * slice;
                        (0..)
                            .map(|i| first + i * slice)
                            .take_while(|start| *start <= hi + STATS_SLACK_US)
                            .map(|start| Some((start, start + slice)))
                            .collect()
                    }
                    _ => vec![None],
                }
            }
            None => vec![None],
        };
        for slice in slices {
            let chosen: Vec<DataFile> = match slice {
                Some((start, end)) => files
                    .iter()
                    .filter(|f| {
                        f.min_time_us.is_none_or(|m| m - STATS_SLACK_US < end)
                            && f.max_time_us.is_none_or(|m| m + STATS_SLACK_US >= start)
                    })
                    .cloned()
                    .collect(),
                None => files.to_vec(),
            };
            if chosen.is_empty() {
                continue;
            }
            let mut sink = Sink {
                writer: &mut writer,
                types: &mut types,
                rollup: &mut written.rollup,
            };
            let result = self
                .rewrite_slice(&chosen, spec, slice, &schema, &mut sink)
                .await;
            match result {
                Ok(rows) => written.rows += rows,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        let mut tags = spec.tags.clone();
        let types: Vec<String> = types.into_iter().collect();
        tags.insert(TAG_PROFILE_TYPES.to_owned(), types.join(","));
        if let Some(id) = &spec.rollup_id {
            tags.insert(TAG_ROLLUP.to_owned(), id.clone());
        }
        self.close(writer, &tags, &mut written).await?;
        Ok(written)
    }

    /// One slice of [`TableSnapshot::rewrite_samples`] (`None`: all rows), into `writer`.
    /// Returns the rows written.
    async fn rewrite_slice(
        &self,
        files: &[DataFile],
        spec: &SamplesRewrite,
        slice: Option<(i64, i64)>,
        schema: &SchemaRef,
        sink: &mut Sink<'_>,
    ) -> Result<u64, StorageError> {
        let ctx = self.session()?;
        let mut df = self.read(&ctx, files).await?;
        if let Some((start, end)) = slice {
            let at = |us: i64| {
                lit(ScalarValue::TimestampMicrosecond(
                    Some(us),
                    Some("UTC".into()),
                ))
            };
            df = df.filter(col("time").gt_eq(at(start)).and(col("time").lt(at(end))))?;
        }
        if !spec.drop_profile_types.is_empty() {
            let list: Vec<Expr> = spec
                .drop_profile_types
                .iter()
                .map(|t| lit(t.as_str()))
                .collect();
            df = df.filter(col("profile_type").in_list(list, true))?;
        }
        if let Some(bucket_us) = spec.bucket_us.filter(|b| *b > 0) {
            let stride = lit(ScalarValue::IntervalMonthDayNano(Some(
                arrow::datatypes::IntervalMonthDayNano::new(0, 0, bucket_us.saturating_mul(1000)),
            )));
            let origin = lit(ScalarValue::TimestampMicrosecond(
                Some(0),
                Some("UTC".into()),
            ));
            let group: Vec<Expr> = schema
                .fields()
                .iter()
                .filter_map(|f| match f.name().as_str() {
                    "duration" | "value" => None,
                    "time" => {
                        Some(date_bin(stride.clone(), col("time"), origin.clone()).alias("time"))
                    }
                    name => Some(col(quoted(name))),
                })
                .collect();
            df = df.aggregate(group, vec![sum(col("value")).alias("value")])?;
            let select: Vec<Expr> = schema
                .fields()
                .iter()
                .map(|f| match f.name().as_str() {
                    "duration" => lit(bucket_us).alias("duration"),
                    name => col(quoted(name)),
                })
                .collect();
            df = df.select(select)?;
        }
        let df = df.sort(vec![
            col("profile_type").sort(true, false),
            col("time").sort(true, false),
            col("stack_id").sort(true, false),
        ])?;
        let mut stream = df.execute_stream().await?;
        let mut rows = 0;
        // Sorted by profile type: a change of value is a new type.
        let mut last: Option<String> = None;
        while let Some(batch) = stream.try_next().await? {
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = conform(&batch, schema)?;
            if let Some(pt) = batch.column_by_name("profile_type") {
                for t in pt.as_string::<i32>().iter().flatten() {
                    if last.as_deref() != Some(t) {
                        sink.types.insert(t.to_owned());
                        last = Some(t.to_owned());
                    }
                }
            }
            if spec.rollup_id.is_some() {
                add_to_rollup(&batch, sink.rollup)?;
            }
            rows += batch.num_rows() as u64;
            sink.writer
                .write(&batch)
                .await
                .map_err(StorageError::delta(self.name))?;
        }
        Ok(rows)
    }

    /// Appends (one commit) the hourly totals `rollup` of the `samples` files tagged
    /// `rollup_id` in the partition `partition` (tenant, service_name, day). Call on the
    /// `rollups` table, before committing those `samples` files: until then the rows are
    /// unreferenced, and readers ignore them.
    pub async fn append_rollup(
        &mut self,
        partition: &BTreeMap<String, String>,
        rollup_id: &str,
        rollup: &Rollup,
    ) -> Result<(), StorageError> {
        self.expect(ROLLUPS)?;
        if rollup.is_empty() {
            return Ok(());
        }
        let part = |k: &str| {
            partition
                .get(k)
                .cloned()
                .ok_or_else(|| StorageError::Internal(format!("rollup without {k}")))
        };
        let (tenant, service, day) = (part("tenant")?, part("service_name")?, part("day")?);
        let day = chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d")
            .map_err(|e| StorageError::Internal(format!("day {day:?}: {e}")))?;
        let day = (day - chrono::NaiveDate::default()).num_days() as i32;
        let mut rows: Vec<(&str, i64, i64, i64)> = rollup
            .iter()
            .flat_map(|(t, sums)| {
                sums.iter()
                    .map(move |((h, id), v)| (t.as_str(), *h, *id, *v))
            })
            .collect();
        rows.sort_unstable();
        let n = rows.len();
        let schema = crate::schema::rollups_schema();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::StringArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                    .with_timezone("UTC"),
            ),
            Arc::new(arrow::array::Int64Array::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
            Arc::new(arrow::array::Int64Array::from_iter_values(
                rows.iter().map(|r| r.3),
            )),
            Arc::new(arrow::array::StringArray::from_iter_values(
                std::iter::repeat_n(rollup_id, n),
            )),
            Arc::new(arrow::array::StringArray::from_iter_values(
                std::iter::repeat_n(tenant.as_str(), n),
            )),
            Arc::new(arrow::array::StringArray::from_iter_values(
                std::iter::repeat_n(service.as_str(), n),
            )),
            Arc::new(arrow::array::Date32Array::from_iter_values(
                std::iter::repeat_n(day, n),
            )),
        ];
        let batch = RecordBatch::try_new(schema, columns)?;
        let table_schema = self.arrow_schema()?;
        let batch = conform(&batch, &table_schema)?;
        let mut writer = self.writer(&table_schema)?;
        if let Err(e) = writer.write(&batch).await {
            let _ = writer.abort().await;
            return Err(StorageError::delta(self.name)(e));
        }
        let mut written = Written::default();
        let tags = HashMap::from([(TAG_ROLLUP.to_owned(), rollup_id.to_owned())]);
        self.close(writer, &tags, &mut written).await?;
        let mut actions = Vec::new();
        for mut add in written.adds {
            add.data_change = true;
            actions.push(Action::Add(add));
        }
        let state = self
            .table
            .snapshot()
            .map_err(StorageError::delta(self.name))?;
        CommitBuilder::default()
            .with_actions(actions)
            .with_max_retries(COMMIT_RETRIES)
            .build(
                Some(state),
                self.table.log_store(),
                DeltaOperation::Write {
                    mode: deltalake::protocol::SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await
            .map_err(StorageError::delta(self.name))?;
        self.table
            .update_incremental(None)
            .await
            .map_err(StorageError::delta(self.name))?;
        Ok(())
    }

    /// Writes the rows of `files` (all of one `stacks` partition) with each stack ID once.
    /// Copies of a stack are identical rows (the ID is a hash of the frames), so the first
    /// copy is kept.
    pub async fn rewrite_stacks(&self, files: &[DataFile]) -> Result<Written, StorageError> {
        self.expect(STACKS)?;
        if files.is_empty() {
            return Ok(Written::default());
        }
        let ctx = self.session()?;
        let schema = self.arrow_schema()?;
        let df = self.read(&ctx, files).await?;
        let mut stream = df.execute_stream().await?;
        let mut writer = self.writer(&schema)?;
        let mut seen: HashSet<i64> = HashSet::new();
        let mut written = Written::default();
        while let Some(batch) = stream.try_next().await? {
            let batch = conform(&batch, &schema)?;
            let ids = batch
                .column_by_name("stack_id")
                .ok_or_else(|| StorageError::Internal("stacks without stack_id".into()))?
                .as_primitive::<Int64Type>();
            let keep: BooleanArray = ids
                .iter()
                .map(|id| Some(id.is_some_and(|id| seen.insert(id))))
                .collect();
            let batch = arrow::compute::filter_record_batch(&batch, &keep)?;
            if batch.num_rows() == 0 {
                continue;
            }
            written.rows += batch.num_rows() as u64;
            if let Err(e) = writer.write(&batch).await {
                let _ = writer.abort().await;
                return Err(StorageError::delta(self.name)(e));
            }
        }
        let tags = HashMap::from([(TAG_DEDUPED.to_owned(), "1".to_owned())]);
        self.close(writer, &tags, &mut written).await?;
        Ok(written)
    }

    /// Commits, in one atomic commit, the removal of `remove` and the addition of `written`.
    /// Concurrent appends (ingest) do not conflict; the commit is retried past them. Returns
    /// the new table version.
    pub async fn commit(
        &mut self,
        remove: &[DataFile],
        written: Written,
        kind: CommitKind,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        let data_change = matches!(kind, CommitKind::Delete { .. });
        let mut actions: Vec<Action> = Vec::with_capacity(remove.len() + written.adds.len());
        for f in remove {
            actions.push(Action::Remove(Remove {
                path: f.add.path.clone(),
                deletion_timestamp: Some(now_ms),
                data_change,
                extended_file_metadata: Some(true),
                partition_values: Some(f.add.partition_values.clone()),
                size: Some(f.add.size),
                deletion_vector: None,
                tags: f.add.tags.clone(),
                base_row_id: None,
                default_row_commit_version: None,
            }));
        }
        for mut add in written.adds {
            add.data_change = data_change;
            actions.push(Action::Add(add));
        }
        if actions.is_empty() {
            return self
                .version()
                .ok_or_else(|| StorageError::Internal("table without a version".into()));
        }
        let operation = match kind {
            CommitKind::Optimize { what } => DeltaOperation::Optimize {
                predicate: Some(what),
                target_size: i64::try_from(self.target_file_bytes).unwrap_or(i64::MAX),
            },
            CommitKind::Delete { predicate } => DeltaOperation::Delete {
                predicate: Some(predicate),
            },
        };
        let state = self
            .table
            .snapshot()
            .map_err(StorageError::delta(self.name))?;
        let finalized = CommitBuilder::default()
            .with_actions(actions)
            .with_max_retries(COMMIT_RETRIES)
            .build(Some(state), self.table.log_store(), operation)
            .await
            .map_err(StorageError::delta(self.name))?;
        let version = finalized.version();
        // Later commits of the same pass read from here: the files this one removed are gone
        // from their view, so they cannot conflict with it.
        self.table
            .update_incremental(None)
            .await
            .map_err(StorageError::delta(self.name))?;
        Ok(version)
    }

    /// Deletes files no version within `grace` of `now_ms` references: files removed by
    /// commits older than the grace period, and files no commit ever added (left by a writer
    /// that stopped before its commit) once they are older than the grace period. With
    /// `dry_run`, only lists them. Returns the paths of the files that were there to delete.
    ///
    /// delta-rs plans the vacuum (its `Full` mode: expired tombstones, plus a listing for
    /// files no commit added) but does not delete: a tombstone stays in the log until a
    /// checkpoint drops it, a week after the removal by default, and delta-rs would issue a
    /// DELETE for every such file at every pass (and write two commits recording the vacuum),
    /// long after the file is gone. Here the plan is intersected with one listing of the
    /// table, and only files still present are deleted; a pass with nothing to delete
    /// neither deletes nor commits.
    pub async fn vacuum(
        &self,
        grace: std::time::Duration,
        dry_run: bool,
        now_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        #[derive(Debug)]
        struct At(i64);
        impl deltalake::operations::vacuum::Clock for At {
            fn current_timestamp_millis(&self) -> i64 {
                self.0
            }
        }
        let grace = chrono::Duration::from_std(grace)
            .map_err(|e| StorageError::Internal(format!("vacuum grace: {e}")))?;
        let (_, plan) = self
            .table
            .clone()
            .vacuum()
            .with_retention_period(grace)
            .with_enforce_retention_duration(false)
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .with_dry_run(true)
            .with_clock(Arc::new(At(now_ms)))
            .await
            .map_err(StorageError::delta(self.name))?;
        if plan.files_deleted.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.table.object_store();
        // The listed locations themselves are deleted, not paths rebuilt from the plan's
        // strings: `Path::from` would escape the `%` of an escaped partition value again.
        let present: HashMap<String, object_store::path::Path> = store
            .list(None)
            .map_ok(|meta| (meta.location.to_string(), meta.location))
            .try_collect()
            .await
            .map_err(|e| StorageError::delta(self.name)(e.into()))?;
        let doomed: Vec<object_store::path::Path> = plan
            .files_deleted
            .iter()
            .filter_map(|p| present.get(p).cloned())
            .collect();
        if dry_run || doomed.is_empty() {
            return Ok(doomed.iter().map(|p| p.to_string()).collect());
        }
        let mut deleted = Vec::with_capacity(doomed.len());
        let locations =
            futures::stream::iter(doomed.into_iter().map(Ok).collect::<Vec<_>>()).boxed();
        let mut results = store.delete_stream(locations);
        while let Some(result) = results.next().await {
            match result {
                Ok(path) => deleted.push(path.to_string()),
                // Deleted by another compactor meanwhile: gone, as wanted, but not by us.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(StorageError::delta(self.name)(e.into())),
            }
        }
        Ok(deleted)
    }

    /// Closes `writer` and records its files, tagged with `tags`, in `written`.
    async fn close(
        &self,
        writer: DeltaWriter,
        tags: &HashMap<String, String>,
        written: &mut Written,
    ) -> Result<(), StorageError> {
        let adds = writer
            .close()
            .await
            .map_err(StorageError::delta(self.name))?;
        written.bytes = adds
            .iter()
            .map(|a| u64::try_from(a.size).unwrap_or(0))
            .sum();
        written.adds = tagged(adds, tags);
        Ok(())
    }

    fn expect(&self, name: &str) -> Result<(), StorageError> {
        if self.name == name {
            Ok(())
        } else {
            Err(StorageError::Internal(format!(
                "{name} operation on table {}",
                self.name
            )))
        }
    }

    fn arrow_schema(&self) -> Result<SchemaRef, StorageError> {
        Ok(self
            .table
            .snapshot()
            .map_err(StorageError::delta(self.name))?
            .snapshot()
            .arrow_schema())
    }

    fn writer(&self, schema: &SchemaRef) -> Result<DeltaWriter, StorageError> {
        let state = self
            .table
            .snapshot()
            .map_err(StorageError::delta(self.name))?;
        let partitions = state.metadata().partition_columns().to_vec();
        let config = WriterConfig::new(
            schema.clone(),
            partitions,
            Some(compacted_writer_properties()),
            NonZeroU64::new(self.target_file_bytes),
            None,
            state.table_config().num_indexed_cols(),
            None,
        );
        Ok(DeltaWriter::new(
            self.table.log_store().object_store(None),
            config,
        ))
    }
}

/// `text` as a SQL string literal.
pub fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Adds `batch`'s rows (in the `samples` schema) to hourly stack totals.
fn add_to_rollup(batch: &RecordBatch, rollup: &mut Rollup) -> Result<(), StorageError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| StorageError::Internal(format!("rollup: no {name} column")))
    };
    let types = column("profile_type")?.as_string::<i32>();
    let times = column("time")?.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let stacks = column("stack_id")?.as_primitive::<Int64Type>();
    let values = column("value")?.as_primitive::<Int64Type>();
    // Rows come sorted by type: one lookup of the type's map per run of equal types.
    let mut start = 0;
    while start < batch.num_rows() {
        let t = types.value(start);
        let mut end = start + 1;
        while end < batch.num_rows() && types.value(end) == t {
            end += 1;
        }
        let sums = rollup.entry(t.to_owned()).or_default();
        for i in start..end {
            let hour = times.value(i).div_euclid(ROLLUP_HOUR_US) * ROLLUP_HOUR_US;
            *sums.entry((hour, stacks.value(i))).or_default() += values.value(i);
        }
        start = end;
    }
    Ok(())
}

/// A column reference that keeps the name's case (label columns may have upper case).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn tagged(adds: Vec<Add>, tags: &HashMap<String, String>) -> Vec<Add> {
    adds.into_iter()
        .map(|mut add| {
            let mut map = add.tags.take().unwrap_or_default();
            for (k, v) in tags {
                map.insert(k.clone(), Some(v.clone()));
            }
            add.tags = (!map.is_empty()).then_some(map);
            add
        })
        .collect()
}

/// Casts `batch` to exactly `schema` (partition columns may come back dictionary-encoded,
/// aggregates as nullable).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, StorageError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let column = batch.column_by_name(f.name()).ok_or_else(|| {
                StorageError::Internal(format!("rewrite lost column {}", f.name()))
            })?;
            if column.data_type() == f.data_type() {
                Ok(column.clone())
            } else {
                Ok(arrow::compute::cast(column, f.data_type())?)
            }
        })
        .collect::<Result<Vec<ArrayRef>, StorageError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// (numRecords, min time, max time) from a file's JSON stats. Timestamps appear as RFC 3339
/// strings (delta-rs) or as integers (µs).
fn parse_stats(stats: Option<&str>) -> (Option<u64>, Option<i64>, Option<i64>) {
    let Some(value) = stats.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return (None, None, None);
    };
    let rows = value.get("numRecords").and_then(serde_json::Value::as_u64);
    let time = |key: &str| {
        let v = value.get(key)?.get("time")?;
        match v {
            serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_micros()),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
    };
    (rows, time("minValues"), time("maxValues"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_give_rows_and_time_bounds() {
        let (rows, min, max) = parse_stats(Some(
            r#"{"numRecords":3,"minValues":{"time":"2026-11-26T06:00:00.001Z"},"maxValues":{"time":"2026-11-26T07:00:00Z"}}"#,
        ));
        assert_eq!(rows, Some(3));
        assert_eq!(min, Some(1_795_672_800_001_000));
        assert_eq!(max, Some(1_795_676_400_000_000));
        assert_eq!(parse_stats(Some("not json")), (None, None, None));
        assert_eq!(parse_stats(None), (None, None, None));
    }

    #[test]
    fn quoted_keeps_case_and_escapes_quotes() {
        assert_eq!(quoted("Env"), "\"Env\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
