//! Parquet column chunks for columns that hold one value per run of rows.
//!
//! In an ingest file, `profile_type`, the label columns, `time` and `duration` hold one value
//! per series: hundreds of rows in a row. arrow-rs' writer pays for every row of them (a copy
//! into the Arrow array, a dictionary lookup, two statistics compares). Here such a column is
//! written from its runs: one dictionary page (each distinct value once, PLAIN) and one data
//! page of RLE_DICTIONARY indices with one RLE run per value run, and definition levels the
//! same way for a nullable column. The output is an ordinary dictionary-encoded column chunk,
//! spliced into a row group with `SerializedRowGroupWriter::append_column`.
//!
//! ```text
//!  runs [(a, 300), (b, 280), (NULL, 40), (a, 310)]
//!    dictionary page  PLAIN  a b
//!    data page (v1)   def levels: u32 length, RLE(1 × 580, 0 × 40, 1 × 310)   (nullable only)
//!                     indices:    bit width, RLE(0 × 300, 1 × 280, 0 × 310)
//! ```

use std::collections::HashMap;

use bytes::Bytes;
use deltalake::parquet::basic::{Compression, Encoding};
use deltalake::parquet::column::page::{CompressedPage, Page, PageWriter};
use deltalake::parquet::column::writer::ColumnCloseResult;
use deltalake::parquet::data_type::ByteArray;
use deltalake::parquet::errors::{ParquetError, Result};
use deltalake::parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder};
use deltalake::parquet::file::statistics::{Statistics, ValueStatistics};
use deltalake::parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use deltalake::parquet::schema::types::ColumnDescPtr;

/// The column chunk of a BYTE_ARRAY column given as `(value, rows)` runs (`None`: NULL).
pub fn byte_array_chunk(
    descr: ColumnDescPtr,
    runs: &[(Option<&[u8]>, usize)],
) -> Result<(Bytes, ColumnCloseResult)> {
    let mut dict = Dictionary::default();
    let indexed = index_runs(runs, |v| dict.id(v));
    let mut plain = Vec::with_capacity(dict.bytes + 4 * dict.values.len());
    for v in &dict.values {
        plain.extend_from_slice(&(v.len() as u32).to_le_bytes());
        plain.extend_from_slice(v);
    }
    let stats = |nulls: u64| {
        let min = dict
            .values
            .iter()
            .min()
            .map(|v| ByteArray::from(v.to_vec()));
        let max = dict
            .values
            .iter()
            .max()
            .map(|v| ByteArray::from(v.to_vec()));
        Statistics::ByteArray(ValueStatistics::new(min, max, None, Some(nulls), false))
    };
    chunk(descr, dict.values.len(), plain, &indexed, stats)
}

/// The column chunk of an INT64 column (timestamps included) given as `(value, rows)` runs.
pub fn int64_chunk(
    descr: ColumnDescPtr,
    runs: &[(Option<i64>, usize)],
) -> Result<(Bytes, ColumnCloseResult)> {
    let mut ids: HashMap<i64, u32> = HashMap::new();
    let mut values: Vec<i64> = Vec::new();
    let indexed = index_runs(runs, |v| {
        *ids.entry(*v).or_insert_with(|| {
            values.push(*v);
            (values.len() - 1) as u32
        })
    });
    let plain: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let stats = |nulls: u64| {
        let (min, max) = (values.iter().min().copied(), values.iter().max().copied());
        Statistics::Int64(ValueStatistics::new(min, max, None, Some(nulls), false))
    };
    chunk(descr, values.len(), plain, &indexed, stats)
}

/// Distinct byte strings in first-seen order.
#[derive(Default)]
struct Dictionary<'a> {
    ids: HashMap<&'a [u8], u32>,
    values: Vec<&'a [u8]>,
    bytes: usize,
}

impl<'a> Dictionary<'a> {
    fn id(&mut self, v: &&'a [u8]) -> u32 {
        *self.ids.entry(v).or_insert_with(|| {
            self.values.push(v);
            self.bytes += v.len();
            (self.values.len() - 1) as u32
        })
    }
}

/// The runs with each value replaced by its dictionary index.
fn index_runs<T>(
    runs: &[(Option<T>, usize)],
    mut id: impl FnMut(&T) -> u32,
) -> Vec<(Option<u32>, usize)> {
    runs.iter()
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| (v.as_ref().map(&mut id), *n))
        .collect()
}

/// Writes the dictionary page and the data page, and describes the chunk.
fn chunk(
    descr: ColumnDescPtr,
    dict_len: usize,
    dict_plain: Vec<u8>,
    runs: &[(Option<u32>, usize)],
    stats: impl FnOnce(u64) -> Statistics,
) -> Result<(Bytes, ColumnCloseResult)> {
    let rows: usize = runs.iter().map(|(_, n)| n).sum();
    let nulls: usize = runs
        .iter()
        .filter(|(v, _)| v.is_none())
        .map(|(_, n)| n)
        .sum();
    let nullable = descr.max_def_level() > 0;
    if descr.max_rep_level() > 0 || descr.max_def_level() > 1 {
        return Err(ParquetError::General(format!(
            "column {} is nested; only flat columns are written from runs",
            descr.path()
        )));
    }
    if nulls > 0 && !nullable {
        return Err(ParquetError::General(format!(
            "column {} is required but {nulls} of its rows are null",
            descr.path()
        )));
    }
    let rows_u32 = u32::try_from(rows)
        .map_err(|_| ParquetError::General(format!("{rows} rows in one page")))?;

    let mut data = Vec::new();
    if nullable {
        let mut levels = Vec::new();
        rle_runs(
            &mut levels,
            1,
            runs.iter().map(|(v, n)| (u32::from(v.is_some()), *n)),
        );
        data.extend_from_slice(&(levels.len() as u32).to_le_bytes());
        data.extend_from_slice(&levels);
    }
    let width = bit_width(dict_len);
    data.push(width);
    rle_runs(
        &mut data,
        width,
        runs.iter().filter_map(|(v, n)| v.map(|v| (v, *n))),
    );

    let mut sink = TrackedWrite::new(Vec::new());
    let mut pages = SerializedPageWriter::new(&mut sink);
    let dict_size = dict_plain.len();
    let dict = pages.write_page(CompressedPage::new(
        Page::DictionaryPage {
            buf: Bytes::from(dict_plain),
            num_values: dict_len as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        },
        dict_size,
    ))?;
    let data_size = data.len();
    let page = pages.write_page(CompressedPage::new(
        Page::DataPage {
            buf: Bytes::from(data),
            num_values: rows_u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        },
        data_size,
    ))?;
    pages.close()?;
    let bytes = Bytes::from(sink.into_inner()?);
    let total = bytes.len() as i64;

    let metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(Compression::UNCOMPRESSED)
        .set_encodings(vec![
            Encoding::PLAIN,
            Encoding::RLE,
            Encoding::RLE_DICTIONARY,
        ])
        .set_num_values(rows as i64)
        .set_total_compressed_size(total)
        .set_total_uncompressed_size(total)
        .set_dictionary_page_offset(Some(dict.offset as i64))
        .set_data_page_offset(page.offset as i64)
        .set_statistics(stats(nulls as u64))
        .build()?;
    let mut offsets = OffsetIndexBuilder::new();
    offsets.append_offset_and_size(page.offset as i64, page.compressed_size as i32);
    offsets.append_row_count(rows as i64);
    Ok((
        bytes,
        ColumnCloseResult {
            bytes_written: total as u64,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(offsets.build()),
        },
    ))
}

/// Bits per dictionary index (at least 1, as arrow-rs and parquet-mr readers expect).
fn bit_width(dict_len: usize) -> u8 {
    let max = dict_len.saturating_sub(1) as u64;
    (64 - max.leading_zeros()).max(1) as u8
}

/// Appends the RLE/bit-packed hybrid encoding of `runs` (value, count) with `width`-bit
/// values as RLE runs only; adjacent runs of one value are merged.
fn rle_runs(out: &mut Vec<u8>, width: u8, runs: impl Iterator<Item = (u32, usize)>) {
    let value_bytes = usize::from(width).div_ceil(8);
    let mut pending: Option<(u32, usize)> = None;
    let emit = |out: &mut Vec<u8>, (value, count): (u32, usize)| {
        // Header: ULEB128 of count << 1 (low bit 0: an RLE run).
        let mut header = (count as u64) << 1;
        loop {
            let byte = (header & 0x7f) as u8;
            header >>= 7;
            if header == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(&value.to_le_bytes()[..value_bytes]);
    };
    for (value, count) in runs.filter(|(_, n)| *n > 0) {
        pending = match pending {
            Some((v, n)) if v == value => Some((v, n + count)),
            Some(run) => {
                emit(out, run);
                Some((value, count))
            }
            None => Some((value, count)),
        };
    }
    if let Some(run) = pending {
        emit(out, run);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use deltalake::parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    };
    use deltalake::parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
    use deltalake::parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
    use deltalake::parquet::data_type::AsBytes;
    use deltalake::parquet::file::metadata::PageIndexPolicy;
    use deltalake::parquet::file::properties::WriterProperties;
    use deltalake::parquet::file::writer::SerializedFileWriter;

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("profile_type", DataType::Utf8, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("region", DataType::Utf8, true),
            Field::new("stack_id", DataType::Int64, false),
        ]))
    }

    /// Writes one row group: columns 0–2 from runs, `stack_id` through arrow-rs.
    fn write(
        types: &[(Option<&[u8]>, usize)],
        times: &[(Option<i64>, usize)],
        regions: &[(Option<&[u8]>, usize)],
        stacks: &[i64],
    ) -> Bytes {
        let schema = schema();
        let parquet = ArrowSchemaConverter::new().convert(&schema).unwrap();
        let mut props = WriterProperties::builder().build();
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let props = Arc::new(props);
        let mut file =
            SerializedFileWriter::new(Vec::new(), parquet.root_schema_ptr(), props.clone())
                .unwrap();
        let mut writers = ArrowRowGroupWriterFactory::new(&file, schema.clone())
            .create_column_writers(0)
            .unwrap();
        let mut rg = file.next_row_group().unwrap();
        let (b, c) = byte_array_chunk(parquet.column(0), types).unwrap();
        rg.append_column(&b, c).unwrap();
        let (b, c) = int64_chunk(parquet.column(1), times).unwrap();
        rg.append_column(&b, c).unwrap();
        let (b, c) = byte_array_chunk(parquet.column(2), regions).unwrap();
        rg.append_column(&b, c).unwrap();
        let mut w = writers.remove(3);
        let array: ArrayRef = Arc::new(Int64Array::from(stacks.to_vec()));
        for leaf in compute_leaves(schema.field(3), &array).unwrap() {
            w.write(&leaf).unwrap();
        }
        w.close().unwrap().append_to_row_group(&mut rg).unwrap();
        rg.close().unwrap();
        Bytes::from(file.into_inner().unwrap())
    }

    fn expand<T: Clone>(runs: &[(Option<T>, usize)]) -> Vec<Option<T>> {
        runs.iter()
            .flat_map(|(v, n)| std::iter::repeat_n(v.clone(), *n))
            .collect()
    }

    #[test]
    fn runs_read_back_as_the_rows_they_stand_for() {
        let types: &[(Option<&[u8]>, usize)] = &[
            (Some(b"process_cpu:cpu"), 300),
            (Some(b"process_cpu:samples"), 300),
            (Some(b"process_cpu:cpu"), 5),
        ];
        let times = &[
            (Some(1_700_000_000_000_000), 600),
            (Some(1_700_000_010_000_000), 5),
        ];
        let regions: &[(Option<&[u8]>, usize)] = &[
            (Some(b"eu-west"), 100),
            (None, 400),
            (Some(b"us-east"), 100),
            (None, 5),
        ];
        let stacks: Vec<i64> = (0..605).map(|i| i * 7 - 2000).collect();
        let file = write(types, times, regions, &stacks);

        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
        let meta = builder.metadata().clone();
        let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
        let batch = arrow::compute::concat_batches(&schema(), &batches).unwrap();
        assert_eq!(batch.schema(), schema());
        let strings = |runs: &[(Option<&[u8]>, usize)]| -> StringArray {
            expand(runs)
                .into_iter()
                .map(|v| v.map(|b| String::from_utf8(b.to_vec()).unwrap()))
                .collect()
        };
        let want = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(strings(types)),
                Arc::new(TimestampMicrosecondArray::from(expand(times)).with_timezone("UTC")),
                Arc::new(strings(regions)),
                Arc::new(Int64Array::from(stacks)),
            ],
        )
        .unwrap();
        assert_eq!(batch, want);
        assert_eq!(batch.column(2).null_count(), 405);

        // Chunk statistics as arrow-rs would write them.
        let rg = meta.row_group(0);
        assert_eq!(rg.num_rows(), 605);
        match rg.column(0).statistics().unwrap() {
            Statistics::ByteArray(s) => {
                assert_eq!(s.min_opt().unwrap().as_bytes(), b"process_cpu:cpu");
                assert_eq!(s.max_opt().unwrap().as_bytes(), b"process_cpu:samples");
                assert_eq!(s.null_count_opt(), Some(0));
            }
            other => panic!("{other:?}"),
        }
        match rg.column(1).statistics().unwrap() {
            Statistics::Int64(s) => {
                assert_eq!(s.min_opt(), Some(&1_700_000_000_000_000));
                assert_eq!(s.max_opt(), Some(&1_700_000_010_000_000));
            }
            other => panic!("{other:?}"),
        }
        match rg.column(2).statistics().unwrap() {
            Statistics::ByteArray(s) => {
                assert_eq!(s.min_opt().unwrap().as_bytes(), b"eu-west");
                assert_eq!(s.max_opt().unwrap().as_bytes(), b"us-east");
                assert_eq!(s.null_count_opt(), Some(405));
            }
            other => panic!("{other:?}"),
        }
        // The offset index (page locations) of a spliced chunk points at its data page.
        let offsets = meta.offset_index().unwrap();
        assert_eq!(offsets[0][0].page_locations().len(), 1);
        assert_eq!(offsets[0][0].page_locations()[0].first_row_index, 0);
    }

    #[test]
    fn an_all_null_column_and_a_single_value_column_read_back() {
        let types: &[(Option<&[u8]>, usize)] = &[(Some(b"t"), 3)];
        let times = &[(Some(-5), 3)];
        let regions: &[(Option<&[u8]>, usize)] = &[(None, 3)];
        let file = write(types, times, regions, &[1, 2, 3]);
        let batch = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.column(2).null_count(), 3);
        assert_eq!(
            batch
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .value(2),
            -5
        );
    }

    #[test]
    fn a_null_in_a_required_column_is_an_error() {
        let parquet = ArrowSchemaConverter::new().convert(&schema()).unwrap();
        let err = byte_array_chunk(parquet.column(0), &[(None, 2)]).unwrap_err();
        assert!(err.to_string().contains("required"), "{err}");
    }

    #[test]
    fn long_runs_and_wide_indices_encode_as_rle_runs() {
        let mut out = Vec::new();
        rle_runs(&mut out, 9, [(300, 200), (300, 100), (7, 1)].into_iter());
        // 300 rows of 300: header 600 = 0xd8 0x04, then 2 value bytes; 1 row of 7.
        assert_eq!(out, vec![0xd8, 0x04, 0x2c, 0x01, 0x02, 0x07, 0x00]);
        assert_eq!(bit_width(0), 1);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 1);
        assert_eq!(bit_width(3), 2);
        assert_eq!(bit_width(257), 9);
    }
}
