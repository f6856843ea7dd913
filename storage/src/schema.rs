//! Arrow schemas of the tables and the conversion of normalized profiles into record batches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use stackdrift_model::stack::stack_id_to_i64;
use stackdrift_model::{Frame, NormalizedProfile, Series};

use crate::error::StorageError;

/// Table names (also the directory names under the storage URL).
pub const SAMPLES: &str = "samples";
/// The stacks table.
pub const STACKS: &str = "stacks";

/// The hourly stack totals the compactor keeps next to merged `samples` files.
pub const ROLLUPS: &str = "rollups";

/// Partition columns of `samples`: one tenant + service + UTC day is one set of files.
pub const SAMPLES_PARTITIONS: [&str; 3] = ["tenant", "service_name", "day"];
/// Partition columns of `stacks`.
pub const STACKS_PARTITIONS: [&str; 2] = ["tenant", "service_name"];

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Fixed columns of `samples` before the label columns, in table order.
pub fn samples_head() -> Vec<Field> {
    vec![
        Field::new("profile_type", DataType::Utf8, false),
        Field::new("time", utc_micros(), false),
        Field::new("duration", DataType::Int64, false),
    ]
}

/// Fixed columns of `samples` after the label columns (partition columns last, as Delta
/// orders them).
pub fn samples_tail() -> Vec<Field> {
    vec![
        Field::new("stack_id", DataType::Int64, false),
        Field::new("value", DataType::Int64, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
    ]
}

/// The `samples` schema with the given label columns (nullable strings).
pub fn samples_schema<'a>(labels: impl IntoIterator<Item = &'a str>) -> SchemaRef {
    let mut fields = samples_head();
    fields.extend(
        labels
            .into_iter()
            .map(|l| Field::new(l, DataType::Utf8, true)),
    );
    fields.extend(samples_tail());
    Arc::new(Schema::new(fields))
}

/// The struct type of one frame.
pub fn frame_fields() -> Fields {
    Fields::from(vec![
        Field::new("function", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
    ])
}

/// The `stacks` schema.
pub fn stacks_schema() -> SchemaRef {
    let frame = DataType::Struct(frame_fields());
    Arc::new(Schema::new(vec![
        Field::new("stack_id", DataType::Int64, false),
        Field::new(
            "frames",
            DataType::List(Arc::new(Field::new("element", frame, true))),
            false,
        ),
        Field::new("leaf", DataType::Utf8, false),
        Field::new(
            "functions",
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
            false,
        ),
        Field::new("depth", DataType::Int32, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
    ]))
}

/// Partition columns of `rollups` (as `samples`).
pub const ROLLUPS_PARTITIONS: [&str; 3] = SAMPLES_PARTITIONS;

/// The `rollups` schema: per (profile type, UTC hour, stack) the sum of `value` over the
/// `samples` files tagged with `rollup_id` (see `maintenance`).
pub fn rollups_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("profile_type", DataType::Utf8, false),
        Field::new("hour", utc_micros(), false),
        Field::new("stack_id", DataType::Int64, false),
        Field::new("value", DataType::Int64, false),
        Field::new("rollup_id", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
    ]))
}

/// Converts µs since the epoch into days since the epoch (UTC), for the `day` partition.
pub fn day_of(time_us: i64) -> i32 {
    i32::try_from(time_us.div_euclid(MICROS_PER_DAY)).unwrap_or(i32::MAX)
}

/// One profile to write, with the tenant it belongs to.
#[derive(Debug, Clone)]
pub struct TenantProfile {
    /// Tenant (`X-Scope-OrgID`).
    pub tenant: String,
    /// The profile.
    pub profile: NormalizedProfile,
}

/// The label columns `profiles` need, sorted.
pub fn label_columns(profiles: &[TenantProfile]) -> BTreeSet<String> {
    profiles
        .iter()
        .flat_map(|p| p.profile.series.iter())
        .flat_map(|s| s.labels.extra().map(|(k, _)| k.to_owned()))
        .collect()
}

/// Builds the `samples` batch for `profiles`, with exactly the columns of `schema`.
pub fn samples_batch(
    profiles: &[TenantProfile],
    schema: &SchemaRef,
) -> Result<RecordBatch, StorageError> {
    let series: Vec<(&TenantProfile, &Series)> = profiles
        .iter()
        .flat_map(|tp| tp.profile.series.iter().map(move |s| (tp, s)))
        .collect();
    let mut b = SamplesBuilder::new(schema, &series, true);
    for (tp, s) in &series {
        b.append(tp, s);
    }
    b.finish(schema.clone())
}

/// The partition of `samples` a set of rows belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SamplesPartition {
    /// Tenant.
    pub tenant: String,
    /// Service.
    pub service_name: String,
    /// UTC day, in days since the epoch.
    pub day: i32,
}

/// `schema` without the partition columns: the columns of a `samples` data file.
pub fn samples_file_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !SAMPLES_PARTITIONS.contains(&f.name().as_str()))
        .map(|f| f.as_ref().clone())
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The series of one `samples` partition, each with the profile it belongs to.
pub type PartitionSeries<'p> = Vec<(&'p TenantProfile, &'p Series)>;

/// The series of `profiles` that have rows, grouped by `samples` partition, in partition order.
pub fn samples_partitions(
    profiles: &[TenantProfile],
) -> Vec<(SamplesPartition, PartitionSeries<'_>)> {
    let mut parts: BTreeMap<SamplesPartition, PartitionSeries<'_>> = BTreeMap::new();
    for tp in profiles {
        let day = day_of(tp.profile.time_us);
        for s in &tp.profile.series {
            if s.samples.is_empty() {
                continue;
            }
            let key = SamplesPartition {
                tenant: tp.tenant.clone(),
                service_name: s.labels.service_name().to_owned(),
                day,
            };
            parts.entry(key).or_default().push((tp, s));
        }
    }
    parts.into_iter().collect()
}

/// Rows of `series` (sample pairs).
pub fn series_rows(series: &[(&TenantProfile, &Series)]) -> usize {
    series.iter().map(|(_, s)| s.samples.len()).sum()
}

/// Splits `series` into consecutive runs of at most `max_rows` rows each; a series with more
/// rows than that is a run of its own.
pub fn samples_chunks<'s, 'p>(
    series: &'s [(&'p TenantProfile, &'p Series)],
    max_rows: usize,
) -> impl Iterator<Item = &'s [(&'p TenantProfile, &'p Series)]> {
    let mut rest = series;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut rows = 0;
        let mut end = 0;
        for (_, s) in rest {
            if end > 0 && rows + s.samples.len() > max_rows {
                break;
            }
            rows += s.samples.len();
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// The rows of `series` as one batch with the columns of `file_schema` (`schema` without the
/// partition columns, see [`samples_file_schema`]); the partition's values are not repeated
/// per row.
pub fn samples_rows(
    series: &[(&TenantProfile, &Series)],
    schema: &SchemaRef,
    file_schema: &SchemaRef,
) -> Result<RecordBatch, StorageError> {
    let mut b = SamplesBuilder::new(schema, series, false);
    for (tp, s) in series {
        b.append(tp, s);
    }
    b.finish(file_schema.clone())
}

/// The `samples` rows of `profiles` split by partition, in partition order: one batch per
/// (tenant, service, day) with the columns of `schema` except the partition columns, whose
/// values the key carries. Builds each row once; nothing is copied to split the rows.
pub fn samples_partition_batches(
    profiles: &[TenantProfile],
    schema: &SchemaRef,
) -> Result<Vec<(SamplesPartition, RecordBatch)>, StorageError> {
    let file_schema = samples_file_schema(schema);
    samples_partitions(profiles)
        .into_iter()
        .map(|(key, series)| Ok((key, samples_rows(&series, schema, &file_schema)?)))
        .collect()
}

/// Column builders of a `samples` batch, with or without the partition columns.
///
/// Every buffer is allocated once, at its final size, from a pass over the series: a flush
/// builds hundreds of thousands of rows, and growing the string columns by doubling copied
/// them several times and touched fresh pages each time (most of the build time went to page
/// faults and those copies). The columns that are constant within a series (profile type,
/// time, duration, labels, partitions) are appended as runs.
struct SamplesBuilder<'a> {
    label_names: Vec<&'a str>,
    profile_type: StringBuilder,
    time: TimestampMicrosecondBuilder,
    duration: Int64Builder,
    labels: Vec<StringBuilder>,
    stack_id: Int64Builder,
    value: Int64Builder,
    /// tenant, service_name and day, when the batch carries them.
    partitions: Option<(StringBuilder, StringBuilder, Date32Builder)>,
}

impl<'a> SamplesBuilder<'a> {
    /// Builders for the rows of `series`, sized for exactly those rows.
    fn new(
        schema: &'a SchemaRef,
        series: &[(&TenantProfile, &Series)],
        with_partitions: bool,
    ) -> Self {
        let head = samples_head();
        let tail = samples_tail();
        let label_names: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| !head.iter().any(|f| f.name() == n) && !tail.iter().any(|f| f.name() == n))
            .collect();
        let rows = series_rows(series);
        // Bytes of a column whose value in a series is `len(series)` bytes long.
        let bytes = |len: &dyn Fn(&TenantProfile, &Series) -> usize| -> usize {
            series
                .iter()
                .map(|(tp, s)| s.samples.len() * len(tp, s))
                .sum()
        };
        let string = |len: &dyn Fn(&TenantProfile, &Series) -> usize| {
            StringBuilder::with_capacity(rows, bytes(len))
        };
        let labels = label_names
            .iter()
            .map(|n| string(&|_, s| s.labels.get(n).map_or(0, str::len)))
            .collect();
        Self {
            label_names,
            profile_type: string(&|_, s| profile_type_len(&s.profile_type)),
            time: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            duration: Int64Builder::with_capacity(rows),
            labels,
            stack_id: Int64Builder::with_capacity(rows),
            value: Int64Builder::with_capacity(rows),
            partitions: with_partitions.then(|| {
                (
                    string(&|tp, _| tp.tenant.len()),
                    string(&|_, s| s.labels.service_name().len()),
                    Date32Builder::with_capacity(rows),
                )
            }),
        }
    }

    /// Appends the rows of one series of `tp`.
    fn append(&mut self, tp: &TenantProfile, s: &Series) {
        let p = &tp.profile;
        let n = s.samples.len();
        let pt = s.profile_type.id();
        for _ in 0..n {
            self.profile_type.append_value(&pt);
        }
        self.time.append_value_n(p.time_us, n);
        self.duration.append_value_n(p.duration_us, n);
        for (b, name) in self.labels.iter_mut().zip(&self.label_names) {
            match s.labels.get(name) {
                Some(v) => (0..n).for_each(|_| b.append_value(v)),
                None => b.append_nulls(n),
            }
        }
        for (id, v) in &s.samples {
            self.stack_id.append_value(stack_id_to_i64(*id));
            self.value.append_value(*v);
        }
        if let Some((tenant, service, d)) = &mut self.partitions {
            let service_name = s.labels.service_name();
            for _ in 0..n {
                tenant.append_value(&tp.tenant);
                service.append_value(service_name);
            }
            d.append_value_n(day_of(p.time_us), n);
        }
    }

    fn finish(mut self, schema: SchemaRef) -> Result<RecordBatch, StorageError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.profile_type.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.duration.finish()),
        ];
        columns.extend(
            self.labels
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.stack_id.finish()));
        columns.push(Arc::new(self.value.finish()));
        if let Some((mut tenant, mut service, mut day)) = self.partitions {
            columns.push(Arc::new(tenant.finish()));
            columns.push(Arc::new(service.finish()));
            columns.push(Arc::new(day.finish()));
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// Length of `ProfileType::id()` (five parts, four colons), without building it.
fn profile_type_len(pt: &stackdrift_model::ProfileType) -> usize {
    pt.name.len()
        + pt.sample_type.len()
        + pt.sample_unit.len()
        + pt.period_type.len()
        + pt.period_unit.len()
        + 4
}

/// One stack row to write.
#[derive(Debug, Clone)]
pub struct StackRow<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Service.
    pub service_name: &'a str,
    /// Stack ID (unsigned hash).
    pub id: u64,
    /// Leaf-first frames.
    pub frames: &'a [Frame],
}

/// Builds the `stacks` batch.
pub fn stacks_batch(rows: &[StackRow<'_>]) -> Result<RecordBatch, StorageError> {
    let schema = stacks_schema();
    let mut stack_id = Int64Builder::with_capacity(rows.len());
    let mut frames = ListBuilder::new(StructBuilder::from_fields(frame_fields(), rows.len() * 8))
        .with_field(Arc::new(Field::new(
            "element",
            DataType::Struct(frame_fields()),
            true,
        )));
    let mut leaf = StringBuilder::new();
    let mut functions = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "element",
        DataType::Utf8,
        true,
    )));
    let mut depth = Int32Builder::with_capacity(rows.len());
    let mut tenant = StringBuilder::new();
    let mut service = StringBuilder::new();
    for row in rows {
        stack_id.append_value(stack_id_to_i64(row.id));
        let mut seen: HashMap<&str, ()> = HashMap::with_capacity(row.frames.len());
        for f in row.frames {
            let sb = frames.values();
            sb.field_builder::<StringBuilder>(0)
                .ok_or_else(|| StorageError::Internal("frame builder: function".into()))?
                .append_value(&f.function);
            sb.field_builder::<StringBuilder>(1)
                .ok_or_else(|| StorageError::Internal("frame builder: file".into()))?
                .append_value(&f.file);
            sb.field_builder::<Int64Builder>(2)
                .ok_or_else(|| StorageError::Internal("frame builder: line".into()))?
                .append_value(f.line);
            sb.append(true);
            if seen.insert(&*f.function, ()).is_none() {
                functions.values().append_value(&f.function);
            }
        }
        frames.append(true);
        functions.append(true);
        leaf.append_value(row.frames.first().map(|f| &*f.function).unwrap_or(""));
        depth.append_value(i32::try_from(row.frames.len()).unwrap_or(i32::MAX));
        tenant.append_value(row.tenant);
        service.append_value(row.service_name);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(stack_id.finish()),
        Arc::new(frames.finish()),
        Arc::new(leaf.finish()),
        Arc::new(functions.finish()),
        Arc::new(depth.finish()),
        Arc::new(tenant.finish()),
        Arc::new(service.finish()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_type_len_is_the_id_length() {
        for id in [
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
            "memory:alloc_space:bytes:space:bytes",
            "a:b:c:d:e",
        ] {
            let pt: stackdrift_model::ProfileType = id.parse().unwrap();
            assert_eq!(profile_type_len(&pt), pt.id().len(), "{id}");
        }
    }

    #[test]
    fn days_are_utc_and_floor_negative_times() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(MICROS_PER_DAY - 1), 0);
        assert_eq!(day_of(MICROS_PER_DAY), 1);
        assert_eq!(day_of(-1), -1);
    }

    /// A profile of `tenant` at `time_us` with one series per service, `stacks` distinct
    /// stacks each, values counting up from 1.
    fn profile(tenant: &str, services: &[&str], time_us: i64, stacks: usize) -> TenantProfile {
        use stackdrift_model::{LabelLimits, Labels, ProfileBuilder};
        let mut b = ProfileBuilder::new(16);
        let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            .parse()
            .unwrap();
        let mut value = 0;
        for service in services {
            let labels = Labels::new(
                [("service_name", *service), ("env", "prod")],
                &LabelLimits::default(),
            )
            .unwrap();
            let series = b.series(&labels, &cpu);
            for i in 0..stacks {
                let id = b.stack(vec![
                    Frame::named(format!("f{i}").as_str()),
                    Frame::named("main"),
                ]);
                value += 1;
                b.add(series, id, value).unwrap();
            }
        }
        TenantProfile {
            tenant: tenant.to_owned(),
            profile: b.finish(time_us, 10_000_000),
        }
    }

    #[test]
    fn partition_batches_hold_exactly_the_rows_of_the_whole_batch() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{Date32Type, Int64Type};

        let day = MICROS_PER_DAY;
        let profiles = [
            profile("a", &["api", "db"], 3 * day + 5, 3),
            profile("b", &["api"], 3 * day + 7, 2),
            profile("a", &["api"], 4 * day, 4),
            profile("a", &["db"], 3 * day + 9, 1),
        ];
        let schema = samples_schema(["env", "region"]);
        let whole = samples_batch(&profiles, &schema).unwrap();
        let parts = samples_partition_batches(&profiles, &schema).unwrap();

        // One batch per (tenant, service, day), in key order, without the partition columns.
        let keys: Vec<(&str, &str, i32)> = parts
            .iter()
            .map(|(k, _)| (k.tenant.as_str(), k.service_name.as_str(), k.day))
            .collect();
        assert_eq!(
            keys,
            [
                ("a", "api", 3),
                ("a", "api", 4),
                ("a", "db", 3),
                ("b", "api", 3)
            ]
        );
        let file_schema = samples_file_schema(&schema);
        assert_eq!(file_schema.fields().len(), schema.fields().len() - 3);
        assert!(parts.iter().all(|(_, b)| b.schema() == file_schema));

        // Every row of the whole batch, keyed by its partition values, is in its partition's
        // batch with the same other columns, and nothing else is.
        type Row = (
            String,
            String,
            i32,
            String,
            i64,
            i64,
            i64,
            Option<String>,
            Option<String>,
        );
        let rows = |b: &RecordBatch, key: Option<&SamplesPartition>| -> Vec<Row> {
            let s = |name: &str| b.column_by_name(name).map(|c| c.as_string::<i32>().clone());
            let i = |name: &str| {
                b.column_by_name(name)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let (pt, stack, value, env, region) = (
                s("profile_type").unwrap(),
                i("stack_id"),
                i("value"),
                s("env").unwrap(),
                s("region").unwrap(),
            );
            let time = b
                .column_by_name("time")
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .clone();
            (0..b.num_rows())
                .map(|r| {
                    let (tenant, service, day) = match key {
                        Some(k) => (k.tenant.clone(), k.service_name.clone(), k.day),
                        None => (
                            s("tenant").unwrap().value(r).to_owned(),
                            s("service_name").unwrap().value(r).to_owned(),
                            b.column_by_name("day")
                                .unwrap()
                                .as_primitive::<Date32Type>()
                                .value(r),
                        ),
                    };
                    let opt = |a: &arrow::array::StringArray| {
                        a.is_valid(r).then(|| a.value(r).to_owned())
                    };
                    (
                        tenant,
                        service,
                        day,
                        pt.value(r).to_owned(),
                        time.value(r),
                        stack.value(r),
                        value.value(r),
                        opt(&env),
                        opt(&region),
                    )
                })
                .collect()
        };
        let mut expected = rows(&whole, None);
        let mut got: Vec<Row> = parts.iter().flat_map(|(k, b)| rows(b, Some(k))).collect();
        assert_eq!(got.len(), 2 * 3 + 2 + 4 + 1);
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        assert!(
            got.iter()
                .all(|r| r.7.as_deref() == Some("prod") && r.8.is_none())
        );
    }

    #[test]
    fn chunks_keep_every_series_in_order_within_the_row_cap() {
        // Series of 3, 1, 4, 2, 5 and 1 rows, all in one partition.
        let profiles: Vec<TenantProfile> = [3, 1, 4, 2, 5, 1]
            .into_iter()
            .enumerate()
            .map(|(i, n)| profile("a", &["api"], i as i64, n))
            .collect();
        let parts = samples_partitions(&profiles);
        assert_eq!(parts.len(), 1);
        let series = &parts[0].1;
        let sizes = |max| -> Vec<Vec<usize>> {
            samples_chunks(series, max)
                .map(|c| c.iter().map(|(_, s)| s.samples.len()).collect())
                .collect()
        };
        assert_eq!(sizes(5), [vec![3, 1], vec![4], vec![2], vec![5], vec![1]]);
        assert_eq!(sizes(6), [vec![3, 1], vec![4, 2], vec![5, 1]]);
        // A series larger than the cap is a chunk of its own; a cap of 0 still progresses.
        assert_eq!(sizes(2).len(), 6);
        assert_eq!(sizes(0).len(), 6);
        assert_eq!(sizes(100), [vec![3, 1, 4, 2, 5, 1]]);
        // The chunks, in order, are exactly the series.
        let rejoined: Vec<*const Series> = samples_chunks(series, 4)
            .flatten()
            .map(|(_, s)| *s as *const Series)
            .collect();
        let all: Vec<*const Series> = series.iter().map(|(_, s)| *s as *const Series).collect();
        assert_eq!(rejoined, all);
        assert_eq!(series_rows(series), 16);
    }

    #[test]
    fn stacks_batch_lists_distinct_functions_and_leaf() {
        let frames = vec![
            Frame::named("leaf"),
            Frame::named("mid"),
            Frame::named("leaf"),
            Frame::named("main"),
        ];
        let rows = [StackRow {
            tenant: "t",
            service_name: "s",
            id: u64::MAX,
            frames: &frames,
        }];
        let batch = stacks_batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let text = arrow::util::pretty::pretty_format_batches(&[batch])
            .unwrap()
            .to_string();
        assert!(text.contains("[leaf, mid, main]"), "{text}");
        assert!(text.contains("| -1 "), "{text}");
    }
}
