//! The compactor against real tables on a local directory, with an injected clock:
//! per-function totals are identical before and after compaction and downsampling,
//! retention deletes exactly what its rules say (SQL first, storage after vacuum), and a
//! dry run changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;
use stackdrift_compactor::policy::{EXAMPLE_RETENTION, RetentionPolicy, parse_tiers};
use stackdrift_compactor::{Compactor, CompactorConfig, CompactorMetrics, ManualClock};
use stackdrift_model::ProfileBuilder;
use stackdrift_model::{Frame, LabelLimits, Labels, ProfileType};
use stackdrift_querier::flamegraph::decode;
use stackdrift_querier::profiles::{Selection, flame_tree};
use stackdrift_querier::{Querier, QueryConfig, QueryMetrics};
use stackdrift_storage::{StorageConfig, Store, TenantProfile};
use stackdrift_tests::s3::S3Server;
use stackdrift_tests::sql::rows3;

const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;
const MIN_US: i64 = 60_000_000;
/// 2024-10-04, a day boundary.
const DAY0: i64 = 20_000;
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const MEM: &str = "memory:alloc_space:bytes:space:bytes";

fn profile_type(id: &str) -> ProfileType {
    id.parse().unwrap()
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 40 stacks over 12 functions, leaf first, all rooted at `main`.
fn stacks() -> Vec<Vec<Frame>> {
    let mut rng = Rng(7);
    (0..40)
        .map(|_| {
            let depth = 1 + rng.below(5) as usize;
            let mut frames: Vec<Frame> = (0..depth)
                .map(|_| Frame::named(format!("fn_{}", rng.below(12))))
                .collect();
            frames.push(Frame::named("main"));
            frames
        })
        .collect()
}

/// One profile of `service` at `time_us`: both profile types, two regions, a few random
/// stacks each.
fn profile(
    tenant: &str,
    service: &str,
    time_us: i64,
    rng: &mut Rng,
    types: &[&str],
) -> TenantProfile {
    profile_from(tenant, service, time_us, rng, types, 0..40)
}

/// [`profile`] with stacks drawn from `pool` only.
fn profile_from(
    tenant: &str,
    service: &str,
    time_us: i64,
    rng: &mut Rng,
    types: &[&str],
    pool: std::ops::Range<usize>,
) -> TenantProfile {
    let all = &stacks()[pool];
    let mut b = ProfileBuilder::new(64);
    for region in ["eu", "us"] {
        let labels = Labels::new(
            [("service_name", service), ("region", region)],
            &LabelLimits::default(),
        )
        .unwrap();
        for t in types {
            let series = b.series(&labels, &profile_type(t));
            for _ in 0..4 {
                let frames = all[rng.below(all.len() as u64) as usize].clone();
                let id = b.stack(frames);
                b.add(series, id, 1 + rng.below(1000) as i64).unwrap();
            }
        }
    }
    TenantProfile {
        tenant: tenant.to_owned(),
        profile: b.finish(time_us, 10_000_000),
    }
}

async fn ctx(store: &Store) -> SessionContext {
    let ctx = SessionContext::new();
    store.register(&ctx, None).await.unwrap();
    ctx
}

/// Per-function (self, total) for each service and profile type over [from, to), keyed
/// `service|profile_type|function`: stacks summed over the range, joined with their frames.
async fn totals(store: &Store, from: i64, to: i64) -> BTreeMap<String, (i64, i64)> {
    let ctx = ctx(store).await;
    let joined = format!(
        "WITH w AS (SELECT tenant, service_name, profile_type, stack_id, SUM(value) AS v \
           FROM samples WHERE time >= to_timestamp_micros({from}) \
             AND time < to_timestamp_micros({to}) GROUP BY 1, 2, 3, 4), \
         j AS (SELECT w.service_name || '|' || w.profile_type || '|' AS k, st.leaf, \
                 st.functions, w.v FROM w JOIN stacks st ON st.tenant = w.tenant \
                 AND st.service_name = w.service_name AND st.stack_id = w.stack_id)"
    );
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let selfs = format!("{joined} SELECT k || leaf, SUM(v), 0 FROM j GROUP BY 1");
    for (k, v, _) in rows3(&ctx, &selfs).await {
        out.entry(k).or_default().0 = v;
    }
    let totals = format!(
        "{joined} SELECT k || f, SUM(v), 0 FROM (SELECT k, unnest(functions) AS f, v FROM j) \
         GROUP BY 1"
    );
    for (k, v, _) in rows3(&ctx, &totals).await {
        out.entry(k).or_default().1 = v;
    }
    out
}

async fn count(store: &Store, sql: &str) -> i64 {
    let ctx = ctx(store).await;
    let wrapped = format!("SELECT 'n', ({sql}), 0");
    rows3(&ctx, &wrapped).await[0].1
}

fn compactor(store: Arc<Store>, clock: Arc<ManualClock>, config: CompactorConfig) -> Compactor {
    compactor_in(&prometheus::Registry::new(), store, clock, config)
}

fn compactor_in(
    registry: &prometheus::Registry,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    config: CompactorConfig,
) -> Compactor {
    Compactor::new(store, config, CompactorMetrics::new(registry).unwrap()).with_clock(clock)
}

/// The value of one counter (summed over its label sets) in `registry`.
fn counter(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

fn data_files(dir: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "_delta_log") {
                    continue;
                }
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_are_identical_after_compaction_and_downsampling() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StorageConfig::local(dir.path())).await.unwrap();
    // A second handle writes the same stacks again, as a second ingester would: `stacks`
    // then holds duplicate rows for compaction to remove.
    let other = Store::open(StorageConfig::local(dir.path())).await.unwrap();
    let mut rng = Rng(42);
    // Each handle learns the committed stacks when it first writes a service: `other` then
    // commits stacks 5..10, which `store` does not know of and writes again.
    let first = DAY0 + 2;
    let seed = [(&store, 0..5), (&other, 0..10), (&store, 5..10)];
    for (i, (writer, pool)) in seed.into_iter().enumerate() {
        let t = first * DAY_US + i as i64 * 1_000_000;
        let batch = ["api", "db"].map(|s| profile_from("t", s, t, &mut rng, &[CPU], pool.clone()));
        writer.append(&batch).await.unwrap();
    }
    // Three days: 8 days old (→ 1-hour buckets), 2 days old (→ 1-minute buckets) and today
    // (raw, compacted per hour). One commit per 30 minutes of data, a profile every 10 s at
    // odd offsets so that buckets really sum rows.
    let today = DAY0 + 10;
    let now = today * DAY_US + 20 * HOUR_US + 7 * MIN_US;
    for day in [DAY0 + 2, DAY0 + 8, today] {
        let end = if day == today {
            now - 2 * MIN_US
        } else {
            (day + 1) * DAY_US
        };
        let mut t = day * DAY_US + 5_000_000;
        while t < end {
            let commit_end = (t / (30 * MIN_US) + 1) * 30 * MIN_US;
            let mut batch = Vec::new();
            while t < commit_end.min(end) {
                for service in ["api", "db"] {
                    batch.push(profile("t", service, t, &mut rng, &[CPU, MEM]));
                }
                t += 10_000_000 + rng.below(5_000_000) as i64;
            }
            let writer = if rng.below(4) == 0 { &other } else { &store };
            writer.append(&batch).await.unwrap();
        }
    }
    let files_before = store
        .snapshot("samples")
        .await
        .unwrap()
        .files()
        .unwrap()
        .len();
    let raw_stack_rows = count(&store, "SELECT count(*) FROM stacks_raw").await;
    let distinct_stacks = count(
        &store,
        "SELECT count(*) FROM (SELECT DISTINCT tenant, service_name, stack_id FROM stacks_raw)",
    )
    .await;
    assert!(
        raw_stack_rows > distinct_stacks,
        "no duplicate stacks to remove"
    );

    // Ranges: all, each day, hour-aligned and unaligned ranges today.
    let mut ranges = vec![(0, i64::MAX / 2)];
    for day in [DAY0 + 2, DAY0 + 8, today] {
        ranges.push((day * DAY_US, (day + 1) * DAY_US));
        ranges.push((day * DAY_US + 3 * HOUR_US, day * DAY_US + 9 * HOUR_US));
        ranges.push((day * DAY_US + 17 * MIN_US, day * DAY_US + 2 * HOUR_US));
    }
    ranges.push((today * DAY_US + 5 * HOUR_US + 123_456_789, now));
    let mut before = Vec::new();
    for &(from, to) in &ranges {
        before.push(totals(&store, from, to).await);
    }
    let rows_before = count(&store, "SELECT count(*) FROM samples").await;
    let hourly_rows_before = count(
        &store,
        &format!(
            "SELECT count(*) FROM samples WHERE day = to_date('{}')",
            day_str(DAY0 + 2)
        ),
    )
    .await;

    let clock = Arc::new(ManualClock::new(now));
    let config = CompactorConfig {
        tiers: parse_tiers("24h=1m,7d=1h").unwrap(),
        retention: RetentionPolicy {
            default: None,
            rules: vec![],
        },
        vacuum_grace: Duration::from_secs(3600),
        ..CompactorConfig::default()
    };
    let c = compactor(store.clone(), clock.clone(), config.clone());
    let report = c.run_once().await.unwrap();
    assert!(report.samples.commits >= 3, "{report:?}");
    assert!(report.stacks.commits >= 1, "{report:?}");
    assert_eq!(report.samples.rows_deleted, 0);

    // The same totals for every range (the unaligned ranges on downsampled days are the one
    // exception by construction: a bucket counts where it starts).
    for (i, &(from, to)) in ranges.iter().enumerate() {
        let after = totals(&store, from, to).await;
        let aligned_or_raw =
            from % HOUR_US == 0 && (to % HOUR_US == 0 || to > now) || from >= today * DAY_US;
        if aligned_or_raw {
            assert_eq!(before[i], after, "range {from}..{to}");
            assert!(!after.is_empty(), "range {from}..{to} is empty");
        }
    }
    // Downsampling reduced rows; old days hold only bucket starts.
    let rows_after = count(&store, "SELECT count(*) FROM samples").await;
    assert!(rows_after < rows_before, "{rows_before} → {rows_after}");
    let hourly = format!("day = to_date('{}')", day_str(DAY0 + 2));
    let hourly_rows = count(
        &store,
        &format!("SELECT count(*) FROM samples WHERE {hourly}"),
    )
    .await;
    assert!(
        hourly_rows * 10 < hourly_rows_before,
        "{hourly_rows_before} → {hourly_rows}"
    );
    let off_hour = count(
        &store,
        &format!(
            "SELECT count(*) FROM samples WHERE {} AND \
             (date_part('minute', time) <> 0 OR date_part('second', time) <> 0)",
            hourly
        ),
    )
    .await;
    assert_eq!(off_hour, 0, "8-day-old rows not in 1-hour buckets");
    let by_minute = format!("day = to_date('{}')", day_str(DAY0 + 8));
    let off_minute = count(
        &store,
        &format!(
            "SELECT count(*) FROM samples WHERE {by_minute} AND date_part('second', time) <> 0"
        ),
    )
    .await;
    assert_eq!(off_minute, 0, "2-day-old rows not in 1-minute buckets");
    // Stacks: one row per stack.
    let raw_after = count(&store, "SELECT count(*) FROM stacks_raw").await;
    assert_eq!(raw_after, distinct_stacks);

    // Files: each old day is one file now; today one per closed hour plus the open hour.
    let snapshot = store.snapshot("samples").await.unwrap();
    let files = snapshot.files().unwrap();
    let mut per_day: HashMap<(String, String), usize> = HashMap::new();
    for f in &files {
        *per_day
            .entry((
                f.partition["service_name"].clone(),
                f.partition["day"].clone(),
            ))
            .or_default() += 1;
    }
    for ((service, day), n) in &per_day {
        let limit = if *day == day_str(today) { 21 } else { 1 };
        assert!(*n <= limit, "{service} {day}: {n} files");
    }
    assert!(
        files.len() < files_before / 4,
        "{files_before} → {}",
        files.len()
    );

    // Flame graphs through the querier: a selection of one service reads whole compacted
    // hours from the rollups; the same selection with a no-op matcher reads raw rows only.
    // Both must agree for any range, aligned or not.
    let registry = prometheus::Registry::new();
    let q = Querier::new(
        store.clone(),
        QueryConfig::default(),
        QueryMetrics::new(&registry).unwrap(),
    );
    let mut flame_ranges = vec![(0, 0)];
    for day in [DAY0 + 2, DAY0 + 8, today] {
        let d = day * DAY_US / 1000;
        let h = HOUR_US / 1000;
        flame_ranges.push((d, d + 24 * h - 1));
        flame_ranges.push((d + 3 * h, d + 9 * h - 1));
        flame_ranges.push((d + 17 * 60_000 + 333, d + 5 * h + 777));
    }
    for &(from, to) in &flame_ranges {
        let (rolled, raw) = flames(&q, from, to).await;
        assert_eq!(rolled, raw, "flame graph {from}..{to}");
        assert!(!rolled.is_empty(), "empty flame graph {from}..{to}");
    }
    let hours = counter(&registry, "stackdrift_query_rollup_hours_total", &[]);
    assert!(hours >= 24.0, "rollups answered only {hours} hours");

    // A second pass at the same time finds nothing to do.
    let again = c.run_once().await.unwrap();
    assert_eq!(again.samples.commits + again.stacks.commits, 0, "{again:?}");

    // Late data for a closed hour today is merged into that hour on the next pass.
    store
        .append(&[profile(
            "t",
            "api",
            today * DAY_US + HOUR_US + 5,
            &mut rng,
            &[CPU],
        )])
        .await
        .unwrap();
    // Before the next pass the late file makes its hour raw again; the totals include it.
    let hour1 = (today * DAY_US + HOUR_US) / 1000;
    let (rolled, raw) = flames(&q, hour1 - 3_600_000, hour1 + 3_600_000 - 1).await;
    assert_eq!(rolled, raw);
    let late = c.run_once().await.unwrap();
    assert_eq!(late.samples.commits, 1, "{late:?}");
    assert_eq!(late.samples.files_removed, 2, "{late:?}");
    let (rolled_after, raw_after) = flames(&q, hour1 - 3_600_000, hour1 + 3_600_000 - 1).await;
    assert_eq!(rolled_after, raw_after);
    assert_eq!(
        rolled_after, rolled,
        "the merge changed the late hour's totals"
    );
}

/// The merged CPU flame graph of service `api` over [from_ms, to_ms] (0, 0: everything) as
/// (stack, value) pairs: through rollups where the querier can, and from raw rows only.
async fn flames(
    q: &Querier,
    from_ms: i64,
    to_ms: i64,
) -> (Vec<(Vec<String>, i64)>, Vec<(Vec<String>, i64)>) {
    let mut out = Vec::new();
    for selector in [
        "{service_name=\"api\"}",
        "{service_name=\"api\", region=~\".*\"}",
    ] {
        let sel = Selection::parse(Some(CPU), &[selector], from_ms, to_ms).unwrap();
        let tree = flame_tree(q, "t", &sel).await.unwrap();
        let mut stacks = decode(&tree.to_flamegraph(None)).unwrap();
        stacks.sort();
        out.push(stacks);
    }
    let raw = out.pop().unwrap();
    (out.pop().unwrap(), raw)
}

fn day_str(day: i64) -> String {
    (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(day))
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_by_rule_and_vacuum_frees_storage() {
    let dir = tempfile::tempdir().unwrap();
    retention_and_vacuum(StorageConfig::local(dir.path()), dir.path()).await;
}

/// The same on S3 (`s3s-fs` in this process, which keeps each object as a file under its
/// key): the vacuum's listing and deletes go through the S3 API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_vacuum_on_s3() {
    let s3 = S3Server::start().await;
    let on_disk = s3.root.path().join(stackdrift_tests::s3::BUCKET).join("t");
    retention_and_vacuum(s3.storage("t"), &on_disk).await;
}

/// Retention rules over 2 tenants × 3 services × 2 types × 5 ages, then vacuum: `root` is
/// where the tables' files are on this machine's disk.
async fn retention_and_vacuum(config: StorageConfig, root: &Path) {
    let store = Store::open(config).await.unwrap();
    let mut rng = Rng(3);
    let today = DAY0 + 200;
    let now = today * DAY_US + 12 * HOUR_US;
    let ages = [1, 4, 10, 40, 100];
    for tenant in ["acme", "beta"] {
        // The third name needs escaping in partition paths: vacuum must find its files too.
        for service in ["api", "api-canary", "web shop %é"] {
            for age in ages {
                let t = (today - age) * DAY_US + 6 * HOUR_US;
                let p = profile(tenant, service, t, &mut rng, &[CPU, MEM]);
                store.append(&[p]).await.unwrap();
            }
        }
    }
    let policy = RetentionPolicy::from_toml(EXAMPLE_RETENTION, None).unwrap();
    // Expected: a (tenant, service, type, age) group survives when its whole day is younger
    // than the first matching rule.
    let keep_days = |tenant: &str, service: &str, t: &str| -> i64 {
        if tenant == "acme" {
            90
        } else if service.ends_with("-canary") {
            3
        } else if t.starts_with("memory:") {
            7
        } else {
            30
        }
    };
    let before: BTreeMap<String, i64> = group_counts(&store).await;
    assert_eq!(before.len(), 2 * 3 * 2 * ages.len());
    let expected: BTreeMap<String, i64> = before
        .iter()
        .filter(|(k, _)| {
            let parts: Vec<&str> = k.split('/').collect();
            let age = today - days_of(parts[3]);
            // Whole day past its retention: (age - 1) full days since the day ended.
            (age - 1) < keep_days(parts[0], parts[1], parts[2])
        })
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert!(expected.len() < before.len() && !expected.is_empty());

    let clock = Arc::new(ManualClock::new(now));
    let base = CompactorConfig {
        tiers: vec![],
        retention: policy,
        vacuum_grace: Duration::from_secs(3600),
        ..CompactorConfig::default()
    };
    // Dry run: says what would go, changes nothing.
    let files_on_disk = data_files(&root.join("samples"));
    let dry = compactor(
        store.clone(),
        clock.clone(),
        CompactorConfig {
            dry_run: true,
            ..base.clone()
        },
    )
    .run_once()
    .await
    .unwrap();
    assert!(
        dry.changes.iter().any(|c| c.contains("would delete")),
        "{:?}",
        dry.changes
    );
    assert!(
        dry.changes.iter().any(|c| c.contains("would rewrite")),
        "{:?}",
        dry.changes
    );
    assert_eq!(data_files(&root.join("samples")), files_on_disk);
    let unchanged: BTreeMap<String, i64> = group_counts(&store).await;
    assert_eq!(unchanged, before);

    // The real pass: SQL shows exactly the groups within policy, untouched.
    let registry = prometheus::Registry::new();
    let c = compactor_in(&registry, store.clone(), clock.clone(), base.clone());
    let report = c.run_once().await.unwrap();
    let after: BTreeMap<String, i64> = group_counts(&store).await;
    assert_eq!(after, expected);
    let deleted: i64 = before.values().sum::<i64>() - expected.values().sum::<i64>();
    assert_eq!(report.samples.rows_deleted, deleted as u64, "{report:?}");
    // The metrics say the same.
    let metric = |name, labels: &[(&str, &str)]| counter(&registry, name, labels);
    assert_eq!(
        metric(
            "stackdrift_compactor_retention_rows_deleted_total",
            &[("table", "samples")]
        ),
        deleted as f64
    );
    assert_eq!(
        metric(
            "stackdrift_compactor_files_total",
            &[("table", "samples"), ("op", "removed")]
        ),
        report.samples.files_removed as f64
    );
    assert!(
        metric(
            "stackdrift_compactor_commits_total",
            &[("kind", "retention")]
        ) > 0.0
    );

    // Within the grace period the removed files are still on disk (a running query may be
    // reading them); after it, vacuum deletes them and only referenced files remain.
    let live: BTreeSet<String> = store
        .snapshot("samples")
        .await
        .unwrap()
        .files()
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    let on_disk = data_files(&root.join("samples"));
    assert!(on_disk.len() > live.len());
    clock.set(now + 2 * HOUR_US);
    let later = c.run_once().await.unwrap();
    assert!(!later.vacuumed.is_empty());
    assert_eq!(
        metric("stackdrift_compactor_vacuumed_files_total", &[]),
        later.vacuumed.len() as f64
    );
    let on_disk = data_files(&root.join("samples"));
    assert_eq!(on_disk, live);
    let after_vacuum: BTreeMap<String, i64> = group_counts(&store).await;
    assert_eq!(after_vacuum, expected);

    // The removals stay in the log as tombstones (for a week, until a checkpoint drops
    // them), but their files are gone: a later pass deletes nothing, reports nothing and
    // commits nothing.
    let versions = |store: Arc<Store>| async move {
        let mut v = Vec::new();
        for table in ["samples", "stacks", "rollups"] {
            v.push(store.snapshot(table).await.unwrap().version());
        }
        v
    };
    let before_pass = versions(store.clone()).await;
    clock.set(now + 3 * HOUR_US);
    let again = c.run_once().await.unwrap();
    assert!(again.vacuumed.is_empty(), "{:?}", again.vacuumed);
    assert_eq!(
        metric("stackdrift_compactor_vacuumed_files_total", &[]),
        later.vacuumed.len() as f64
    );
    assert_eq!(versions(store.clone()).await, before_pass);
    // An unreferenced file older than the grace (a writer died before its commit) is found
    // by the listing and deleted, once.
    let orphan_dir = root.join("samples/tenant=acme/service_name=api/day=2000-01-01");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    let orphan = orphan_dir.join("part-00000-orphan.zstd.parquet");
    std::fs::write(&orphan, b"left by a writer that died").unwrap();
    // Written at `now` by the test's clock, which now reads 3 h later.
    let old = std::time::UNIX_EPOCH + Duration::from_micros(now as u64);
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let swept = c.run_once().await.unwrap();
    assert_eq!(
        swept.vacuumed,
        vec!["samples/tenant=acme/service_name=api/day=2000-01-01/part-00000-orphan.zstd.parquet"]
    );
    assert!(!orphan.exists());
    assert!(c.run_once().await.unwrap().vacuumed.is_empty());
}

/// Rows per `tenant/service/profile_type/day`.
async fn group_counts(store: &Store) -> BTreeMap<String, i64> {
    let groups = "SELECT tenant || '/' || service_name || '/' || profile_type || '/' || \
                  CAST(day AS VARCHAR), count(*), 0 FROM samples GROUP BY 1";
    rows3(&ctx(store).await, groups)
        .await
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect()
}

fn days_of(date: &str) -> i64 {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
}
