//! Arrow schemas of the tables and the conversion of normalized profiles into record batches.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use stackdrift_model::stack::stack_id_to_i64;
use stackdrift_model::{Frame, NormalizedProfile};

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
    let rows: usize = profiles.iter().map(|p| p.profile.sample_count()).sum();
    let label_names: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| {
            !samples_head().iter().any(|f| f.name() == n)
                && !samples_tail().iter().any(|f| f.name() == n)
        })
        .collect();
    let mut profile_type = StringBuilder::with_capacity(rows, rows * 16);
    let mut time = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut duration = Int64Builder::with_capacity(rows);
    let mut labels: Vec<StringBuilder> = label_names
        .iter()
        .map(|_| StringBuilder::with_capacity(rows, rows * 4))
        .collect();
    let mut stack_id = Int64Builder::with_capacity(rows);
    let mut value = Int64Builder::with_capacity(rows);
    let mut tenant = StringBuilder::with_capacity(rows, rows * 8);
    let mut service = StringBuilder::with_capacity(rows, rows * 8);
    let mut day = Date32Builder::with_capacity(rows);

    for tp in profiles {
        let p = &tp.profile;
        let d = day_of(p.time_us);
        for s in &p.series {
            let pt = s.profile_type.id();
            let values: Vec<Option<&str>> = label_names.iter().map(|n| s.labels.get(n)).collect();
            for (id, v) in &s.samples {
                profile_type.append_value(&pt);
                time.append_value(p.time_us);
                duration.append_value(p.duration_us);
                for (b, lv) in labels.iter_mut().zip(&values) {
                    b.append_option(*lv);
                }
                stack_id.append_value(stack_id_to_i64(*id));
                value.append_value(*v);
                tenant.append_value(&tp.tenant);
                service.append_value(s.labels.service_name());
                day.append_value(d);
            }
        }
    }

    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(profile_type.finish()),
        Arc::new(time.finish()),
        Arc::new(duration.finish()),
    ];
    columns.extend(labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend([
        Arc::new(stack_id.finish()) as ArrayRef,
        Arc::new(value.finish()),
        Arc::new(tenant.finish()),
        Arc::new(service.finish()),
        Arc::new(day.finish()),
    ]);
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
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
    fn days_are_utc_and_floor_negative_times() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(MICROS_PER_DAY - 1), 0);
        assert_eq!(day_of(MICROS_PER_DAY), 1);
        assert_eq!(day_of(-1), -1);
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
