//! Running one SQL query for one tenant, inside its limits.

use stackdrift_model::auth::Auth;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use stackdrift_storage::Store;
use tracing::debug;

use crate::error::QueryError;
use crate::frames::{FrameCache, ServiceStacks};
use crate::metrics::QueryMetrics;
use tokio::sync::{OwnedMutexGuard, Semaphore, SemaphorePermit};

/// Per-query limits.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Wall-clock limit of one query, planning included.
    pub timeout: Duration,
    /// Memory one query may hold in operators that track it (sorts, joins, aggregations).
    pub memory_limit: usize,
    /// Rows per batch inside the engine.
    pub batch_size: usize,
    /// Tenant tokens; when enabled, every query must carry one and sees only its tenant.
    pub auth: Auth,
    /// Frames of stacks kept across flame graph queries (see [`crate::frames`]); 0: none.
    pub frame_cache_frames: usize,
    /// Queries (SQL, Flight SQL, profile queries, exports) that run at once; with
    /// `memory_limit`, this bounds the memory the querier gives to queries.
    pub max_concurrent: usize,
    /// Queries that may wait for a slot beyond `max_concurrent` (their wait counts against
    /// `timeout`); any more are refused at once with [`QueryError::Overloaded`].
    pub max_queued: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            memory_limit: 1 << 30,
            batch_size: 8192,
            auth: Auth::disabled(),
            frame_cache_frames: crate::frames::DEFAULT_MAX_FRAMES,
            max_concurrent: 4,
            max_queued: 64,
        }
    }
}

/// The result of a query, fully materialized.
#[derive(Debug)]
pub struct QueryOutput {
    /// Result schema (also meaningful when there are no rows).
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
}

/// The querier role's core, shared by its front ends.
#[derive(Debug)]
pub struct Querier {
    store: Arc<Store>,
    config: QueryConfig,
    metrics: QueryMetrics,
    frames: FrameCache,
    /// One permit per query allowed to run.
    running: Semaphore,
    /// Queries waiting for a permit.
    waiting: AtomicUsize,
}

impl Querier {
    /// A querier reading `store`.
    pub fn new(store: Arc<Store>, config: QueryConfig, metrics: QueryMetrics) -> Arc<Self> {
        Arc::new(Self {
            store,
            frames: FrameCache::new(config.frame_cache_frames),
            running: Semaphore::new(config.max_concurrent.max(1)),
            waiting: AtomicUsize::new(0),
            config,
            metrics,
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// The tenant a request acts for, from its `Authorization` and `X-Scope-OrgID` headers.
    pub fn tenant(
        &self,
        authorization: Option<&[u8]>,
        org_id: Option<&[u8]>,
    ) -> Result<String, QueryError> {
        self.config.auth.tenant(authorization, org_id).map_err(|e| {
            if self.config.auth.enabled() {
                QueryError::Unauthenticated(e.0)
            } else {
                QueryError::BadRequest(e.0)
            }
        })
    }

    /// A fresh session that sees only `tenant`'s rows, with this querier's memory limit.
    pub async fn session(&self, tenant: &str) -> Result<SessionContext, QueryError> {
        let ctx = self.bare_session()?;
        self.store.register(&ctx, Some(tenant)).await?;
        crate::functions::register(&ctx);
        Ok(ctx)
    }

    /// [`Querier::session`], with the `samples` data files of the version it reads (for
    /// flame graphs, which read whole hours from the compactor's rollups where they can).
    pub async fn session_with_files(
        &self,
        tenant: &str,
    ) -> Result<(SessionContext, Vec<stackdrift_storage::DataFile>), QueryError> {
        let ctx = self.bare_session()?;
        let files = self.store.register_with_files(&ctx, Some(tenant)).await?;
        crate::functions::register(&ctx);
        Ok((ctx, files))
    }

    /// The stacks of one tenant's service, up to date (see [`crate::frames`]); `None` when
    /// the cache is off or the service is too big for it.
    pub(crate) async fn service_stacks(
        &self,
        tenant: &str,
        service: &str,
    ) -> Result<Option<OwnedMutexGuard<ServiceStacks>>, stackdrift_storage::StorageError> {
        self.frames.get(&self.store, tenant, service).await
    }

    /// Counts hours a flame graph read from rollups.
    pub(crate) fn rollup_hours(&self, hours: i64) {
        self.metrics
            .rollup_hours
            .inc_by(u64::try_from(hours).unwrap_or(0));
    }

    fn bare_session(&self) -> Result<SessionContext, QueryError> {
        // No spilling: a query over its memory limit fails (cleanly) instead of filling the
        // querier's disk.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.config.memory_limit)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let config = SessionConfig::new()
            .with_batch_size(self.config.batch_size)
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Runs one read-only statement for `tenant`.
    pub async fn query(&self, tenant: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let result = self.limited(self.run(tenant, sql)).await;
        self.observe("sql", tenant, started, result.as_ref().err());
        result
    }

    /// Counts one finished query of `api` (`sql`, or a `querier.v1` method) in the metrics.
    pub fn observe(&self, api: &str, tenant: &str, started: Instant, error: Option<&QueryError>) {
        let outcome = error.map_or("ok", QueryError::reason);
        self.metrics
            .queries
            .with_label_values(&[tenant, outcome])
            .inc();
        self.metrics
            .seconds
            .with_label_values(&[api])
            .observe(started.elapsed().as_secs_f64());
        debug!(
            api,
            tenant,
            outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "query"
        );
    }

    /// Runs `work` (a query) once admitted (see [`QueryConfig::max_concurrent`]), under the
    /// per-query timeout, which counts the wait for admission too.
    pub async fn limited<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        let limit = self.config.timeout;
        let admitted = async {
            let _permit = self.admit().await?;
            let _running = GaugeGuard::inc(&self.metrics.running);
            work.await
        };
        match tokio::time::timeout(limit, admitted).await {
            Ok(Err(QueryError::Memory { detail, .. })) => Err(QueryError::Memory {
                limit_mib: self.config.memory_limit >> 20,
                detail,
            }),
            Ok(r) => r,
            Err(_) => Err(QueryError::Timeout(limit.as_secs())),
        }
    }

    /// A permit to run one query: at once if a slot is free, after a wait if fewer than
    /// `max_queued` queries wait already, else [`QueryError::Overloaded`].
    async fn admit(&self) -> Result<SemaphorePermit<'_>, QueryError> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        let waiting = Waiting::enter(&self.waiting);
        if waiting.ahead >= self.config.max_queued {
            return Err(QueryError::Overloaded(format!(
                "{} queries running and {} waiting, the querier's limits \
                 (--max-concurrent-queries, --max-queued-queries); retry later",
                self.config.max_concurrent.max(1),
                waiting.ahead
            )));
        }
        let _queued = GaugeGuard::inc(&self.metrics.queued);
        self.running
            .acquire()
            .await
            .map_err(|_| QueryError::Internal("the querier is shutting down".into()))
    }

    /// The schema `sql` would answer with for `tenant`, planned (and checked to be read-only)
    /// but not run.
    pub async fn plan_schema(&self, tenant: &str, sql: &str) -> Result<SchemaRef, QueryError> {
        self.limited(async {
            let ctx = self.session(tenant).await?;
            let plan = self.plan(&ctx, sql).await?;
            Ok(Arc::new(plan.schema().as_arrow().clone()))
        })
        .await
    }

    /// Plans one statement and refuses anything but a query.
    ///
    /// Public for the `sql_guard` fuzz target (fuzz/), which plans against one session.
    pub async fn plan(&self, ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, QueryError> {
        if sql.trim().is_empty() {
            return Err(QueryError::BadRequest("empty query".into()));
        }
        // DataFusion's `create_logical_plan`, with the parse bounded (see `crate::parse`).
        let state = ctx.state();
        let recursion_limit = state.config_options().sql_parser.recursion_limit.get();
        let statement = crate::parse::parse_statement(sql, recursion_limit)?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| QueryError::from_datafusion(e, self.config.memory_limit))?;
        read_only()
            .verify_plan(&plan)
            .map_err(|e| QueryError::ReadOnly(e.find_root().to_string()))?;
        Ok(plan)
    }

    async fn run(&self, tenant: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        let ctx = self.session(tenant).await?;
        let mem = self.config.memory_limit;
        let plan = self.plan(&ctx, sql).await?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| QueryError::from_datafusion(e, mem))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df
            .collect()
            .await
            .map_err(|e| QueryError::from_datafusion(e, mem))?;
        Ok(QueryOutput { schema, batches })
    }
}

/// One place in the admission queue, given up when dropped (also when a timeout drops the
/// waiting query).
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// Queries that were waiting when this one arrived.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Self { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds a gauge one higher while alive.
struct GaugeGuard<'a>(&'a prometheus::IntGauge);

impl<'a> GaugeGuard<'a> {
    fn inc(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Queries only: no DDL (CREATE, DROP), no DML (INSERT, COPY), no statements (SET, BEGIN).
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}
