//! Synthetic Go-style CPU profiles.
//!
//! ```text
//!  World (per seed): function pool  = hot runtime/stdlib leaves + app functions (Zipf ranks)
//!                    services       = name, entry chains, pods; regions
//!  one stack:  entry chain (runtime.goexit → net/http … ) ─▶ app frames ─▶ leaf
//!              app frame = f(service, caller, k), k ~ Zipf(fanout): a fixed call graph
//!                          (each function always calls the same few callees), whose callees
//!                          come from a Zipf-skewed pool, so stacks share prefixes and frames
//!              leaf      = hot runtime leaf (Zipf) or the last app frame
//!  per service: a population of 3 × N distinct stacks, ranked (hottest first)
//!  one profile:  N distinct stacks drawn from it ∝ Zipf(rank), without replacement: hot
//!                stacks recur in every profile, the tail varies; counts fall with the rank
//!                (Pareto noise); values [count, count × period]
//! ```
//!
//! Everything is derived from one seed, so a pool is reproducible byte for byte (given the
//! same profile time).

use std::collections::{HashMap, HashSet};
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;
use prost::bytes::Bytes;
use stackdrift_proto::pprof::{Function, Line, Location, Mapping, Profile, Sample, ValueType};

/// Profile duration written in every profile (what Go SDKs send: 10 s windows).
pub(crate) const PROFILE_DURATION_NANOS: i64 = 10_000_000_000;

/// How the profiles of a pool look.
#[derive(Debug, Clone)]
pub(crate) struct GenConfig {
    /// Number of distinct services (`service_name` values).
    pub(crate) services: usize,
    /// Size of the function-name pool (runtime leaves included).
    pub(crate) functions: usize,
    /// Mean stack depth; each stack's depth is drawn in ±50 % of it.
    pub(crate) stack_depth: usize,
    /// Distinct stacks (pprof `sample` entries) per profile.
    pub(crate) stacks_per_profile: usize,
    /// Sampling rate in Hz; the period is 1e9 / rate nanoseconds.
    pub(crate) sample_rate: u64,
    /// Distinct values of the `region` label.
    pub(crate) regions: usize,
    /// Distinct values of the `pod` label, per service.
    pub(crate) pods: usize,
    /// Seed of everything.
    pub(crate) seed: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            services: 10,
            functions: 2000,
            stack_depth: 24,
            stacks_per_profile: 300,
            sample_rate: 100,
            regions: 4,
            pods: 20,
            seed: 1,
        }
    }
}

/// One pre-generated push: series labels plus a gzipped pprof.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    /// The `service_name` label.
    pub(crate) service: String,
    /// Series labels, `service_name` first, then `region` and `pod` (no `__name__`).
    pub(crate) labels: Vec<(String, String)>,
    /// The gzipped pprof, as Go SDKs send it.
    pub(crate) gz: Bytes,
    /// Size of the pprof before compression.
    pub(crate) raw_len: usize,
    /// Number of pprof `sample` entries.
    pub(crate) samples: usize,
}

/// A small, fast, seedable PRNG (SplitMix64): enough for synthetic data, no dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        unit_of(self.next_u64())
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// SplitMix64's finalizer: a good 64-bit mixing function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit_of(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Cumulative Zipf weights `1/(rank+1)^s` over `n` ranks, normalized to end at 1.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n.max(1))
        .map(|r| {
            acc += 1.0 / ((r + 1) as f64).powf(s);
            acc
        })
        .collect();
    let total = acc;
    for c in &mut cdf {
        *c /= total;
    }
    cdf
}

/// The rank whose CDF bucket holds `u ∈ [0, 1)`.
fn zipf_pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|c| *c <= u).min(cdf.len() - 1)
}

/// Hot leaf functions (what dominates real Go CPU profiles), hottest first.
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
    ("runtime.findObject", "runtime/mbitmap.go"),
    ("runtime.memclrNoHeapPointers", "runtime/memclr_amd64.s"),
    ("strconv.ParseInt", "strconv/atoi.go"),
    ("runtime.nanotime1", "runtime/sys_linux_amd64.s"),
    ("bytes.(*Buffer).Write", "bytes/buffer.go"),
    ("reflect.Value.Field", "reflect/value.go"),
    ("sort.insertionSort", "sort/zsortinterface.go"),
];

/// Entry chains (outermost first): where goroutines start.
const ENTRIES: &[&[(&str, &str)]] = &[
    &[
        ("runtime.goexit", "runtime/asm_amd64.s"),
        ("net/http.(*conn).serve", "net/http/server.go"),
        ("net/http.serverHandler.ServeHTTP", "net/http/server.go"),
        ("net/http.(*ServeMux).ServeHTTP", "net/http/server.go"),
    ],
    &[
        ("runtime.goexit", "runtime/asm_amd64.s"),
        (
            "google.golang.org/grpc.(*Server).serveStreams.func2.1",
            "google.golang.org/grpc/server.go",
        ),
        (
            "google.golang.org/grpc.(*Server).handleStream",
            "google.golang.org/grpc/server.go",
        ),
        (
            "google.golang.org/grpc.(*Server).processUnaryRPC",
            "google.golang.org/grpc/server.go",
        ),
    ],
    &[
        ("runtime.goexit", "runtime/asm_amd64.s"),
        ("main.(*worker).run", "main.go"),
    ],
    &[
        ("runtime.goexit", "runtime/asm_amd64.s"),
        ("runtime.main", "runtime/proc.go"),
        ("main.main", "main.go"),
    ],
];

const MODULES: &[&str] = &[
    "api", "store", "cache", "rpc", "authz", "billing", "index", "queue", "metrics", "kit",
];
const PACKAGES: &[&str] = &[
    "handler", "server", "codec", "model", "repo", "client", "pool", "retry", "encoding", "sched",
    "ledger", "session",
];
const TYPES: &[&str] = &[
    "Handler", "Server", "Decoder", "Encoder", "Store", "Client", "Pool", "Cache", "Worker",
    "Batch", "Conn", "Tx",
];
const VERBS: &[&str] = &[
    "Handle", "Serve", "Decode", "Encode", "Load", "Save", "Fetch", "Apply", "Process", "Merge",
    "Scan", "Flush",
];
const SERVICES: &[&str] = &[
    "checkout",
    "cart",
    "payments",
    "search",
    "catalog",
    "auth",
    "shipping",
    "recommendation",
    "frontend",
    "inventory",
    "notification",
    "pricing",
];
const REGIONS: &[&str] = &[
    "us-east-1",
    "eu-west-1",
    "ap-southeast-1",
    "us-west-2",
    "eu-central-1",
    "sa-east-1",
];

#[derive(Debug)]
struct FuncDef {
    name: String,
    file: String,
    start_line: i64,
}

#[derive(Debug)]
struct ServiceDef {
    name: String,
    /// Rotation of the app-function Zipf ranks: each service has its own hot functions.
    offset: usize,
    /// Salt of the call graph.
    salt: u64,
    pods: Vec<String>,
}

/// Everything a seed determines besides the individual profiles.
#[derive(Debug)]
struct World {
    funcs: Vec<FuncDef>,
    /// Pool index of each entry chain's frames.
    entries: Vec<Vec<usize>>,
    /// First app function in `funcs` (before it: leaves and entry frames).
    app_start: usize,
    entry_cdf: Vec<f64>,
    app_cdf: Vec<f64>,
    leaf_cdf: Vec<f64>,
    branch_cdf: Vec<f64>,
    services: Vec<ServiceDef>,
    regions: Vec<String>,
}

/// Branches per call-tree node (Zipf-skewed, so the first few dominate).
const FANOUT: usize = 6;

impl World {
    fn new(cfg: &GenConfig) -> Self {
        let mut rng = Rng::new(cfg.seed ^ 0x5EED_0F0F_0F0F);
        let mut funcs: Vec<FuncDef> = Vec::new();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        let mut add_std = |funcs: &mut Vec<FuncDef>, name: &'static str, file: &str| -> usize {
            *by_name.entry(name).or_insert_with(|| {
                funcs.push(FuncDef {
                    name: name.to_owned(),
                    file: format!("/usr/local/go/src/{file}"),
                    start_line: 20 + (mix(funcs.len() as u64) % 900) as i64,
                });
                funcs.len() - 1
            })
        };
        for &(name, file) in LEAVES {
            add_std(&mut funcs, name, file);
        }
        let entries: Vec<Vec<usize>> = ENTRIES
            .iter()
            .map(|chain| {
                chain
                    .iter()
                    .map(|&(name, file)| add_std(&mut funcs, name, file))
                    .collect()
            })
            .collect();
        let app_start = funcs.len();
        // At least a handful of app functions, whatever `--functions` says.
        let app_count = cfg.functions.saturating_sub(app_start).max(8);
        for i in 0..app_count {
            let module = MODULES[i % MODULES.len()];
            let pkg = PACKAGES[(i / MODULES.len()) % PACKAGES.len()];
            let ty = TYPES[rng.below(TYPES.len())];
            let verb = VERBS[rng.below(VERBS.len())];
            let base = format!("github.com/acme/{module}/{pkg}");
            let name = match i % 4 {
                0 | 1 => format!("{base}.(*{ty}).{verb}{i}"),
                2 => format!("{base}.{verb}{ty}{i}"),
                _ => format!("{base}.(*{ty}).{verb}{i}.func{}", 1 + rng.below(3)),
            };
            // About eight functions per file.
            let file = format!(
                "{base}/{}_{}.go",
                ty.to_ascii_lowercase(),
                i / (MODULES.len() * 8)
            );
            funcs.push(FuncDef {
                name,
                file,
                start_line: 10 + rng.below(1500) as i64,
            });
        }
        let services = (0..cfg.services.max(1))
            .map(|s| {
                let base = SERVICES[s % SERVICES.len()];
                let name = if s < SERVICES.len() {
                    base.to_owned()
                } else {
                    format!("{base}-{}", s / SERVICES.len())
                };
                let rs = format!("{:06x}", mix(cfg.seed ^ s as u64) & 0xff_ffff);
                let pods = (0..cfg.pods.max(1))
                    .map(|p| format!("{name}-{rs}-{:05x}", mix(p as u64 ^ 0xA5) & 0xf_ffff))
                    .collect();
                ServiceDef {
                    offset: s * app_count / cfg.services.max(1),
                    salt: mix(cfg
                        .seed
                        .wrapping_add(s as u64)
                        .wrapping_mul(0x1234_5678_9ABC)),
                    name,
                    pods,
                }
            })
            .collect();
        let regions = (0..cfg.regions.max(1))
            .map(|r| {
                if r < REGIONS.len() {
                    REGIONS[r].to_owned()
                } else {
                    format!("region-{r}")
                }
            })
            .collect();
        Self {
            funcs,
            entries,
            app_start,
            entry_cdf: zipf_cdf(ENTRIES.len(), 1.0),
            app_cdf: zipf_cdf(app_count, 1.05),
            leaf_cdf: zipf_cdf(LEAVES.len(), 1.3),
            branch_cdf: zipf_cdf(FANOUT, 1.6),
            services,
            regions,
        }
    }

    fn app_count(&self) -> usize {
        self.funcs.len() - self.app_start
    }

    /// The app function `parent` calls on branch `k` in `svc`'s call graph.
    fn child(&self, svc: &ServiceDef, parent: usize, k: usize) -> usize {
        let h = mix(svc.salt ^ mix(((parent as u64) << 8) ^ k as u64));
        let rank = zipf_pick(&self.app_cdf, unit_of(h));
        self.app_start + (rank + svc.offset) % self.app_count()
    }

    /// One stack, outermost frame first, as pool indices.
    fn stack(&self, svc: &ServiceDef, mean_depth: usize, rng: &mut Rng) -> Vec<usize> {
        let lo = (mean_depth / 2).max(1);
        let hi = (mean_depth + mean_depth / 2).max(lo);
        let depth = lo + rng.below(hi - lo + 1);
        let entry = &self.entries[zipf_pick(&self.entry_cdf, rng.unit())];
        let mut frames: Vec<usize> = entry
            .iter()
            .copied()
            .take(depth.saturating_sub(1))
            .collect();
        // The first app frame hangs off the entry chain's last frame.
        let mut parent = *frames.last().unwrap_or(&0);
        while frames.len() + 1 < depth {
            let k = zipf_pick(&self.branch_cdf, rng.unit());
            let child = self.child(svc, parent, k);
            frames.push(child);
            parent = child;
        }
        // Leaf: mostly a hot runtime/stdlib function, otherwise one more app frame.
        if rng.unit() < 0.65 {
            frames.push(zipf_pick(&self.leaf_cdf, rng.unit()));
        } else {
            let k = zipf_pick(&self.branch_cdf, rng.unit());
            frames.push(self.child(svc, parent, k));
        }
        frames
    }
}

/// String table under construction (index 0 is "").
#[derive(Debug)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        Self {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// A stack of a service's population: frames (outermost first) and where in the leaf
/// function the sample landed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PopStack {
    frames: Vec<usize>,
    leaf_offset: usize,
}

/// Stacks a service runs, per stack of a profile: a profile draws its stacks from them.
const POPULATION_FACTOR: usize = 3;

/// A generator of payloads for one configuration.
#[derive(Debug)]
pub(crate) struct Generator {
    cfg: GenConfig,
    world: World,
    /// Per service: its distinct stacks, hottest first.
    populations: Vec<Vec<PopStack>>,
    /// Zipf weight of each population rank.
    weights: Vec<f64>,
}

impl Generator {
    /// Builds the function pool, services, labels and each service's stack population for
    /// `cfg`.
    pub(crate) fn new(cfg: GenConfig) -> Self {
        let world = World::new(&cfg);
        let size = cfg
            .stacks_per_profile
            .saturating_mul(POPULATION_FACTOR)
            .max(1);
        let populations = world
            .services
            .iter()
            .map(|svc| {
                let mut rng = Rng::new(svc.salt);
                let mut seen: HashSet<PopStack> = HashSet::with_capacity(size);
                let mut population = Vec::with_capacity(size);
                let mut attempts = 0usize;
                while population.len() < size && attempts < size * 50 {
                    attempts += 1;
                    let stack = PopStack {
                        frames: world.stack(svc, cfg.stack_depth, &mut rng),
                        // Leaf PCs vary inside a function.
                        leaf_offset: rng.below(24),
                    };
                    if seen.insert(stack.clone()) {
                        population.push(stack);
                    }
                }
                population
            })
            .collect();
        let weights = (0..size).map(|r| 1.0 / (r + 1) as f64).collect();
        Self {
            cfg,
            world,
            populations,
            weights,
        }
    }

    /// `k` distinct population ranks, drawn with probability ∝ Zipf weight (weighted
    /// sampling without replacement, Efraimidis–Spirakis), in rank order.
    fn draw(&self, population: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
        let mut keys: Vec<(f64, usize)> = (0..population)
            .map(|r| ((1.0 - rng.unit()).ln() / self.weights[r], r))
            .collect();
        keys.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut ranks: Vec<usize> = keys.iter().take(k).map(|(_, r)| *r).collect();
        ranks.sort_unstable();
        ranks
    }

    /// `count` payloads, services round-robin, `region`/`pod` drawn at random; every profile
    /// carries `time_nanos`.
    pub(crate) fn pool(&self, count: usize, time_nanos: i64) -> Vec<Payload> {
        let mut rng = Rng::new(self.cfg.seed);
        (0..count)
            .map(|i| self.payload(i % self.world.services.len(), time_nanos, &mut rng))
            .collect()
    }

    /// One payload of service number `s` (modulo the service count) dated `time_nanos`, with
    /// `region`/`pod` drawn from `rng`.
    pub(crate) fn payload(&self, s: usize, time_nanos: i64, rng: &mut Rng) -> Payload {
        let s = s % self.world.services.len();
        let svc = &self.world.services[s];
        let region = &self.world.regions[rng.below(self.world.regions.len())];
        let pod = &svc.pods[rng.below(svc.pods.len())];
        let profile = self.profile(s, time_nanos, rng);
        let raw = profile.encode_to_vec();
        // Go's runtime/pprof writes with gzip.BestSpeed.
        let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 3), Compression::fast());
        enc.write_all(&raw).expect("gzip into a Vec");
        let gz = enc.finish().expect("gzip into a Vec");
        Payload {
            service: svc.name.clone(),
            labels: vec![
                ("service_name".to_owned(), svc.name.clone()),
                ("region".to_owned(), region.clone()),
                ("pod".to_owned(), pod.clone()),
            ],
            gz: Bytes::from(gz),
            raw_len: raw.len(),
            samples: profile.sample.len(),
        }
    }

    /// One CPU profile of service `s`: `stacks_per_profile` distinct stacks of its population
    /// (fewer only if its call graph is too small to hold that many). Hot stacks are in nearly
    /// every profile, with high counts; the tail changes from profile to profile.
    fn profile(&self, s: usize, time_nanos: i64, rng: &mut Rng) -> Profile {
        let cfg = &self.cfg;
        let world = &self.world;
        let svc = &world.services[s];
        let population = &self.populations[s];
        let period = 1_000_000_000 / cfg.sample_rate.max(1) as i64;
        let mut strings = Strings::new();
        let sample_type = vec![
            ValueType {
                r#type: strings.get("samples"),
                unit: strings.get("count"),
            },
            ValueType {
                r#type: strings.get("cpu"),
                unit: strings.get("nanoseconds"),
            },
        ];
        let period_type = ValueType {
            r#type: strings.get("cpu"),
            unit: strings.get("nanoseconds"),
        };
        let mapping = Mapping {
            id: 1,
            memory_start: 0x40_0000,
            memory_limit: 0x40_0000 + 0x100_0000,
            file_offset: 0,
            filename: strings.get(&format!("/usr/local/bin/{}", svc.name)),
            build_id: strings.get(&format!("{:040x}", u128::from(svc.salt))),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        };

        let mut locations: HashMap<(usize, i64), u64> = HashMap::new();
        let mut location: Vec<Location> = Vec::new();
        let mut used_funcs: Vec<usize> = Vec::new();
        let ranks = self.draw(population.len(), cfg.stacks_per_profile, rng);
        let mut samples: Vec<Sample> = Vec::with_capacity(ranks.len());
        for rank in ranks {
            let PopStack {
                frames: stack,
                leaf_offset,
            } = &population[rank];
            let mut ids = Vec::with_capacity(stack.len());
            // Leaf first, as pprof wants.
            for (pos, &f) in stack.iter().enumerate().rev() {
                let def = &world.funcs[f];
                let line = match stack.get(pos + 1) {
                    // A call site: fixed per (caller, callee).
                    Some(&callee) => {
                        def.start_line + 1 + (mix(((f as u64) << 32) | callee as u64) % 60) as i64
                    }
                    None => def.start_line + 1 + *leaf_offset as i64,
                };
                let next_id = location.len() as u64 + 1;
                let id = *locations.entry((f, line)).or_insert_with(|| {
                    if !used_funcs.contains(&f) {
                        used_funcs.push(f);
                    }
                    location.push(Location {
                        id: next_id,
                        mapping_id: 1,
                        address: 0x40_1000 + (f as u64) * 0x200 + (line as u64 & 0x1ff),
                        line: vec![Line {
                            function_id: f as u64 + 1,
                            line,
                            column: 0,
                        }],
                        is_folded: false,
                    });
                    next_id
                });
                ids.push(id);
            }
            // Hot stacks get many samples, the tail one or two; noise heavy-tailed (Pareto 3).
            let noise = (1.0 - rng.unit()).powf(-1.0 / 3.0);
            let count =
                ((noise * 60.0 / ((rank + 1) as f64).powf(0.9)).round() as i64).clamp(1, 10_000);
            samples.push(Sample {
                location_id: ids,
                value: vec![count, count * period],
                label: Vec::new(),
            });
        }

        used_funcs.sort_unstable();
        let function = used_funcs
            .iter()
            .map(|&f| {
                let def = &world.funcs[f];
                let name = strings.get(&def.name);
                Function {
                    id: f as u64 + 1,
                    name,
                    system_name: name,
                    filename: strings.get(&def.file),
                    start_line: def.start_line,
                }
            })
            .collect();

        Profile {
            sample_type,
            sample: samples,
            mapping: vec![mapping],
            location,
            function,
            string_table: strings.table,
            drop_frames: 0,
            keep_frames: 0,
            time_nanos,
            duration_nanos: PROFILE_DURATION_NANOS,
            period_type: Some(period_type),
            period,
            comment: Vec::new(),
            default_sample_type: 0,
            doc_url: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use stackdrift_model::pprof::decode_profile;
    use stackdrift_model::{DecodeLimits, LabelLimits, Labels, SeriesContext, decode_pprof};

    use super::*;

    const T: i64 = 1_700_000_000_000_000_000;

    fn small() -> GenConfig {
        GenConfig {
            services: 3,
            stacks_per_profile: 120,
            ..GenConfig::default()
        }
    }

    #[test]
    fn profiles_decode_and_have_the_requested_shape() {
        let cfg = small();
        let pool = Generator::new(cfg.clone()).pool(6, T);
        assert_eq!(pool.len(), 6);
        for p in &pool {
            let labels = Labels::new(p.labels.clone(), &LabelLimits::default()).unwrap();
            let ctx = SeriesContext {
                labels: &labels,
                family: Some("process_cpu"),
                now_us: 0,
                known_stacks: None,
            };
            let n = decode_pprof(&p.gz, ctx, &DecodeLimits::default()).unwrap();
            assert_eq!(n.time_us, T / 1_000);
            assert_eq!(n.duration_us, PROFILE_DURATION_NANOS / 1_000);
            // Two sample types (samples/count, cpu/nanoseconds) → two series.
            assert_eq!(n.series.len(), 2);
            assert_eq!(p.samples, cfg.stacks_per_profile);
            assert_eq!(n.stacks.len(), cfg.stacks_per_profile);
            for s in &n.series {
                assert_eq!(s.samples.len(), cfg.stacks_per_profile);
            }

            let raw = decode_profile(&p.gz, 1 << 30).unwrap();
            assert_eq!(raw.sample_type.len(), 2);
            assert_eq!(raw.period, 10_000_000);
            assert_eq!(raw.string_table[raw.sample_type[1].r#type as usize], "cpu");
            assert_eq!(p.raw_len, raw.encoded_len());
            for s in &raw.sample {
                assert_eq!(s.value[1], s.value[0] * raw.period);
            }
            // Depth varies around the mean, within ±50 % (+1 is impossible, so ≤ 36).
            let depths: Vec<usize> = raw.sample.iter().map(|s| s.location_id.len()).collect();
            assert!(depths.iter().all(|d| (12..=36).contains(d)), "{depths:?}");
            let mean = depths.iter().sum::<usize>() as f64 / depths.len() as f64;
            assert!((20.0..28.0).contains(&mean), "mean depth {mean}");
        }
        let services: HashSet<&str> = pool.iter().map(|p| p.service.as_str()).collect();
        assert_eq!(services.len(), 3);
    }

    #[test]
    fn stacks_share_prefixes_and_leaves_are_skewed() {
        let pool = Generator::new(small()).pool(1, T);
        let raw = decode_profile(&pool[0].gz, 1 << 30).unwrap();
        let name_of = |loc: u64| {
            let l = raw.location.iter().find(|l| l.id == loc).unwrap();
            let f = raw
                .function
                .iter()
                .find(|f| f.id == l.line[0].function_id)
                .unwrap();
            raw.string_table[f.name as usize].clone()
        };
        let mut leaves: HashMap<String, usize> = HashMap::new();
        for s in &raw.sample {
            *leaves.entry(name_of(s.location_id[0])).or_default() += 1;
        }
        let top = leaves.values().max().copied().unwrap();
        assert!(top * 8 >= raw.sample.len(), "top leaf in {top} stacks");
        // Far fewer locations than frames: stacks share their outer frames.
        let frames: usize = raw.sample.iter().map(|s| s.location_id.len()).sum();
        assert!(
            raw.location.len() * 3 < frames,
            "{} locations",
            raw.location.len()
        );
        assert!(
            raw.string_table
                .iter()
                .any(|s| s.starts_with("github.com/acme/") && s.contains(".(*"))
        );
    }

    #[test]
    fn profiles_of_a_service_share_their_hot_stacks() {
        let cfg = small();
        let pool = Generator::new(cfg.clone()).pool(2 * cfg.services, T);
        let stacks = |p: &Payload| -> HashSet<u64> {
            let labels = Labels::new(p.labels.clone(), &LabelLimits::default()).unwrap();
            let ctx = SeriesContext {
                labels: &labels,
                family: None,
                now_us: 0,
                known_stacks: None,
            };
            let n = decode_pprof(&p.gz, ctx, &DecodeLimits::default()).unwrap();
            n.stacks.iter().map(|s| s.id).collect()
        };
        // Payloads i and i + services are two profiles of the same service.
        let (a, b) = (stacks(&pool[0]), stacks(&pool[cfg.services]));
        assert_eq!(pool[0].service, pool[cfg.services].service);
        let shared = a.intersection(&b).count();
        assert!(
            shared * 4 > a.len() && shared < a.len(),
            "{shared} of {} shared",
            a.len()
        );
        // Another service: hardly anything in common.
        let c = stacks(&pool[1]);
        assert!(a.intersection(&c).count() * 10 < a.len());
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = Generator::new(small()).pool(4, T);
        let b = Generator::new(small()).pool(4, T);
        let c = Generator::new(GenConfig { seed: 2, ..small() }).pool(4, T);
        for ((a, b), c) in a.iter().zip(&b).zip(&c) {
            assert_eq!(a.gz, b.gz);
            assert_eq!(a.labels, b.labels);
            assert_ne!(a.gz, c.gz);
        }
    }
}
