//! Micro-benchmarks of the ingester's flush: turning a batch of normalized profiles into
//! `samples` rows and Parquet bytes.
//!
//! ```text
//!  samples/batches   schema::samples_partition_batches: Arrow rows, one batch per partition
//!  samples/parquet   the same, then each partition batch written as one Parquet file
//!                    (in memory) with the ingester's writer properties
//!  samples/parquet_chunked
//!                    what a flush does: each partition's rows built and written a chunk
//!                    (store::SAMPLES_CHUNK_ROWS) at a time, so a chunk's arrays are freed
//!                    before the next is built
//! ```
//!
//! With the server's allocator (mimalloc); run with `MIMALLOC_PURGE_DELAY=100
//! MIMALLOC_ALLOW_THP=0` for the server's options (see stackdrift/src/allocator.rs).
//!
//! The batch is what one default flush holds under the ingest benchmark's load (BENCHMARKS.md):
//! 800 pushes from 10 services, each with `region` and `pod` labels, two sample types (CPU
//! samples and nanoseconds) over the same 300 stacks, so 480,000 rows. Stack IDs are drawn
//! from a pool of 3,000 per service, as a service's stacks repeat from push to push. Data
//! is built here, deterministically (a SplitMix64 hash).
//!
//! Run with `cargo bench -p stackdrift-storage --bench encode`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deltalake::parquet::arrow::ArrowWriter;
use stackdrift_model::{LabelLimits, Labels, NormalizedProfile, ProfileType, Series};
use stackdrift_storage::TenantProfile;
use stackdrift_storage::schema::{
    label_columns, samples_chunks, samples_file_schema, samples_partition_batches,
    samples_partitions, samples_rows, samples_schema,
};
use stackdrift_storage::store::{SAMPLES_CHUNK_ROWS, writer_properties};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pushes in the batch.
const PUSHES: usize = 800;
/// Services they come from.
const SERVICES: usize = 10;
/// Distinct stacks per push.
const STACKS: usize = 300;
/// Stacks a service draws its pushes' stacks from.
const POOL: usize = 3_000;
/// CPU sampling period (100 Hz).
const PERIOD_NANOS: i64 = 10_000_000;

/// A deterministic pseudo-random number for `i` (the SplitMix64 finalizer).
fn hash(i: u64) -> u64 {
    let z = (i ^ (i >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn batch() -> Vec<TenantProfile> {
    // Stack `k` of service `s` has ID `hash(s * POOL + k)`.
    let stack = |s: usize, k: usize| hash((s * POOL + k) as u64);
    let mut draws = 0u64;
    let samples: ProfileType = "process_cpu:samples:count:cpu:nanoseconds".parse().unwrap();
    let cpu: ProfileType = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        .parse()
        .unwrap();
    let now_us = 1_764_000_000_000_000;
    (0..PUSHES)
        .map(|i| {
            let service = i % SERVICES;
            let labels = Labels::new(
                [
                    ("service_name", format!("service-{service}")),
                    (
                        "region",
                        ["eu-west-1", "us-east-1", "ap-south-1"][i % 3].to_owned(),
                    ),
                    ("pod", format!("service-{service}-pod-{}", i % 7)),
                ],
                &LabelLimits::default(),
            )
            .unwrap();
            let mut counts = Vec::with_capacity(STACKS);
            let mut nanos = Vec::with_capacity(STACKS);
            for _ in 0..STACKS {
                draws += 1;
                let r = hash(draws ^ 0x5EED);
                let id = stack(service, (r % POOL as u64) as usize);
                let n = 1 + ((r >> 32) % 20) as i64;
                counts.push((id, n));
                nanos.push((id, n * PERIOD_NANOS));
            }
            TenantProfile {
                tenant: "anonymous".into(),
                profile: NormalizedProfile {
                    time_us: now_us + (i as i64) * 1_000,
                    duration_us: 10_000_000,
                    series: vec![
                        Series {
                            labels: labels.clone(),
                            profile_type: samples.clone(),
                            samples: counts,
                        },
                        Series {
                            labels,
                            profile_type: cpu.clone(),
                            samples: nanos,
                        },
                    ],
                    stacks: Vec::new(),
                },
            }
        })
        .collect()
}

fn samples(c: &mut Criterion) {
    let profiles = batch();
    let schema = samples_schema(label_columns(&profiles).iter().map(String::as_str));
    let rows: usize = profiles.iter().map(|p| p.profile.sample_count()).sum();
    let mut g = c.benchmark_group("samples");
    g.throughput(Throughput::Elements(rows as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    g.bench_function("batches", |b| {
        b.iter(|| black_box(samples_partition_batches(&profiles, &schema).unwrap()))
    });
    g.bench_function("parquet", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (_, batch) in samples_partition_batches(&profiles, &schema).unwrap() {
                let mut w =
                    ArrowWriter::try_new(Vec::new(), batch.schema(), Some(writer_properties()))
                        .unwrap();
                w.write(&batch).unwrap();
                bytes += w.into_inner().unwrap().len();
            }
            black_box(bytes)
        })
    });
    g.bench_function("parquet_chunked", |b| {
        let file_schema = samples_file_schema(&schema);
        b.iter(|| {
            let mut bytes = 0;
            for (_, series) in samples_partitions(&profiles) {
                let mut w = ArrowWriter::try_new(
                    Vec::new(),
                    file_schema.clone(),
                    Some(writer_properties()),
                )
                .unwrap();
                for chunk in samples_chunks(&series, SAMPLES_CHUNK_ROWS) {
                    w.write(&samples_rows(chunk, &schema, &file_schema).unwrap())
                        .unwrap();
                }
                bytes += w.into_inner().unwrap().len();
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, samples);
criterion_main!(benches);
