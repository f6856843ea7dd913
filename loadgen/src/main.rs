//! `stackdrift-loadgen`: pushes realistic CPU profiles to a Pyroscope-compatible server and
//! reports throughput and acknowledgement latency; or, with `--floor`, measures how fast this
//! machine can decode the same payloads (the ingest ceiling without any I/O).
//!
//! ```text
//!  generate pool (before the clock starts) ─┬─ --dump DIR  → DIR/profile-NNN.pb.gz, exit
//!                                           ├─ --floor     → N threads: flate2 + prost (the
//!                                           │                floor), libdeflate + prost,
//!                                           │                then the ingester's flat decoder,
//!                                           │                then decode_pprof (normalize), then
//!                                           │                again with every stack known,
//!                                           │                each for --duration (only the
//!                                           │                first two: --denominators-only)
//!                                           └─ run         → --clients closed-loop senders
//!                                                            (optionally paced by --rate)
//!  end: human summary + one `RESULT {json}` line
//! ```

#[path = "gen.rs"]
mod generate;
mod send;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use stackdrift_model::pprof::{FlatProfile, decode_profile, gunzip_streaming, read_capped};
use stackdrift_model::{DecodeLimits, LabelLimits, Labels, SeriesContext, decode_pprof};

use crate::generate::{GenConfig, Generator, Payload};

/// The server's allocator (mimalloc), so that the decode floor measured here costs what the
/// same decoding costs inside stackdrift.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::send::{Outcome, Prepared, Protocol, Sender, Target};
use crate::stats::{Stats, report_run, round3};

/// Load generator for stackdrift (Pyroscope push API).
#[derive(Debug, Parser)]
#[command(name = "stackdrift-loadgen", version)]
struct Args {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:4040")]
    url: String,
    /// How to push.
    #[arg(long, value_enum, default_value = "connect")]
    protocol: Protocol,
    /// Concurrent clients; each waits for an answer before sending its next push.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Run time in seconds (each floor phase runs this long).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds of load before --duration starts, not counted in the results: leaves out the
    /// cold start, when every client's first push arrives at once.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Stop after this many pushes in total (whichever of this and --duration ends first).
    #[arg(long)]
    pushes: Option<u64>,
    /// Open loop: push number k is due k / RATE seconds after the start, and its latency is
    /// counted from then, so a server that falls behind shows in the latencies. Give enough
    /// --clients to hold RATE × latency pushes in flight. Closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// `X-Scope-OrgID` (tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// Bearer token.
    #[arg(long)]
    token: Option<String>,

    /// Distinct profiles generated before the run and sent round-robin.
    #[arg(long, default_value_t = 256)]
    payloads: usize,
    /// Distinct services (`service_name`).
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Size of the function-name pool.
    #[arg(long, default_value_t = 2000)]
    functions: usize,
    /// Mean stack depth (each stack varies by ±50 %).
    #[arg(long, default_value_t = 24)]
    stack_depth: usize,
    /// Distinct stacks (pprof samples) per profile.
    #[arg(long, default_value_t = 300)]
    stacks_per_profile: usize,
    /// CPU sampling rate in Hz (period = 1e9 / rate ns).
    #[arg(long, default_value_t = 100)]
    sample_rate: u64,
    /// Distinct values of `region` and of `pod` (per service): `REGIONS,PODS`, or one number
    /// for both.
    #[arg(long, default_value = "4,20", value_parser = parse_cardinality)]
    label_cardinality: (usize, usize),
    /// Seed of the generated profiles.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// No network: measure gunzip + pprof decode, then decode + normalize, of the pool.
    #[arg(long)]
    floor: bool,
    /// Threads for --floor (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// With --floor: only the two decodes that ingest throughput is compared with (flate2 +
    /// prost, libdeflate + prost), as `scripts/bench-ingest.sh` measures them right before
    /// and after each push run.
    #[arg(long, requires = "floor")]
    denominators_only: bool,
    /// Backfill instead of a timed run: every service pushes one profile per
    /// --interval-secs, dated from this many hours ago up to now, each generated on the fly;
    /// --clients pushes in flight. The server must accept old profiles
    /// (`--max-profile-age-secs 0`).
    #[arg(long, value_name = "HOURS")]
    backfill_hours: Option<f64>,
    /// Seconds between two profiles of a service in --backfill-hours.
    #[arg(long, default_value_t = 10.0)]
    interval_secs: f64,
    /// Instead of pushing: write this many data files straight into the tables at
    /// --storage-url, one profile of the first service each, spread evenly over one UTC day
    /// (--day-offset days ago), as that many ingest flushes would leave them. For the
    /// compaction benchmark (a day of 1-second flushes is 86,400 files).
    #[arg(long, value_name = "N")]
    write_day_files: Option<usize>,
    /// Tables to write --write-day-files into (a directory or an object-store URL).
    #[arg(long, default_value = "./data")]
    storage_url: String,
    /// With --write-day-files: which day, counted back from today (1 = yesterday).
    #[arg(long, default_value_t = 1)]
    day_offset: i64,
    /// With --write-day-files: files added per Delta commit.
    #[arg(long, default_value_t = 1000)]
    files_per_commit: usize,
    /// Write the payload pool as DIR/profile-NNN.pb.gz and exit.
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
}

fn parse_cardinality(s: &str) -> Result<(usize, usize), String> {
    let num = |p: &str| {
        p.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{p:?} is not a positive integer"))
    };
    match s.split_once(',') {
        Some((r, p)) => Ok((num(r)?, num(p)?)),
        None => {
            let n = num(s)?;
            Ok((n, n))
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.payloads == 0 || args.stacks_per_profile == 0 || args.sample_rate == 0 {
        bail!("--payloads, --stacks-per-profile and --sample-rate must be positive");
    }
    if !args.duration.is_finite() || args.duration <= 0.0 {
        bail!("--duration must be a positive number of seconds");
    }
    if !args.warmup.is_finite() || args.warmup < 0.0 {
        bail!("--warmup must be zero or a positive number of seconds");
    }
    let cfg = GenConfig {
        services: args.services.max(1),
        functions: args.functions,
        stack_depth: args.stack_depth.max(1),
        stacks_per_profile: args.stacks_per_profile,
        sample_rate: args.sample_rate,
        regions: args.label_cardinality.0,
        pods: args.label_cardinality.1,
        seed: args.seed,
    };
    if let Some(files) = args.write_day_files {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?
            .block_on(write_day_files(&args, Generator::new(cfg), files));
    }
    if let Some(hours) = args.backfill_hours {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?
            .block_on(backfill(&args, Generator::new(cfg), hours));
    }
    let started = Instant::now();
    let pool = Generator::new(cfg).pool(args.payloads, now_nanos());
    print_pool(&pool, started.elapsed());

    if let Some(dir) = &args.dump {
        return dump(dir, &pool);
    }
    if args.floor {
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        return floor(
            &pool,
            threads,
            Duration::from_secs_f64(args.duration),
            args.denominators_only,
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?
        .block_on(run(&args, &pool))
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn print_pool(pool: &[Payload], took: Duration) {
    let n = pool.len().max(1) as f64;
    let gz: usize = pool.iter().map(|p| p.gz.len()).sum();
    let raw: usize = pool.iter().map(|p| p.raw_len).sum();
    let samples: usize = pool.iter().map(|p| p.samples).sum();
    println!(
        "pool: {} profiles, {:.0} samples each, {:.1} KB gzipped ({:.1} KB raw) on average, generated in {:.2} s",
        pool.len(),
        samples as f64 / n,
        gz as f64 / n / 1e3,
        raw as f64 / n / 1e3,
        took.as_secs_f64()
    );
}

fn dump(dir: &Path, pool: &[Payload]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (i, p) in pool.iter().enumerate() {
        let path = dir.join(format!("profile-{i:03}.pb.gz"));
        std::fs::write(&path, &p.gz).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {} profiles to {}", pool.len(), dir.display());
    Ok(())
}

/// Runs `work(payload)` round-robin over `pool` on `threads` threads for `duration`; returns
/// (profiles, samples) done.
fn floor_phase<F>(pool: &[Payload], threads: usize, duration: Duration, work: F) -> (u64, u64, f64)
where
    F: Fn(usize) -> usize + Sync,
{
    let stop = AtomicBool::new(false);
    let profiles = AtomicU64::new(0);
    let samples = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, profiles, samples, work) = (&stop, &profiles, &samples, &work);
            s.spawn(move || {
                let (mut n, mut m) = (0u64, 0u64);
                let mut i = t * pool.len() / threads;
                while !stop.load(Ordering::Relaxed) {
                    m += work(i % pool.len()) as u64;
                    n += 1;
                    i += 1;
                    if start.elapsed() >= duration {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                profiles.fetch_add(n, Ordering::Relaxed);
                samples.fetch_add(m, Ordering::Relaxed);
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    (
        profiles.load(Ordering::Relaxed),
        samples.load(Ordering::Relaxed),
        secs,
    )
}

fn floor(
    pool: &[Payload],
    threads: usize,
    duration: Duration,
    denominators_only: bool,
) -> anyhow::Result<()> {
    let limits = DecodeLimits::default();
    let labels: Vec<Labels> = pool
        .iter()
        .map(|p| Labels::new(p.labels.clone(), &LabelLimits::default()))
        .collect::<Result<_, _>>()
        .context("payload labels")?;
    // Fail early (and loudly) rather than time errors.
    for (p, l) in pool.iter().zip(&labels) {
        let ctx = SeriesContext {
            labels: l,
            family: Some("process_cpu"),
            now_us: 0,
            known_stacks: None,
        };
        decode_pprof(&p.gz, ctx, &limits).context("a generated profile does not decode")?;
    }
    println!(
        "floor: {threads} threads, {:.1} s per phase",
        duration.as_secs_f64()
    );

    // The floor: the standard Rust stack, flate2 (zlib-rs) and prost, as it has been measured
    // since the first figures in BENCHMARKS.md.
    let (n1, s1, t1) = floor_phase(pool, threads, duration, |i| {
        let p = decode_reference(&pool[i].gz, limits.max_uncompressed_bytes);
        std::hint::black_box(p.sample.len())
    });
    let (d_pps, d_sps) = (n1 as f64 / t1, s1 as f64 / t1);
    println!(
        "decode (gunzip + protobuf)    {d_pps:>10.1} profiles/s  {d_sps:>12.0} samples/s  ({n1} in {t1:.2} s)"
    );
    // The same prost decode after the ingester's gunzip (libdeflate, one call per member):
    // what the floor would be with that gunzip, reported so either ratio can be read.
    let (n5, s5, t5) = floor_phase(pool, threads, duration, |i| {
        let p = decode_profile(&pool[i].gz, limits.max_uncompressed_bytes).expect("decodes");
        std::hint::black_box(p.sample.len())
    });
    let (l_pps, l_sps) = (n5 as f64 / t5, s5 as f64 / t5);
    println!(
        "decode (libdeflate + protobuf){l_pps:>10.1} profiles/s  {l_sps:>12.0} samples/s  ({n5} in {t5:.2} s)"
    );
    let mut result = json!({
        "mode": "floor",
        "threads": threads,
        "seconds": round3(duration.as_secs_f64()),
        "decode_profiles_per_sec": round3(d_pps),
        "decode_samples_per_sec": round3(d_sps),
        "decode_libdeflate_profiles_per_sec": round3(l_pps),
        "decode_libdeflate_samples_per_sec": round3(l_sps),
    });
    if denominators_only {
        println!("RESULT {result}");
        return Ok(());
    }

    // The ingester's own decoder: the same bytes into borrowed flat vectors (no per-sample or
    // per-string allocation). Reported next to the floor, which stays the prost decode.
    let (n3, s3, t3) = floor_phase(pool, threads, duration, |i| {
        let raw = read_capped(&pool[i].gz, limits.max_uncompressed_bytes).expect("gunzips");
        let p = FlatProfile::decode(&raw).expect("decodes");
        std::hint::black_box(p.samples.len())
    });
    let (f_pps, f_sps) = (n3 as f64 / t3, s3 as f64 / t3);
    println!(
        "decode (gunzip + flat)        {f_pps:>10.1} profiles/s  {f_sps:>12.0} samples/s  ({n3} in {t3:.2} s)"
    );

    // Decode + normalize, first with no stack known (every frame is built), then as the
    // ingester runs in its steady state: every stack already committed for its service, so
    // stack IDs are computed but no frame is built (`SeriesContext::known_stacks`).
    let now_us = now_nanos() / 1_000;
    let all_known = |_: u64| true;
    let normalize = |known: Option<stackdrift_model::KnownStacks<'_>>| {
        floor_phase(pool, threads, duration, |i| {
            let ctx = SeriesContext {
                labels: &labels[i],
                family: Some("process_cpu"),
                now_us,
                known_stacks: known,
            };
            let p = decode_pprof(&pool[i].gz, ctx, &limits).expect("decodes");
            std::hint::black_box((p.stacks.len(), p.series.len()));
            pool[i].samples
        })
    };
    let (n2, s2, t2) = normalize(None);
    let (n_pps, n_sps) = (n2 as f64 / t2, s2 as f64 / t2);
    println!(
        "decode + normalize            {n_pps:>10.1} profiles/s  {n_sps:>12.0} samples/s  ({n2} in {t2:.2} s)"
    );
    let (n4, s4, t4) = normalize(Some(&all_known));
    let (k_pps, k_sps) = (n4 as f64 / t4, s4 as f64 / t4);
    println!(
        "decode + normalize, known     {k_pps:>10.1} profiles/s  {k_sps:>12.0} samples/s  ({n4} in {t4:.2} s)"
    );
    for (key, value) in [
        ("flat_profiles_per_sec", f_pps),
        ("flat_samples_per_sec", f_sps),
        ("normalize_profiles_per_sec", n_pps),
        ("normalize_samples_per_sec", n_sps),
        ("normalize_known_profiles_per_sec", k_pps),
        ("normalize_known_samples_per_sec", k_sps),
    ] {
        result[key] = json!(round3(value));
    }
    println!("RESULT {result}");
    Ok(())
}

/// The floor's decode: flate2's streaming gunzip, then prost into an owned `Profile`.
fn decode_reference(gz: &[u8], max: usize) -> stackdrift_proto::pprof::Profile {
    use prost::Message;
    let raw = gunzip_streaming(gz, max).expect("gunzips");
    stackdrift_proto::pprof::Profile::decode(raw.as_slice()).expect("decodes")
}

/// Pause of a client after a push that got no answer.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// How long a client waits after a 429 / 503 before its next push: the `Retry-After` the
/// ingester sends for its in-flight limit.
const REFUSED_BACKOFF: Duration = Duration::from_secs(1);

/// What all clients share.
#[derive(Debug)]
struct Shared {
    pool: Vec<Prepared>,
    /// Next push number (global): picks the payload and, with --rate, the send time.
    tickets: AtomicU64,
    max_pushes: Option<u64>,
    rate: Option<f64>,
    start: tokio::time::Instant,
    /// End of the warm-up: pushes sent from here on are counted.
    measure_from: tokio::time::Instant,
    deadline: tokio::time::Instant,
}

async fn run(args: &Args, pool: &[Payload]) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be positive");
    }
    if let Some(r) = args.rate
        && (!r.is_finite() || r <= 0.0)
    {
        bail!("--rate must be positive");
    }
    let prepared: Vec<Prepared> = pool
        .iter()
        .map(|p| send::prepare(args.protocol, p))
        .collect();
    let target = Target {
        url: args.url.trim_end_matches('/').to_owned(),
        tenant: args.tenant.clone(),
        token: args.token.clone(),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(60))
        .build()
        .context("HTTP client")?;
    let mut senders = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        senders.push(Sender::new(args.protocol, &http, &target).await?);
    }
    println!(
        "run: {} → {}, {} clients, {:.1} s{}{}{}",
        args.protocol.name(),
        target.url,
        args.clients,
        args.duration,
        if args.warmup > 0.0 {
            format!(" after {:.1} s of warm-up", args.warmup)
        } else {
            String::new()
        },
        args.pushes
            .map(|n| format!(", at most {n} pushes"))
            .unwrap_or_default(),
        args.rate
            .map(|r| format!(", capped at {r} pushes/s"))
            .unwrap_or_default(),
    );

    let start = tokio::time::Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let shared = Arc::new(Shared {
        pool: prepared,
        tickets: AtomicU64::new(0),
        max_pushes: args.pushes,
        rate: args.rate,
        start,
        measure_from,
        deadline: measure_from + Duration::from_secs_f64(args.duration),
    });
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(client(sender, Arc::clone(&shared))))
        .collect();
    let mut total = Stats::default();
    for t in tasks {
        total.merge(t.await.context("client task")?);
    }
    let seconds = measure_from.elapsed().as_secs_f64();
    report_run(args.protocol.name(), args.clients, seconds, total);
    Ok(())
}

/// Pushes `hours` of history: profile `k` of service `s` is dated `now - hours + k·interval`.
async fn backfill(args: &Args, generator: Generator, hours: f64) -> anyhow::Result<()> {
    if !hours.is_finite()
        || hours <= 0.0
        || !args.interval_secs.is_finite()
        || args.interval_secs <= 0.0
    {
        bail!("--backfill-hours and --interval-secs must be positive");
    }
    let services = args.services.max(1) as u64;
    let per_service = (hours * 3600.0 / args.interval_secs).floor() as u64;
    let total = per_service * services;
    let interval_ns = (args.interval_secs * 1e9) as i64;
    let start_ns = now_nanos() - (hours * 3600.0 * 1e9) as i64;
    let target = Target {
        url: args.url.trim_end_matches('/').to_owned(),
        tenant: args.tenant.clone(),
        token: args.token.clone(),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("HTTP client")?;
    println!(
        "backfill: {total} profiles ({services} services × {per_service}, every {} s over {hours} h) → {}",
        args.interval_secs, target.url
    );
    let generator = Arc::new(generator);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients.max(1) {
        let mut sender = Sender::new(args.protocol, &http, &target).await?;
        let (generator, next, protocol) =
            (Arc::clone(&generator), Arc::clone(&next), args.protocol);
        let seed = args.seed;
        tasks.push(tokio::spawn(async move {
            let mut rng = generate::Rng::new(seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (mut ok, mut samples, mut gz, mut failed) = (0u64, 0u64, 0u64, Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (s, k) = (i % services, i / services);
                let payload =
                    generator.payload(s as usize, start_ns + k as i64 * interval_ns, &mut rng);
                let prepared = send::prepare(protocol, &payload);
                // A backfill must arrive whole: refusals to come back later are retried.
                let mut outcome = sender.send(&prepared).await;
                for _ in 0..120 {
                    if !outcome.is_retryable() {
                        break;
                    }
                    tokio::time::sleep(REFUSED_BACKOFF).await;
                    outcome = sender.send(&prepared).await;
                }
                match outcome {
                    Outcome::Accepted => {
                        ok += 1;
                        samples += payload.samples as u64;
                        gz += payload.gz.len() as u64;
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, samples, gz, failed)
        }));
    }
    let (mut ok, mut samples, mut gz_bytes, mut failed) = (0u64, 0u64, 0u64, Vec::new());
    for t in tasks {
        let (o, s, g, f) = t.await.context("backfill task")?;
        ok += o;
        samples += s;
        gz_bytes += g;
        failed.extend(f);
    }
    let secs = started.elapsed().as_secs_f64();
    println!("backfill: {ok} profiles ({samples} pprof samples) accepted in {secs:.1} s");
    let result = json!({
        "mode": "backfill",
        "profiles_ok": ok,
        "profiles_failed": failed.len(),
        "pprof_samples": samples,
        "gzip_pprof_bytes": gz_bytes,
        "seconds": round3(secs),
        "start_ms": start_ns / 1_000_000,
        "end_ms": (start_ns + per_service as i64 * interval_ns) / 1_000_000,
    });
    println!("RESULT {result}");
    if let Some(first) = failed.first() {
        bail!("{} pushes failed, the first: {first}", failed.len());
    }
    Ok(())
}

async fn write_day_files(args: &Args, generator: Generator, files: usize) -> anyhow::Result<()> {
    use stackdrift_storage::{StorageConfig, Store, TenantProfile};
    const DAY_NS: i64 = 86_400_000_000_000;
    if files == 0 {
        bail!("--write-day-files must be positive");
    }
    let store = Store::open(StorageConfig {
        url: args.storage_url.clone(),
        options: Default::default(),
    })
    .await
    .context("opening the tables")?;
    let day_start = (now_nanos().div_euclid(DAY_NS) - args.day_offset) * DAY_NS;
    let step = DAY_NS / files as i64;
    let mut rng = generate::Rng::new(args.seed);
    let started = Instant::now();
    let (mut gz_bytes, mut rows, mut written) = (0u64, 0u64, 0usize);
    let per_commit = args.files_per_commit.max(1);
    let mut next = 0;
    while next < files {
        let end = (next + per_commit).min(files);
        let mut groups = Vec::with_capacity(end - next);
        for i in next..end {
            let payload = generator.payload(0, day_start + i as i64 * step, &mut rng);
            gz_bytes += payload.gz.len() as u64;
            let labels = Labels::new(
                payload.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &LabelLimits::default(),
            )
            .map_err(|e| anyhow::anyhow!("labels: {e}"))?;
            let ctx = SeriesContext {
                labels: &labels,
                family: Some("process_cpu"),
                now_us: now_nanos() / 1000,
                known_stacks: None,
            };
            let profile = decode_pprof(&payload.gz, ctx, &DecodeLimits::default())
                .map_err(|e| anyhow::anyhow!("decoding a generated profile: {e}"))?;
            rows += profile.sample_count() as u64;
            groups.push(vec![TenantProfile {
                tenant: args
                    .tenant
                    .clone()
                    .unwrap_or_else(|| "anonymous".to_owned()),
                profile,
            }]);
        }
        written += store
            .append_as_files(&groups, per_commit)
            .await
            .context("writing files")?;
        next = end;
        eprint!("\rwrite-day-files: {next}/{files} files");
    }
    eprintln!();
    let secs = started.elapsed().as_secs_f64();
    println!("write-day-files: {written} files, {rows} rows in {secs:.1} s");
    let result = json!({
        "mode": "write-day-files",
        "files": written,
        "rows": rows,
        "gzip_pprof_bytes": gz_bytes,
        "seconds": round3(secs),
        "day_start_ms": day_start / 1_000_000,
    });
    println!("RESULT {result}");
    Ok(())
}

/// One closed-loop client: take a ticket, (wait for its slot,) send, wait for the answer.
async fn client(mut sender: Sender, shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    loop {
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        if let Some(max) = shared.max_pushes
            && ticket >= max
        {
            break;
        }
        // With --rate, a push's latency runs from its slot in the schedule, not from when a
        // client got to send it: a server that falls behind delays every later push, and
        // those delays count (no coordinated omission). Without, from the send.
        let mut t0 = Instant::now();
        if let Some(rate) = shared.rate {
            let at = shared.start + Duration::from_secs_f64(ticket as f64 / rate);
            if at >= shared.deadline {
                break;
            }
            tokio::time::sleep_until(at).await;
            t0 = at.into_std();
        } else if tokio::time::Instant::now() >= shared.deadline {
            break;
        }
        let p = &shared.pool[(ticket % shared.pool.len() as u64) as usize];
        let counted = tokio::time::Instant::from_std(t0) >= shared.measure_from;
        let outcome = sender.send(p).await;
        let failed = matches!(outcome, Outcome::Error(_));
        let refused = outcome.is_retryable();
        if counted {
            stats.record(outcome, t0.elapsed(), p.bytes, p.samples);
        }
        if failed {
            // No server to talk to: don't spin on the (shared) CPU.
            tokio::time::sleep(ERROR_BACKOFF).await;
        } else if refused {
            // As SDKs do after 429 / 503: wait before the next push.
            tokio::time::sleep(REFUSED_BACKOFF).await;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cardinality_flag() {
        assert_eq!(parse_cardinality("4,20"), Ok((4, 20)));
        assert_eq!(parse_cardinality("7"), Ok((7, 7)));
        assert!(parse_cardinality("0,3").is_err());
        assert!(parse_cardinality("a").is_err());
    }

    #[test]
    fn cli_parses() {
        let a = Args::try_parse_from([
            "stackdrift-loadgen",
            "--protocol",
            "grpc",
            "--pushes",
            "10",
            "--label-cardinality",
            "2,3",
        ])
        .unwrap();
        assert_eq!(a.protocol, Protocol::Grpc);
        assert_eq!(a.pushes, Some(10));
        assert_eq!(a.label_cardinality, (2, 3));
        assert_eq!(a.clients, 8);
    }
}
