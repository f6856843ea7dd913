//! Micro-benchmarks of the ingest hot paths of `stackdrift-model`.
//!
//! ```text
//!  pprof/gunzip             read_capped: gunzip only                        (bytes/s of pprof)
//!  pprof/decode             decode_profile: gunzip + prost decode           (samples/s)
//!  pprof/decode_flat        read_capped + FlatProfile::decode, what decode_pprof decodes
//!                           with                                            (samples/s)
//!  pprof/normalize          normalize of an already decoded Profile         (samples/s)
//!  pprof/decode_normalize   decode_pprof, what the ingester runs per push   (samples/s)
//!  pprof/decode_normalize_known_stacks
//!                           decode_pprof with every stack already committed: frames are
//!                           neither built nor returned (the steady state of a service)
//!  stack_hash/stack_id      stack::stack_id: per-frame XXH3 + XXH3 over the frame hashes
//!  stack_hash/from_hashes   stack::stack_id_from_hashes: the combine step alone
//! ```
//!
//! The payload is built here, deterministically (SplitMix64, no `rand`): a Go-style CPU
//! profile with 300 distinct stacks, depth 12..=36 (mean 24) over a pool of 2,000
//! functions drawn along a fixed, skewed call graph (so stacks share prefixes as real ones
//! do), two sample types (`samples/count`, `cpu/nanoseconds`), a `handler` sample label on
//! about half the samples and a `span_id` (dropped from series) on a tenth.
//!
//! Run with `cargo bench -p stackdrift-model --bench ingest_paths`; add a filter to run a
//! subset, e.g. `cargo bench -p stackdrift-model --bench ingest_paths -- stack_hash`.
//! With `INGEST_PATHS_COUNT=PATH:N` in the environment the binary runs one path N times for
//! an instruction counter instead (see `count` below and BENCHMARKS.md).

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use prost::Message;
use stackdrift_model::encode::gzip;
use stackdrift_model::pprof::{
    FlatProfile, decode_profile, normalize, normalize_flat, read_capped,
};
use stackdrift_model::stack::{frame_hash, stack_id_from_hashes};
use stackdrift_model::{
    DecodeLimits, Frame, KnownStacks, LabelLimits, Labels, SeriesContext, decode_pprof, stack_id,
};
use stackdrift_proto::pprof::{
    Function, Label, Line, Location, Mapping, Profile, Sample, ValueType,
};

/// Distinct stacks (pprof `sample` entries) in the profile.
const STACKS: usize = 300;
/// Size of the function pool.
const FUNCTIONS: usize = 2_000;
/// Mean stack depth; depths are uniform in `MEAN_DEPTH / 2 ..= MEAN_DEPTH * 3 / 2`.
const MEAN_DEPTH: usize = 24;
/// CPU sampling period (100 Hz).
const PERIOD_NANOS: i64 = 10_000_000;
/// Stacks hashed per iteration of the stack hash benches.
const HASH_STACKS: usize = 1_000;
/// Depth of the stacks of the stack hash benches.
const HASH_DEPTH: usize = 24;

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

/// Hot runtime/stdlib leaves (name, file).
const LEAVES: &[(&str, &str)] = &[
    ("runtime.mallocgc", "runtime/malloc.go"),
    ("runtime.memmove", "runtime/memmove_amd64.s"),
    ("syscall.Syscall6", "syscall/syscall_linux.go"),
    ("runtime.mapaccess2_faststr", "runtime/map_faststr.go"),
    ("runtime.scanobject", "runtime/mgcmark.go"),
    ("runtime.futex", "runtime/sys_linux_amd64.s"),
    (
        "encoding/json.(*decodeState).object",
        "encoding/json/decode.go",
    ),
    (
        "compress/flate.(*compressor).deflate",
        "compress/flate/deflate.go",
    ),
    ("crypto/sha256.block", "crypto/sha256/sha256block_amd64.s"),
    ("strconv.ParseInt", "strconv/atoi.go"),
];

/// Outermost frames of every stack, by entry kind.
const ENTRIES: &[&[(&str, &str)]] = &[
    &[
        ("runtime.goexit", "runtime/asm_amd64.s"),
        ("net/http.(*conn).serve", "net/http/server.go"),
        ("net/http.serverHandler.ServeHTTP", "net/http/server.go"),
    ],
    &[
        ("runtime.goexit", "runtime/asm_amd64.s"),
        (
            "google.golang.org/grpc.(*Server).handleStream",
            "google.golang.org/grpc/server.go",
        ),
    ],
    &[
        ("runtime.goexit", "runtime/asm_amd64.s"),
        ("main.(*worker).run", "main.go"),
    ],
];

const TYPES: &[&str] = &[
    "Server", "Client", "Store", "Cache", "Pool", "Worker", "Codec",
];
const VERBS: &[&str] = &[
    "Handle", "Serve", "Load", "Save", "Fetch", "Apply", "Decode",
];

/// One function of the pool.
struct Func {
    name: String,
    file: String,
    start_line: i64,
}

/// The function pool and a fixed call graph over it.
struct World {
    funcs: Vec<Func>,
    /// Pool indices of each entry chain, outermost first.
    entries: Vec<Vec<usize>>,
    /// First application function in `funcs`.
    app_start: usize,
}

impl World {
    fn new(size: usize) -> Self {
        let mut funcs = Vec::with_capacity(size);
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        let mut std_func = |funcs: &mut Vec<Func>, name: &'static str, file: &str| {
            *by_name.entry(name).or_insert_with(|| {
                funcs.push(Func {
                    name: name.to_owned(),
                    file: format!("/usr/local/go/src/{file}"),
                    start_line: 20 + (mix(funcs.len() as u64) % 700) as i64,
                });
                funcs.len() - 1
            })
        };
        for &(name, file) in LEAVES {
            std_func(&mut funcs, name, file);
        }
        let entries = ENTRIES
            .iter()
            .map(|chain| {
                chain
                    .iter()
                    .map(|&(name, file)| std_func(&mut funcs, name, file))
                    .collect()
            })
            .collect();
        let app_start = funcs.len();
        for i in 0..size - app_start {
            let h = mix(i as u64 ^ 0xF00D);
            let pkg = i % 37;
            let ty = TYPES[(h % TYPES.len() as u64) as usize];
            let verb = VERBS[((h >> 8) % VERBS.len() as u64) as usize];
            funcs.push(Func {
                name: format!("github.com/acme/svc/pkg{pkg}.(*{ty}).{verb}{i}"),
                file: format!("github.com/acme/svc/pkg{pkg}/{}.go", ty.to_lowercase()),
                start_line: 10 + ((h >> 16) % 1_500) as i64,
            });
        }
        Self {
            funcs,
            entries,
            app_start,
        }
    }

    /// The function `parent` calls on branch `k`: a fixed call graph, skewed towards the
    /// low (hot) end of the application pool.
    fn callee(&self, parent: usize, k: usize) -> usize {
        let u = unit_of(mix(((parent as u64) << 8) ^ k as u64 ^ 0xCA11));
        let apps = self.funcs.len() - self.app_start;
        self.app_start + ((u * u * u * apps as f64) as usize).min(apps - 1)
    }

    /// One stack, outermost first, as (function index, line) pairs.
    fn stack(&self, mean_depth: usize, rng: &mut Rng) -> Vec<(usize, i64)> {
        let depth = mean_depth / 2 + rng.below(mean_depth + 1);
        let entry = &self.entries[rng.below(self.entries.len())];
        let mut frames: Vec<usize> = entry.clone();
        while frames.len() + 1 < depth {
            let parent = frames[frames.len() - 1];
            // Branch 0 is taken most often: stacks share long prefixes.
            let k = (rng.unit() * rng.unit() * 6.0) as usize;
            frames.push(self.callee(parent, k));
        }
        let leaf = if rng.below(3) < 2 {
            rng.below(LEAVES.len())
        } else {
            self.callee(frames[frames.len() - 1], rng.below(6))
        };
        frames.push(leaf);
        // Call sites are fixed by (caller, callee); the leaf line varies.
        let mut out = Vec::with_capacity(frames.len());
        for (i, &f) in frames.iter().enumerate() {
            let offset = match frames.get(i + 1) {
                Some(&next) => mix(((f as u64) << 20) ^ next as u64) % 60,
                None => rng.below(24) as u64,
            };
            out.push((f, self.funcs[f].start_line + offset as i64));
        }
        out
    }
}

/// The pprof profile the pprof benches decode, and the series labels it is pushed with.
struct Payload {
    profile: Profile,
    gz: Vec<u8>,
    raw_len: usize,
    labels: Labels,
}

/// Builds the benchmark profile with the pprof wire types.
fn build_payload() -> Payload {
    let world = World::new(FUNCTIONS);
    let mut rng = Rng(0x5EED);

    // Distinct stacks, outermost first.
    let mut seen = HashSet::new();
    let mut stacks = Vec::with_capacity(STACKS);
    while stacks.len() < STACKS {
        let s = world.stack(MEAN_DEPTH, &mut rng);
        if seen.insert(s.clone()) {
            stacks.push(s);
        }
    }

    let mut strings: Vec<String> = vec![String::new()];
    let mut string_ids: HashMap<String, i64> = HashMap::new();
    let mut intern = |s: &str| -> i64 {
        if let Some(&i) = string_ids.get(s) {
            return i;
        }
        strings.push(s.to_owned());
        string_ids.insert(s.to_owned(), strings.len() as i64 - 1);
        strings.len() as i64 - 1
    };

    let mut profile = Profile {
        sample_type: vec![
            ValueType {
                r#type: intern("samples"),
                unit: intern("count"),
            },
            ValueType {
                r#type: intern("cpu"),
                unit: intern("nanoseconds"),
            },
        ],
        period_type: Some(ValueType {
            r#type: intern("cpu"),
            unit: intern("nanoseconds"),
        }),
        period: PERIOD_NANOS,
        time_nanos: 1_767_225_600_000_000_000,
        duration_nanos: 10_000_000_000,
        mapping: vec![Mapping {
            id: 1,
            memory_start: 0x40_0000,
            memory_limit: 0x1_0000_0000,
            filename: intern("/usr/local/bin/checkout"),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            ..Default::default()
        }],
        ..Default::default()
    };

    // Functions and locations, interned as the Go runtime writes them: a function once, a
    // location per distinct (function, line).
    let mut function_ids: HashMap<usize, u64> = HashMap::new();
    let mut location_ids: HashMap<(usize, i64), u64> = HashMap::new();
    let handlers = ["/api/cart", "/api/checkout", "/healthz"];
    for (rank, stack) in stacks.iter().enumerate() {
        let mut location_id = Vec::with_capacity(stack.len());
        // pprof stores stacks leaf first.
        for &(f, line) in stack.iter().rev() {
            let function_id = *function_ids.entry(f).or_insert_with(|| {
                let func = &world.funcs[f];
                let id = profile.function.len() as u64 + 1;
                profile.function.push(Function {
                    id,
                    name: intern(&func.name),
                    system_name: intern(&func.name),
                    filename: intern(&func.file),
                    start_line: func.start_line,
                });
                id
            });
            let id = *location_ids.entry((f, line)).or_insert_with(|| {
                let id = profile.location.len() as u64 + 1;
                profile.location.push(Location {
                    id,
                    mapping_id: 1,
                    address: 0x40_0000 + (f as u64) * 0x400 + line as u64,
                    line: vec![Line {
                        function_id,
                        line,
                        column: 0,
                    }],
                    is_folded: false,
                });
                id
            });
            location_id.push(id);
        }
        // Counts fall with the rank, with some noise.
        let count = (2_000 / (rank as i64 + 1) + rng.below(5) as i64).max(1);
        let mut label = Vec::new();
        if rng.below(2) == 0 {
            label.push(Label {
                key: intern("handler"),
                str: intern(handlers[rng.below(handlers.len())]),
                ..Default::default()
            });
        }
        if rng.below(10) == 0 {
            label.push(Label {
                key: intern("span_id"),
                str: intern(&format!("{:016x}", rng.next_u64())),
                ..Default::default()
            });
        }
        profile.sample.push(Sample {
            location_id,
            value: vec![count, count * PERIOD_NANOS],
            label,
        });
    }
    profile.string_table = strings;

    let raw = profile.encode_to_vec();
    let labels = Labels::new(
        [
            ("service_name", "checkout"),
            ("region", "us-east-1"),
            ("pod", "checkout-7d9f8b6c4-x2k9p"),
        ],
        &LabelLimits::default(),
    )
    .expect("valid labels");
    Payload {
        gz: gzip(&raw),
        raw_len: raw.len(),
        profile,
        labels,
    }
}

/// What the ingester passes for a push of `labels` (`known_stacks`: stacks already stored).
fn series_context<'a>(
    labels: &'a Labels,
    known_stacks: Option<KnownStacks<'a>>,
) -> SeriesContext<'a> {
    SeriesContext {
        labels,
        family: Some("process_cpu"),
        now_us: 0,
        known_stacks,
    }
}

fn pprof_benches(c: &mut Criterion) {
    let payload = build_payload();
    let limits = DecodeLimits::default();
    let samples = payload.profile.sample.len() as u64;
    let ctx = |known_stacks| series_context(&payload.labels, known_stacks);
    // Sanity checks, and the payload's shape for the reader of the output.
    let normalized = decode_pprof(&payload.gz, ctx(None), &limits).expect("payload decodes");
    assert_eq!(normalized.stacks.len(), STACKS);
    let frames: usize = normalized.stacks.iter().map(|s| s.frames.len()).sum();
    eprintln!(
        "payload: {} samples, {} locations, {} functions, {} strings, mean depth {:.1}, \
         {} B gzipped / {} B raw, {} series",
        samples,
        payload.profile.location.len(),
        payload.profile.function.len(),
        payload.profile.string_table.len(),
        frames as f64 / STACKS as f64,
        payload.gz.len(),
        payload.raw_len,
        normalized.series.len(),
    );

    let mut group = c.benchmark_group("pprof");
    group.throughput(Throughput::Bytes(payload.raw_len as u64));
    group.bench_function("gunzip", |b| {
        b.iter(|| read_capped(black_box(&payload.gz), limits.max_uncompressed_bytes))
    });
    group.throughput(Throughput::Elements(samples));
    group.bench_function("decode", |b| {
        b.iter(|| decode_profile(black_box(&payload.gz), limits.max_uncompressed_bytes))
    });
    group.bench_function("decode_flat", |b| {
        b.iter(|| {
            let raw = read_capped(black_box(&payload.gz), limits.max_uncompressed_bytes)?;
            FlatProfile::decode(&raw).map(|p| p.samples.len())
        })
    });
    group.bench_function("normalize", |b| {
        b.iter(|| normalize(black_box(&payload.profile), ctx(None), &limits))
    });
    group.bench_function("decode_normalize", |b| {
        b.iter(|| decode_pprof(black_box(&payload.gz), ctx(None), &limits))
    });
    let all_known: KnownStacks<'_> = &|_| true;
    group.bench_function("decode_normalize_known_stacks", |b| {
        b.iter(|| decode_pprof(black_box(&payload.gz), ctx(Some(all_known)), &limits))
    });
    group.finish();
}

fn stack_hash_benches(c: &mut Criterion) {
    let world = World::new(FUNCTIONS);
    let mut rng = Rng(0xA5A5);
    // Leaf-first frames of HASH_STACKS stacks of exactly HASH_DEPTH frames.
    let stacks: Vec<Vec<Frame>> = (0..HASH_STACKS)
        .map(|_| {
            // Depths 24..=72: keep the outermost HASH_DEPTH frames.
            let mut s = world.stack(HASH_DEPTH * 2, &mut rng);
            s.truncate(HASH_DEPTH);
            s.iter()
                .rev()
                .map(|&(f, line)| Frame {
                    function: world.funcs[f].name.as_str().into(),
                    file: world.funcs[f].file.as_str().into(),
                    line,
                })
                .collect()
        })
        .collect();
    assert!(stacks.iter().all(|s| s.len() == HASH_DEPTH));
    let hashes: Vec<Vec<u64>> = stacks
        .iter()
        .map(|s| {
            s.iter()
                .map(|f| frame_hash(&f.function, &f.file, f.line))
                .collect()
        })
        .collect();

    let mut group = c.benchmark_group("stack_hash");
    group.throughput(Throughput::Elements(HASH_STACKS as u64));
    group.bench_function(BenchmarkId::new("stack_id", HASH_DEPTH), |b| {
        b.iter(|| {
            black_box(&stacks)
                .iter()
                .fold(0u64, |acc, s| acc ^ stack_id(s))
        })
    });
    group.bench_function(BenchmarkId::new("from_hashes", HASH_DEPTH), |b| {
        b.iter(|| {
            black_box(&hashes)
                .iter()
                .fold(0u64, |acc, h| acc ^ stack_id_from_hashes(h))
        })
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
    targets = pprof_benches, stack_hash_benches
}

/// `INGEST_PATHS_COUNT=PATH:N` runs PATH (`decode_flat`, `decode_normalize` or
/// `decode_normalize_known_stacks`, on the already gunzipped payload) N times and nothing
/// else, for an instruction counter: `valgrind --tool=callgrind` of N and of 0 iterations,
/// the difference divided by N, is one profile's cost, the same on any load.
fn count(spec: &str) {
    let (path, n) = spec.split_once(':').expect("INGEST_PATHS_COUNT=PATH:N");
    let n: usize = n.parse().expect("N: a number of iterations");
    let payload = build_payload();
    let limits = DecodeLimits::default();
    let raw = read_capped(&payload.gz, limits.max_uncompressed_bytes).expect("payload");
    let all_known: KnownStacks<'_> = &|_| true;
    let known = match path {
        "decode_flat" => None,
        "decode_normalize" => Some(None),
        "decode_normalize_known_stacks" => Some(Some(all_known)),
        other => panic!("unknown path {other:?}"),
    };
    let mut samples = 0;
    for _ in 0..n {
        let flat = FlatProfile::decode(black_box(&raw)).expect("payload decodes");
        samples += match known {
            None => flat.samples.len(),
            Some(known) => {
                let ctx = series_context(&payload.labels, known);
                normalize_flat(&flat, ctx, &limits)
                    .expect("payload normalizes")
                    .sample_count()
            }
        };
    }
    println!("{path}: {n} iterations, {samples} samples");
}

fn main() {
    if let Ok(spec) = std::env::var("INGEST_PATHS_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
