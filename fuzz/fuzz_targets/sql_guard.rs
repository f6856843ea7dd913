//! The querier's SQL guard: `Querier::plan` (DataFusion's SQL planner, then the read-only
//! check) against one tenant session over an empty store, built once.
//!
//! Statements are only planned, never run. Never panics. Independent invariant: a plan the
//! guard accepts holds no DML, DDL, COPY or other statement node (subqueries and EXPLAIN
//! included) and scans only tables the session registered (the tenant views, the
//! information schema, table functions and recursive-CTE work tables).
#![no_main]

use std::any::Any;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::cte_worktable::CteWorkTable;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::TableSource;
use datafusion::prelude::SessionContext;
use libfuzzer_sys::fuzz_target;
use stackdrift_querier::{Querier, QueryConfig, QueryMetrics};
use stackdrift_storage::{StorageConfig, Store};

const TENANT: &str = "fuzz-tenant";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    querier: Arc<Querier>,
    ctx: SessionContext,
    /// `catalog.schema.table` of every table the session can name.
    tables: HashSet<String>,
    /// Registered table functions (their scans are named `f()` or `f`).
    functions: HashSet<String>,
    /// The table sources inside the tenant views (the planner inlines a view's plan, whose
    /// scans are unnamed `?table?` reads of the Delta tables), by address.
    view_sources: HashSet<usize>,
    default_catalog: String,
    default_schema: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let (querier, ctx) = runtime.block_on(async {
            let store = Store::open(StorageConfig::local(dir.path()))
                .await
                .expect("store");
            let metrics = QueryMetrics::new(&prometheus::Registry::new()).expect("metrics");
            let querier = Querier::new(store, QueryConfig::default(), metrics);
            let ctx = querier.session(TENANT).await.expect("session");
            (querier, ctx)
        });
        let state = ctx.state();
        let options = state.config_options();
        let default_catalog = options.catalog.default_catalog.clone();
        let default_schema = options.catalog.default_schema.clone();
        let mut tables = HashSet::new();
        for catalog_name in ctx.catalog_names() {
            let catalog = ctx.catalog(&catalog_name).expect("catalog");
            for schema_name in catalog.schema_names() {
                let schema = catalog.schema(&schema_name).expect("schema");
                for table in schema.table_names() {
                    tables.insert(format!("{catalog_name}.{schema_name}.{table}"));
                }
            }
            for table in datafusion::catalog::information_schema::INFORMATION_SCHEMA_TABLES {
                tables.insert(format!("{catalog_name}.information_schema.{table}"));
            }
        }
        for view in ["samples", "stacks", "stacks_raw", "_rollups", "anomalies"] {
            let name = format!("{default_catalog}.{default_schema}.{view}");
            assert!(tables.contains(&name), "{name} is not registered");
        }
        let mut view_sources = HashSet::new();
        for view in ["samples", "stacks", "stacks_raw", "_rollups", "anomalies"] {
            let provider = runtime
                .block_on(ctx.table_provider(view))
                .expect("view provider");
            let view_plan = provider.get_logical_plan().expect("a view").into_owned();
            view_plan
                .apply_with_subqueries(|node| {
                    if let LogicalPlan::TableScan(scan) = node {
                        view_sources.insert(source_address(&scan.source));
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
                .expect("view walk");
        }
        let functions: HashSet<String> = state.table_functions().keys().cloned().collect();
        for f in &functions {
            assert!(
                ![
                    "read", "parquet", "csv", "json", "avro", "arrow", "file", "url"
                ]
                .iter()
                .any(|w| f.contains(w)),
                "table function {f} may read files"
            );
        }
        Fixture {
            runtime,
            querier,
            ctx,
            tables,
            functions,
            view_sources,
            default_catalog,
            default_schema,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    let Ok(plan) = f.runtime.block_on(f.querier.plan(&f.ctx, sql)) else {
        return;
    };
    check(f, sql, &plan);
});

fn check(f: &Fixture, sql: &str, plan: &LogicalPlan) {
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Extension(_) => {
                panic!("{sql:?}: accepted plan holds {}", node.display())
            }
            LogicalPlan::TableScan(scan) => {
                let name = scan
                    .table_name
                    .clone()
                    .resolve(&f.default_catalog, &f.default_schema)
                    .to_string();
                let bare = scan.table_name.table();
                let function = scan.table_name.schema().is_none()
                    && (f.functions.contains(bare)
                        || bare
                            .strip_suffix("()")
                            .is_some_and(|n| f.functions.contains(n)));
                let work_table = source_as_provider(&scan.source)
                    .is_ok_and(|p| (p.as_ref() as &dyn Any).is::<CteWorkTable>());
                let in_view = f.view_sources.contains(&source_address(&scan.source));
                assert!(
                    f.tables.contains(&name) || function || work_table || in_view,
                    "{sql:?}: accepted plan scans unregistered table {name}"
                );
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("plan walk");
}

fn source_address(source: &Arc<dyn TableSource>) -> usize {
    Arc::as_ptr(source).cast::<()>() as usize
}
