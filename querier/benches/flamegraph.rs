//! Micro-benchmarks of flame graph building and encoding in `stackdrift-querier`.
//!
//! ```text
//!  flamegraph/build            FlameTree::add of 3,000 leaf-first stacks    (stacks/s)
//!  flamegraph/encode/16384     FlameTree::to_flamegraph(Some(16384))        (tree nodes/s)
//!  flamegraph/encode/unlimited FlameTree::to_flamegraph(None)               (tree nodes/s)
//!  flamegraph/diff/16384       flamegraph::diff(left, right, Some(16384))   (nodes of both/s)
//! ```
//!
//! The stacks are built here, deterministically (SplitMix64, no `rand`): depth 12..=36
//! (mean 24) over a pool of 2,000 Go-style function names
//! (`github.com/acme/pkg7.(*Server).Handle42`), walked along a fixed, skewed call graph so
//! that stacks share prefixes as real ones do. The diff's right side shares four fifths of
//! its stacks with the left one, with other values.
//!
//! Run with `cargo bench -p stackdrift-querier --bench flamegraph`; add a filter to run a
//! subset, e.g. `cargo bench -p stackdrift-querier --bench flamegraph -- diff`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stackdrift_querier::flamegraph::{FlameTree, diff};

/// Stacks per tree.
const STACKS: usize = 3_000;
/// Size of the function pool.
const FUNCTIONS: usize = 2_000;
/// Mean stack depth; depths are uniform in `MEAN_DEPTH / 2 ..= MEAN_DEPTH * 3 / 2`.
const MEAN_DEPTH: usize = 24;
/// Node limit the query API applies by default.
const MAX_NODES: usize = 16_384;

/// SplitMix64: a small, seedable, deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        unit_of(self.next_u64())
    }
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit_of(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

const TYPES: &[&str] = &[
    "Server", "Client", "Store", "Cache", "Pool", "Worker", "Codec",
];
const VERBS: &[&str] = &[
    "Handle", "Serve", "Load", "Save", "Fetch", "Apply", "Decode",
];
/// Pool indices below this are hot runtime leaves; the next three start stacks.
const LEAVES: usize = 12;
const ROOTS: usize = 3;

/// The function-name pool: runtime leaves, root frames, then application functions.
fn function_pool() -> Vec<String> {
    (0..FUNCTIONS)
        .map(|i| {
            if i < LEAVES {
                format!("runtime.leaf{i}")
            } else if i < LEAVES + ROOTS {
                format!("main.entry{i}")
            } else {
                let h = mix(i as u64 ^ 0xF00D);
                let ty = TYPES[(h % TYPES.len() as u64) as usize];
                let verb = VERBS[((h >> 8) % VERBS.len() as u64) as usize];
                format!("github.com/acme/pkg{}.(*{ty}).{verb}{i}", i % 37)
            }
        })
        .collect()
}

/// The function `parent` calls on branch `k`: a fixed call graph, skewed towards the low
/// (hot) end of the application functions.
fn callee(parent: usize, k: usize) -> usize {
    let u = unit_of(mix(((parent as u64) << 8) ^ k as u64 ^ 0xCA11));
    let start = LEAVES + ROOTS;
    let apps = FUNCTIONS - start;
    start + ((u * u * u * apps as f64) as usize).min(apps - 1)
}

/// `count` weighted stacks, leaf first, as indices into the function pool.
fn stacks(count: usize, seed: u64) -> Vec<(Vec<usize>, i64)> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|rank| {
            let depth = MEAN_DEPTH / 2 + rng.below(MEAN_DEPTH + 1);
            let mut frames = vec![LEAVES + rng.below(ROOTS)];
            while frames.len() + 1 < depth {
                // Branch 0 is taken most often: stacks share long prefixes.
                let k = (rng.unit() * rng.unit() * 6.0) as usize;
                frames.push(callee(frames[frames.len() - 1], k));
            }
            frames.push(if rng.below(3) < 2 {
                rng.below(LEAVES)
            } else {
                callee(frames[frames.len() - 1], rng.below(6))
            });
            frames.reverse();
            let value = (100_000 / (rank as i64 + 1)).max(1) + rng.below(100) as i64;
            (frames, value)
        })
        .collect()
}

/// The stacks as function names, leaf first.
fn named(pool: &[String], stacks: &[(Vec<usize>, i64)]) -> Vec<(Vec<String>, i64)> {
    stacks
        .iter()
        .map(|(frames, value)| (frames.iter().map(|&f| pool[f].clone()).collect(), *value))
        .collect()
}

fn tree(stacks: &[(Vec<String>, i64)]) -> FlameTree {
    let mut tree = FlameTree::new();
    for (frames, value) in stacks {
        tree.add(frames.iter().map(String::as_str), *value);
    }
    tree
}

fn flamegraph_benches(c: &mut Criterion) {
    let pool = function_pool();
    let left_stacks = named(&pool, &stacks(STACKS, 0x5EED));
    // Right: the last four fifths of the left stacks with new values, plus new stacks.
    let mut right_stacks = named(&pool, &stacks(STACKS / 5, 0xD1FF));
    right_stacks.extend(
        left_stacks[STACKS / 5..]
            .iter()
            .enumerate()
            .map(|(i, (frames, value))| (frames.clone(), value * (1 + (i % 3) as i64) / 2 + 1)),
    );
    let left = tree(&left_stacks);
    let right = tree(&right_stacks);
    let frames: usize = left_stacks.iter().map(|(f, _)| f.len()).sum();
    eprintln!(
        "left: {} stacks, mean depth {:.1}, {} nodes; right: {} stacks, {} nodes",
        left_stacks.len(),
        frames as f64 / left_stacks.len() as f64,
        left.node_count(),
        right_stacks.len(),
        right.node_count(),
    );

    let mut group = c.benchmark_group("flamegraph");
    group.throughput(Throughput::Elements(left_stacks.len() as u64));
    group.bench_function("build", |b| b.iter(|| tree(black_box(&left_stacks))));

    group.throughput(Throughput::Elements(left.node_count() as u64));
    group.bench_function(BenchmarkId::new("encode", MAX_NODES), |b| {
        b.iter(|| black_box(&left).to_flamegraph(Some(MAX_NODES)))
    });
    group.bench_function(BenchmarkId::new("encode", "unlimited"), |b| {
        b.iter(|| black_box(&left).to_flamegraph(None))
    });

    group.throughput(Throughput::Elements(
        (left.node_count() + right.node_count()) as u64,
    ));
    group.bench_function(BenchmarkId::new("diff", MAX_NODES), |b| {
        b.iter(|| diff(black_box(&left), black_box(&right), Some(MAX_NODES)))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = flamegraph_benches
}
criterion_main!(benches);
