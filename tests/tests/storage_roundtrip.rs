//! Round trip: real and hand-made pprof profiles → writer → Delta tables → SQL, on a local
//! directory and on an S3 server in this process. Per-function self and total values must equal
//! those computed straight from the pprof.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use stackdrift_model::pprof::decode_profile;
use stackdrift_model::{
    DecodeLimits, Frame, LabelLimits, Labels, PprofBuilder, SeriesContext, decode_pprof,
};
use stackdrift_storage::{StorageConfig, Store, TenantProfile};
use stackdrift_tests::reference::{add_totals, function_totals};
use stackdrift_tests::s3::S3Server;
use stackdrift_tests::{fixture, sql};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied(), &LabelLimits::default()).unwrap()
}

fn decode(bytes: &[u8], l: &Labels) -> stackdrift_model::NormalizedProfile {
    let ctx = SeriesContext {
        labels: l,
        family: Some("process_cpu"),
        now_us: 1_700_000_000_000_000,
        known_stacks: None,
    };
    decode_pprof(bytes, ctx, &DecodeLimits::default()).unwrap()
}

/// Hand-made edge cases: a 1,500-frame stack (truncated), recursion (a function twice on one
/// stack counts once in total), a frame without symbols, big values, unicode names.
fn edge_case_profile() -> Vec<u8> {
    let mut b = PprofBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    )
    .time(1_700_000_000_000_000_000, 10_000_000_000);
    let main = Frame::named("main");
    let rec = Frame {
        function: "recurse".into(),
        file: "r.rs".into(),
        line: 3,
    };
    let deep: Vec<Frame> = (0..1500)
        .map(|i| Frame::named(format!("deep_{i}")))
        .chain([main.clone()])
        .collect();
    b.sample(&deep, &[1, 10_000_000], &[]);
    b.sample(
        &[rec.clone(), rec.clone(), rec.clone(), main.clone()],
        &[3, 30_000_000],
        &[],
    );
    b.sample(
        &[Frame::named("données::日本"), main.clone()],
        &[1, 1 << 40],
        &[],
    );
    b.sample(std::slice::from_ref(&main), &[2, 20_000_000], &[]);
    b.encode_gzip()
}

/// Expected totals for the edge-case profile, after truncation keeps the leaf side.
fn edge_case_expected(sample_type: &str) -> BTreeMap<String, (i64, i64)> {
    let mut p = decode_profile(&edge_case_profile(), 1 << 30).unwrap();
    // Truncation: the stored stack keeps 999 leaf frames and one "[truncated]" root frame.
    let deep = p
        .sample
        .iter_mut()
        .find(|s| s.location_id.len() > 1000)
        .unwrap();
    deep.location_id.truncate(999);
    let mut t = function_totals(&p, sample_type);
    let v = if sample_type == "cpu" { 10_000_000 } else { 1 };
    t.insert("[truncated]".into(), (0, v));
    t
}

async fn round_trip(config: StorageConfig) {
    let store = Store::open(config.clone()).await.unwrap();
    let base = labels(&[
        ("service_name", "cpu-burn"),
        ("env", "test"),
        ("version", "1.0"),
    ]);

    // Two real profiles in one commit, the edge cases (with another label) in a second.
    let real = ["cpu_burn.pb.gz", "cpu_burn_raw.pb"];
    let profiles: Vec<TenantProfile> = real
        .iter()
        .map(|f| TenantProfile {
            tenant: "acme".into(),
            profile: decode(&fixture(f), &base),
        })
        .collect();
    let stats = store.append(&profiles).await.unwrap();
    assert!(stats.samples > 0 && stats.stacks > 0);

    let edge_labels = labels(&[("service_name", "edge"), ("region", "eu-west")]);
    let edge = TenantProfile {
        tenant: "acme".into(),
        profile: decode(&edge_case_profile(), &edge_labels),
    };
    // Same service under another tenant: must not mix with acme's rows.
    let other = TenantProfile {
        tenant: "other".into(),
        profile: decode(&fixture("cpu_burn.pb.gz"), &base),
    };
    store.append(&[edge.clone(), other]).await.unwrap();
    // Each append records its number in the log, so a commit whose answer was lost can be
    // recognized as landed.
    assert_eq!(store.committed_appends().await.unwrap(), Some(2));

    // Expected, straight from the pprof bytes.
    let mut expected_cpu = BTreeMap::new();
    let mut expected_samples = BTreeMap::new();
    for f in real {
        let p = decode_profile(&fixture(f), 1 << 30).unwrap();
        add_totals(&mut expected_cpu, &function_totals(&p, "cpu"));
        add_totals(&mut expected_samples, &function_totals(&p, "samples"));
    }

    // A second store on the same URL stands for another process reading what was written.
    let reader = Store::open(config.clone()).await.unwrap();
    let ctx = SessionContext::new();
    reader.register(&ctx, None).await.unwrap();
    assert_eq!(
        sql::function_totals(&ctx, "acme", "cpu-burn", CPU).await,
        expected_cpu
    );
    assert_eq!(
        sql::function_totals(&ctx, "acme", "cpu-burn", SAMPLES).await,
        expected_samples
    );
    assert_eq!(
        sql::function_totals(&ctx, "acme", "edge", CPU).await,
        edge_case_expected("cpu")
    );
    assert_eq!(
        sql::function_totals(&ctx, "acme", "edge", SAMPLES).await,
        edge_case_expected("samples")
    );

    // Labels are real columns; rows written before a column existed read it as NULL.
    let rows = sql::rows3(
        &ctx,
        "SELECT service_name, COUNT(region), COUNT(*) FROM samples \
         WHERE tenant = 'acme' GROUP BY service_name ORDER BY service_name",
    )
    .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "cpu-burn");
    assert_eq!(rows[0].1, 0, "no region on cpu-burn rows");
    assert_eq!(rows[1].0, "edge");
    assert_eq!(rows[1].1, rows[1].2, "every edge row has a region");
    let threads = sql::rows3(
        &ctx,
        "SELECT thread, COUNT(*), 0 FROM samples WHERE service_name = 'cpu-burn' \
         AND tenant = 'acme' GROUP BY thread",
    )
    .await;
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert!(threads[0].0.starts_with("stackdrift-fix"), "{threads:?}");

    // Stacks committed for a tenant and service can be dropped from a new profile before it is
    // batched (only those: another tenant, or a store that has not seen them, keeps them all).
    let stack_count = edge.profile.stacks.len();
    let mut stripped = vec![edge.clone()];
    assert_eq!(store.strip_committed_stacks(&mut stripped), stack_count);
    assert!(stripped[0].profile.stacks.is_empty());
    let mut third = vec![TenantProfile {
        tenant: "third".into(),
        ..edge.clone()
    }];
    assert_eq!(store.strip_committed_stacks(&mut third), 0);
    let mut unseen = vec![edge.clone()];
    assert_eq!(
        Store::open(config.clone())
            .await
            .unwrap()
            .strip_committed_stacks(&mut unseen),
        0
    );

    // Writing the same stacks again (stripped) adds samples but no stack rows. No label key
    // is new, so the rows go straight into their partitions' files: two tenants and two
    // services in one commit here.
    let mut again_profiles = stripped.clone();
    again_profiles.push(TenantProfile {
        tenant: "other".into(),
        profile: decode(&fixture("cpu_burn.pb.gz"), &base),
    });
    store.strip_committed_stacks(&mut again_profiles);
    let again = store.append(&again_profiles).await.unwrap();
    assert_eq!(again.stacks, 0);
    assert_eq!(
        again.samples,
        again_profiles
            .iter()
            .map(|p| p.profile.sample_count())
            .sum::<usize>()
    );
    assert_eq!(store.committed_appends().await.unwrap(), Some(3));
    let fresh = Store::open(config).await.unwrap();
    let ctx = SessionContext::new();
    fresh.register(&ctx, None).await.unwrap();
    let doubled: BTreeMap<String, (i64, i64)> = edge_case_expected("cpu")
        .into_iter()
        .map(|(k, (s, t))| (k, (s * 2, t * 2)))
        .collect();
    assert_eq!(
        sql::function_totals(&ctx, "acme", "edge", CPU).await,
        doubled
    );
    // The other tenant sees only its own two profiles.
    let p = decode_profile(&fixture("cpu_burn.pb.gz"), 1 << 30).unwrap();
    let twice: BTreeMap<String, (i64, i64)> = function_totals(&p, "cpu")
        .into_iter()
        .map(|(k, (s, t))| (k, (s * 2, t * 2)))
        .collect();
    assert_eq!(
        sql::function_totals(&ctx, "other", "cpu-burn", CPU).await,
        twice
    );

    // Registered for one tenant, a session cannot see another tenant's rows, whatever the SQL.
    let scoped = SessionContext::new();
    fresh.register(&scoped, Some("other")).await.unwrap();
    let tenants = sql::rows3(
        &scoped,
        "SELECT tenant, COUNT(*), 0 FROM samples GROUP BY tenant \
         UNION ALL SELECT tenant, COUNT(*), 1 FROM stacks_raw GROUP BY tenant",
    )
    .await;
    assert_eq!(tenants.len(), 2, "{tenants:?}");
    assert!(
        tenants.iter().all(|(t, n, _)| t == "other" && *n > 0),
        "{tenants:?}"
    );
    assert!(
        sql::function_totals(&scoped, "acme", "edge", CPU)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(StorageConfig::local(dir.path().join("data"))).await;
    // Partitioned by tenant, service and day.
    let part = dir
        .path()
        .join("data/samples/tenant=acme/service_name=edge/day=2023-11-14");
    assert!(part.is_dir(), "{}", part.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_s3() {
    let s3 = S3Server::start().await;
    round_trip(s3.storage("stackdrift")).await;
    assert!(s3.file_count("stackdrift/samples/_delta_log") >= 3);
    assert!(s3.file_count("stackdrift/stacks") >= 2);
}

/// Appends from one store running at once (the ingester flushes batches in parallel): each
/// encodes its files without waiting for the others, and each lands exactly once, one commit
/// each, with this process's transaction numbers in log order. One of them adds a label
/// column, which takes the schema-merging path while the others are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_land_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig::local(dir.path().join("data"));
    let store = std::sync::Arc::new(Store::open(config.clone()).await.unwrap());
    let base = labels(&[("service_name", "cpu-burn"), ("env", "test")]);
    let profile = |l: &Labels| TenantProfile {
        tenant: "acme".into(),
        profile: decode(&fixture("cpu_burn.pb.gz"), l),
    };
    let first = store.append(&[profile(&base)]).await.unwrap();
    assert_eq!(first.samples_version, Some(1));

    let with_region = labels(&[
        ("service_name", "cpu-burn"),
        ("env", "test"),
        ("region", "eu"),
    ]);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let p = if i == 3 {
            profile(&with_region)
        } else {
            profile(&base)
        };
        tasks.push(tokio::spawn(async move { store.append(&[p]).await }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().unwrap().samples_version.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=9).collect::<Vec<u64>>(), "one commit each");
    assert_eq!(store.committed_appends().await.unwrap(), Some(9));

    let per_profile = profile(&base).profile.sample_count() as i64;
    assert_cpu_burns_stored(config, 9, &[("-", 8 * per_profile), ("eu", per_profile)]).await;
}

/// Two writers on one table, as two ingesters: each append takes the next version free of
/// the other's commits (reading them, or reloading the table when far behind); a label
/// column added by the other is noticed (the append is encoded again against the new
/// schema); the table's checkpoint interval (20) is kept, by checkpoints written in the
/// background; and a fresh reader sees every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_interleave_and_checkpoints_follow() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig::local(dir.path().join("data"));
    let a = Store::open(config.clone()).await.unwrap();
    let b = Store::open(config.clone()).await.unwrap();
    let base = labels(&[("service_name", "cpu-burn"), ("env", "test")]);
    let with_region = labels(&[
        ("service_name", "cpu-burn"),
        ("env", "test"),
        ("region", "eu"),
    ]);
    let profile = |l: &Labels| TenantProfile {
        tenant: "acme".into(),
        profile: decode(&fixture("cpu_burn.pb.gz"), l),
    };
    let mut versions = Vec::new();
    for i in 0..12 {
        versions.push(a.append(&[profile(&base)]).await.unwrap().samples_version);
        if i % 3 == 2 {
            versions.push(b.append(&[profile(&base)]).await.unwrap().samples_version);
        }
    }
    // `b` adds a column; `a` has not seen it and encodes its next append without it.
    versions.push(
        b.append(&[profile(&with_region)])
            .await
            .unwrap()
            .samples_version,
    );
    for _ in 0..8 {
        versions.push(a.append(&[profile(&base)]).await.unwrap().samples_version);
    }
    // `b`, eight versions behind, reloads the table instead of reading each of them.
    versions.push(b.append(&[profile(&base)]).await.unwrap().samples_version);
    let expected: Vec<Option<u64>> = (1..=26).map(Some).collect();
    assert_eq!(
        versions, expected,
        "one version each, in order, none skipped"
    );
    // 20 appends by `a`; the one that met `b`'s new column took a second number.
    assert_eq!(a.committed_appends().await.unwrap(), Some(21));
    assert_eq!(b.committed_appends().await.unwrap(), Some(6));

    let log = dir.path().join("data/samples/_delta_log");
    let checkpoint = log.join(format!("{:020}.checkpoint.parquet", 19));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !checkpoint.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint at version 19 in {}",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let per_profile = profile(&base).profile.sample_count() as i64;
    assert_cpu_burns_stored(config, 26, &[("-", 25 * per_profile), ("eu", per_profile)]).await;
}

/// A fresh reader of `config` finds `copies` times the `cpu_burn.pb.gz` fixture's function
/// totals for tenant `acme`, service `cpu-burn`, and these sample rows per `region` ("-"
/// for none).
async fn assert_cpu_burns_stored(config: StorageConfig, copies: i64, regions: &[(&str, i64)]) {
    let p = decode_profile(&fixture("cpu_burn.pb.gz"), 1 << 30).unwrap();
    let expected: BTreeMap<String, (i64, i64)> = function_totals(&p, "cpu")
        .into_iter()
        .map(|(k, (s, t))| (k, (s * copies, t * copies)))
        .collect();
    let reader = Store::open(config).await.unwrap();
    let ctx = SessionContext::new();
    reader.register(&ctx, None).await.unwrap();
    assert_eq!(
        sql::function_totals(&ctx, "acme", "cpu-burn", CPU).await,
        expected
    );
    let stored = sql::rows3(
        &ctx,
        "SELECT COALESCE(region, '-'), COUNT(*), 0 FROM samples GROUP BY 1 ORDER BY 1",
    )
    .await;
    let expected: Vec<(String, i64, i64)> = regions
        .iter()
        .map(|(r, n)| ((*r).to_owned(), *n, 0))
        .collect();
    assert_eq!(stored, expected);
}

/// A flush bigger than one encoder chunk (`SAMPLES_CHUNK_ROWS`) in several partitions: each
/// partition's rows, built and handed over a chunk at a time, land in one file per partition,
/// every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_of_many_chunks_writes_one_file_per_partition() {
    use stackdrift_storage::store::SAMPLES_CHUNK_ROWS;

    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig::local(dir.path().join("data"));
    let store = Store::open(config.clone()).await.unwrap();
    // 1,000 stacks and two sample types per profile: 2,000 rows each.
    let pprof = |seed: i64| {
        let mut b = PprofBuilder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_000_000,
        )
        .time(1_700_000_000_000_000_000, 10_000_000_000);
        for i in 0..1000 {
            let frames = [Frame::named(format!("f{i}")), Frame::named("main")];
            b.sample(&frames, &[1, seed * 1000 + i + 1], &[]);
        }
        b.encode_gzip()
    };
    let per_service = 20;
    let mut profiles = Vec::new();
    for service in ["big-a", "big-b", "big-c"] {
        let l = labels(&[("service_name", service)]);
        for seed in 0..per_service {
            profiles.push(TenantProfile {
                tenant: "acme".into(),
                profile: decode(&pprof(seed), &l),
            });
        }
    }
    let rows_per_service = per_service as usize * 2_000;
    assert!(
        rows_per_service > SAMPLES_CHUNK_ROWS,
        "more than one chunk per partition"
    );
    let stats = store.append(&profiles).await.unwrap();
    assert_eq!(stats.samples, 3 * rows_per_service);
    assert_eq!(stats.samples_version, Some(1));

    for service in ["big-a", "big-b", "big-c"] {
        let part = dir.path().join(format!(
            "data/samples/tenant=acme/service_name={service}/day=2023-11-14"
        ));
        let files: Vec<_> = std::fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        assert_eq!(files.len(), 1, "{service}: {files:?}");
    }

    // Every row once: counts and sums per service and sample type.
    let reader = Store::open(config).await.unwrap();
    let ctx = SessionContext::new();
    reader.register(&ctx, None).await.unwrap();
    let got = sql::rows3(
        &ctx,
        "SELECT service_name || ' ' || profile_type, COUNT(*), SUM(value) FROM samples \
         GROUP BY 1 ORDER BY 1",
    )
    .await;
    // cpu: sum over seeds and stacks of seed*1000 + i + 1; samples: one per row.
    let cpu_sum: i64 = (0..per_service)
        .flat_map(|s| (0..1000).map(move |i| s * 1000 + i + 1))
        .sum();
    let mut expected = Vec::new();
    for service in ["big-a", "big-b", "big-c"] {
        let n = rows_per_service as i64 / 2;
        expected.push((format!("{service} {CPU}"), n, cpu_sum));
        expected.push((format!("{service} {SAMPLES}"), n, n));
    }
    assert_eq!(got, expected);
}
