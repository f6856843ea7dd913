//! The querier's frame cache (flame graphs of one service look stacks up in memory instead of
//! joining `stacks`): it sees stacks written after it was filled, keeps tenants apart, and a
//! cache too small for a service falls back to the join. Every flame graph is compared with
//! one from a querier without the cache over the same tables.

use std::sync::Arc;

use stackdrift_model::{Frame, LabelLimits, Labels, ProfileBuilder};
use stackdrift_querier::flamegraph::decode;
use stackdrift_querier::profiles::{Selection, flame_tree};
use stackdrift_querier::{Querier, QueryConfig, QueryMetrics};
use stackdrift_storage::{StorageConfig, Store, TenantProfile};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// A profile of `service` at `time_us`: each stack (leaf first, `main` appended) once, with
/// value 10 + its index.
fn profile(tenant: &str, service: &str, time_us: i64, stacks: &[&[&str]]) -> TenantProfile {
    let mut b = ProfileBuilder::new(16);
    let labels = Labels::new([("service_name", service)], &LabelLimits::default()).unwrap();
    let series = b.series(&labels, &CPU.parse().unwrap());
    for (i, s) in stacks.iter().enumerate() {
        let mut frames: Vec<Frame> = s.iter().map(|f| Frame::named(*f)).collect();
        frames.push(Frame::named("main"));
        let id = b.stack(frames);
        b.add(series, id, 10 + i as i64).unwrap();
    }
    TenantProfile {
        tenant: tenant.to_owned(),
        profile: b.finish(time_us, 10_000_000),
    }
}

fn querier(store: &Arc<Store>, frames: usize) -> Arc<Querier> {
    Querier::new(
        store.clone(),
        QueryConfig {
            frame_cache_frames: frames,
            ..QueryConfig::default()
        },
        QueryMetrics::new(&prometheus::Registry::new()).unwrap(),
    )
}

/// The flame graph of `service` for `tenant` over everything, as sorted (stack, value) pairs.
async fn flame(q: &Querier, tenant: &str, service: &str) -> Vec<(Vec<String>, i64)> {
    let selector = format!("{{service_name=\"{service}\"}}");
    let sel = Selection::parse(Some(CPU), &[selector.as_str()], 0, 0).unwrap();
    let tree = flame_tree(q, tenant, &sel).await.unwrap();
    let mut stacks = decode(&tree.to_flamegraph(None)).unwrap();
    stacks.sort();
    stacks
}

fn has_function(flame: &[(Vec<String>, i64)], name: &str) -> bool {
    flame.iter().any(|(s, _)| s.iter().any(|f| f == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_flame_graphs_match_the_join_as_stacks_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StorageConfig::local(dir.path())).await.unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let cached = querier(&store, 1 << 20);
    let joined = querier(&store, 0);
    let tiny = querier(&store, 5);

    store
        .append(&[
            profile(
                "a",
                "api",
                now,
                &[&["parse", "handle"], &["encode", "handle"]],
            ),
            profile("b", "api", now, &[&["b_only", "serve"]]),
        ])
        .await
        .unwrap();
    let first = flame(&cached, "a", "api").await;
    assert_eq!(first, flame(&joined, "a", "api").await);
    assert!(has_function(&first, "parse"));
    assert!(
        !has_function(&first, "b_only"),
        "tenant b's stack in a's graph"
    );

    // New stacks (and a new function) after the cache was filled: they are read on the next
    // query, and the stacks it knew are not counted twice.
    store
        .append(&[profile(
            "a",
            "api",
            now + 10_000_000,
            &[&["parse", "handle"], &["compress", "encode", "handle"]],
        )])
        .await
        .unwrap();
    let second = flame(&cached, "a", "api").await;
    assert_eq!(second, flame(&joined, "a", "api").await);
    assert!(has_function(&second, "compress"));
    let total = |f: &[(Vec<String>, i64)]| f.iter().map(|(_, v)| v).sum::<i64>();
    assert_eq!(total(&second), total(&first) + 10 + 11);

    // Tenant b, same service name, its own stacks only.
    let b = flame(&cached, "b", "api").await;
    assert_eq!(b, flame(&joined, "b", "api").await);
    assert!(has_function(&b, "b_only"));
    assert!(!has_function(&b, "parse"), "tenant a's stack in b's graph");

    // A cache too small for the service answers through the join, with the same result,
    // also once it has marked the service as too big.
    assert_eq!(flame(&tiny, "a", "api").await, second);
    assert_eq!(flame(&tiny, "a", "api").await, second);
}
