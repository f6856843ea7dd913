//! The detector role: flags statistically significant changes of functions' shares of each
//! series' weight, stores them in the `anomalies` table and notifies webhooks.
//!
//! ```text
//!  samples, stacks ──▶ source.rs (per series, window, version, stack: summed weight)
//!                         │
//!                         ▼
//!                  series.rs (per window: self/total weight per function, per version)
//!                         │
//!                         ▼
//!  detect.rs: rolling test (last K windows pooled vs the median of the previous B),
//!             version test (new vs previous version, same windows); BH, minimum effect,
//!             persistence, root cause, cost shift
//!                         │
//!        seasonal veto (same windows a day / a week earlier, when that history exists)
//!                         │
//!                         ▼
//!  suppression of repeats (cooldown) ──▶ anomalies table ──▶ notify.rs (webhooks)
//! ```
//!
//! Live mode keeps its progress (the next window to evaluate, and anomalies still to be
//! notified) in `_detector/progress.json` beside the `anomalies` table; replay (`--from/--to`)
//! runs the same evaluation over a past range.

pub mod detect;
pub mod eval;
pub mod notify;
pub mod series;
pub mod source;
pub mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stackdrift_model::clock::SharedClock;
use stackdrift_storage::{Anomaly, StorageError, Store};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use xxhash_rust::xxh3::xxh3_64;

use crate::detect::{
    BaselineKind, DetectConfig, Dispersions, Finding, Kind, evaluate_rolling, evaluate_version,
};
use crate::notify::{Notifier, RetryPolicy, Sink};
use crate::series::{History, Metric, SeriesKey, ServiceStacks, Weights};
use crate::source::{Row, Source};

/// Detector errors.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// Table access failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A query failed.
    #[error("query: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Progress could not be read or written.
    #[error("progress: {0}")]
    Progress(String),
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A bug.
    #[error("internal: {0}")]
    Internal(String),
}

/// Settings of the detector role.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Evaluation window.
    pub window: Duration,
    /// How long after a window ends it is evaluated (late pushes and ingest batching).
    pub settle: Duration,
    /// Labels that split a service into separately tested series (e.g. `region`).
    pub group_by: Vec<String>,
    /// Statistics.
    pub detect: DetectConfig,
    /// After an anomaly, the same function and direction is not reported again until its
    /// change has been absent for this many windows.
    pub cooldown_windows: i64,
    /// Veto rolling findings that the same time a day or a week earlier also shows.
    pub seasonal: bool,
    /// Prefix of the diff links (the querier's address as users reach it).
    pub public_url: String,
    /// Webhooks.
    pub sinks: Vec<Sink>,
    /// Notify improvements too (regressions always are; shifts never).
    pub notify_improvements: bool,
    /// How often live mode looks for newly closed windows.
    pub poll: Duration,
    /// On first start (no progress stored yet), evaluate the windows of this much history
    /// before now as well.
    pub backfill: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            settle: Duration::from_secs(60),
            group_by: Vec::new(),
            detect: DetectConfig::default(),
            cooldown_windows: 60,
            seasonal: true,
            public_url: "http://127.0.0.1:4040".into(),
            sinks: Vec::new(),
            notify_improvements: false,
            poll: Duration::from_secs(10),
            backfill: Duration::ZERO,
        }
    }
}

/// Live progress, stored beside the `anomalies` table.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// The next window index to evaluate.
    next_window: i64,
    /// Anomalies stored but not yet confirmed by every webhook.
    pending: Vec<Anomaly>,
}

const PROGRESS: &str = "progress.json";
const DAY_US: i64 = 86_400_000_000;

/// The detector: its configuration, the windows it holds and what it has reported.
#[derive(Debug)]
pub struct Detector {
    cfg: DetectorConfig,
    store: Arc<Store>,
    source: Source,
    window_us: i64,
    series: HashMap<SeriesKey, History>,
    services: HashMap<(String, String), ServiceStacks>,
    /// Windows `loaded.0..loaded.1` are in `series`.
    loaded: (i64, i64),
    /// Last window each (series, function, version baseline or not, direction up) held, for
    /// suppressing repeats.
    last_held: HashMap<(SeriesKey, String, bool, bool), i64>,
    /// Seasonal history loaded on demand: (series, first window) → windows.
    seasonal: HashMap<(SeriesKey, i64), History>,
    notifier: Notifier,
}

impl Detector {
    /// A detector over `store`. Fails when a webhook URL is invalid.
    pub fn new(store: Arc<Store>, cfg: DetectorConfig) -> Result<Self, DetectorError> {
        let window_us = i64::try_from(cfg.window.as_micros())
            .unwrap_or(60_000_000)
            .max(1);
        let source = Source::new(store.clone(), window_us, cfg.group_by.clone());
        let notifier = Notifier::new(
            cfg.sinks.clone(),
            cfg.public_url.clone(),
            RetryPolicy::default(),
        )
        .map_err(|e| DetectorError::Config(e.to_string()))?;
        Ok(Self {
            cfg,
            store,
            source,
            window_us,
            series: HashMap::new(),
            services: HashMap::new(),
            loaded: (0, 0),
            last_held: HashMap::new(),
            seasonal: HashMap::new(),
            notifier,
        })
    }

    /// Window length in µs.
    pub fn window_us(&self) -> i64 {
        self.window_us
    }

    fn history_span(&self) -> i64 {
        self.cfg.detect.persistence.max(1) + self.cfg.detect.baseline_windows
    }

    /// Evaluates the windows ending in `[from_us, to_us)` (replay), stores the anomalies it
    /// finds (skipping any the table already holds) and returns all it found. The evaluation
    /// first runs, without reporting, over the cooldown before `from_us`, so that a change
    /// already reported there is not reported again: as live mode would have done.
    pub async fn replay(
        &mut self,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<Anomaly>, DetectorError> {
        let from = from_us.div_euclid(self.window_us);
        let to = to_us.div_euclid(self.window_us);
        self.process(from - self.cfg.cooldown_windows, from, false)
            .await?;
        let found = self.process(from, to, true).await?;
        self.store.append_anomalies(&found).await?;
        Ok(found)
    }

    /// Evaluates windows `from..to` in order; returns the anomalies to report when `report`.
    pub async fn process(
        &mut self,
        from: i64,
        to: i64,
        report: bool,
    ) -> Result<Vec<Anomaly>, DetectorError> {
        let mut out = Vec::new();
        let span = self.history_span();
        let mut t = from;
        while t < to {
            // Load in chunks of up to one baseline length ahead.
            if self.loaded.1 <= t || self.loaded.0 > t - span + 1 {
                let start = if self.loaded.0 <= t - span + 1 && self.loaded.1 > t - span + 1 {
                    self.loaded.1
                } else {
                    self.series.clear();
                    t - span + 1
                };
                let end = to.min(t + self.cfg.detect.baseline_windows.max(1));
                let rows = self.source.windows(start, end, None).await?;
                self.add_rows(rows).await?;
                self.loaded = (
                    if start == t - span + 1 {
                        start
                    } else {
                        self.loaded.0
                    },
                    end,
                );
            }
            let found = self.evaluate(t).await?;
            for (key, f) in found {
                if let Some(a) = self.admit(&key, &f, t)
                    && report
                {
                    out.push(a);
                }
            }
            self.prune(t - span);
            t += 1;
        }
        Ok(out)
    }

    /// Drops windows before `keep_from`.
    fn prune(&mut self, keep_from: i64) {
        if self.loaded.0 >= keep_from {
            return;
        }
        for h in self.series.values_mut() {
            while let Some((w, _)) = h.first_key_value() {
                if *w >= keep_from {
                    break;
                }
                h.pop_first();
            }
        }
        self.series.retain(|_, h| !h.is_empty());
        self.loaded.0 = keep_from;
        let cutoff = keep_from - self.cfg.cooldown_windows * 4;
        self.last_held.retain(|_, w| *w >= cutoff);
    }

    async fn ensure_stacks(&mut self, rows: &[Row]) -> Result<(), DetectorError> {
        let mut missing: HashSet<(String, String)> = HashSet::new();
        for r in rows {
            let key = (r.key.tenant.clone(), r.key.service.clone());
            let known = self
                .services
                .get(&key)
                .is_some_and(|s| s.stacks.contains_key(&r.stack));
            if !known {
                missing.insert(key);
            }
        }
        for (tenant, service) in missing {
            let all = self.source.stacks(&tenant, &service).await?;
            let s = self.services.entry((tenant, service)).or_default();
            for (id, functions) in all {
                if !s.stacks.contains_key(&id) {
                    let names: Vec<&str> = functions.iter().map(String::as_str).collect();
                    s.insert(id, &names);
                }
            }
        }
        Ok(())
    }

    async fn add_rows(&mut self, rows: Vec<Row>) -> Result<(), DetectorError> {
        self.ensure_stacks(&rows).await?;
        let mut touched: HashSet<(SeriesKey, i64)> = HashSet::new();
        for r in rows {
            let Some(functions) = self
                .services
                .get(&(r.key.tenant.clone(), r.key.service.clone()))
                .and_then(|s| s.stacks.get(&r.stack))
                .cloned()
            else {
                debug!(stack = r.stack, service = %r.key.service, "stack without frames; skipped");
                continue;
            };
            let win = self
                .series
                .entry(r.key.clone())
                .or_default()
                .entry(r.window)
                .or_default();
            win.all.add(r.stack, &functions, r.value);
            let version: Option<Arc<str>> = r.version.as_deref().map(Arc::from);
            *win.versions.entry(version.clone()).or_default() += r.value;
            win.by_version
                .entry(version)
                .or_default()
                .add(r.stack, &functions, r.value);
            touched.insert((r.key, r.window));
        }
        for (key, w) in touched {
            if let Some(win) = self.series.get_mut(&key).and_then(|h| h.get_mut(&w))
                && win.by_version.len() < 2
            {
                win.by_version.clear();
            }
        }
        Ok(())
    }

    /// Findings of every series whose condition holds at window `t`.
    async fn evaluate(&mut self, t: i64) -> Result<Vec<(SeriesKey, Finding)>, DetectorError> {
        let mut keys: Vec<SeriesKey> = self.series.keys().cloned().collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let (Some(hist), Some(stacks)) =
                (self.series.get(&key), self.services.get(&key.service_key()))
            else {
                continue;
            };
            let count_unit = key.profile_type.split(':').nth(2) == Some("count");
            let (rolling, disp) = evaluate_rolling(&self.cfg.detect, hist, stacks, t, count_unit);
            let version = evaluate_version(&self.cfg.detect, hist, stacks, t, &disp);
            let mut kept = Vec::new();
            for mut f in rolling {
                if self.cfg.seasonal && f.kind != Kind::Shift {
                    // Vetoed when the same time a day or a week earlier shows it too.
                    match self.seasonal_check(&key, &f, t, &disp).await? {
                        Some(false) => continue,
                        Some(true) => f.baseline = BaselineKind::RollingSeasonal,
                        None => {}
                    }
                }
                kept.push(f);
            }
            kept.extend(version);
            out.extend(kept.into_iter().map(|f| (key.clone(), f)));
        }
        Ok(out)
    }

    /// Whether the change also stands against the same windows a day and a week earlier,
    /// where that history exists (`None`: none does). A daily or weekly pattern (a nightly
    /// batch job) shows there too and is vetoed.
    async fn seasonal_check(
        &mut self,
        key: &SeriesKey,
        f: &Finding,
        t: i64,
        disp: &Dispersions,
    ) -> Result<Option<bool>, DetectorError> {
        let per_day = DAY_US / self.window_us;
        if per_day < 1 {
            return Ok(None);
        }
        let k = self.cfg.detect.persistence.max(1);
        let mut verdict = None;
        for lag in [per_day, per_day * 7] {
            let from = t - k + 1 - lag;
            let cache_key = (key.clone(), from);
            if !self.seasonal.contains_key(&cache_key) {
                let rows = self.source.windows(from, from + k, Some(key)).await?;
                self.ensure_stacks(&rows).await?;
                let mut h = History::new();
                if let Some(stacks) = self.services.get(&key.service_key()) {
                    for r in rows {
                        if let Some(fs) = stacks.stacks.get(&r.stack) {
                            h.entry(r.window).or_default().all.add(r.stack, fs, r.value);
                        }
                    }
                }
                if self.seasonal.len() > 10_000 {
                    self.seasonal.clear();
                }
                self.seasonal.insert(cache_key.clone(), h);
            }
            let past: Vec<&Weights> = self.seasonal[&cache_key]
                .values()
                .map(|w| &w.all)
                .filter(|w| w.total > 0.0)
                .collect();
            let Some(hist) = self.series.get(key) else {
                continue;
            };
            let current: Vec<&Weights> = (t - k + 1..=t)
                .filter_map(|w| hist.get(&w))
                .map(|w| &w.all)
                .collect();
            if past.len() as i64 != k || current.len() as i64 != k {
                continue;
            }
            let holds = detect::holds_against(&self.cfg.detect, &past, &current, disp, f);
            verdict = Some(verdict.unwrap_or(true) && holds);
        }
        Ok(verdict)
    }

    /// Suppresses repeats: a finding is reported when the same (series, function, baseline,
    /// direction) did not hold within the cooldown before `t`.
    fn admit(&mut self, key: &SeriesKey, f: &Finding, t: i64) -> Option<Anomaly> {
        let stacks = self.services.get(&key.service_key())?;
        let name = stacks.functions.name(f.function).to_owned();
        // One episode per direction: a change first classified as a shift and later as a
        // regression (or the reverse, as noise moves its partner) is still one change.
        let up = f.current_share >= f.baseline_share;
        let version = f.baseline == BaselineKind::Version;
        let held = self.last_held.insert((key.clone(), name, version, up), t);
        if held.is_some_and(|w| t - w <= self.cfg.cooldown_windows) {
            return None;
        }
        // A caller of a function whose change holds right now (this or the last window),
        // moving the same way, is that change seen from above (when the function itself
        // dips under the threshold for a window): not a new root cause.
        let stacks = self.services.get(&key.service_key())?;
        let under_reported = self.last_held.iter().any(|((k, g, b, dir), w)| {
            k == key
                && *b == version
                && *dir == up
                && t - *w <= 1
                && stacks
                    .functions
                    .id(g)
                    .is_some_and(|g| g != f.function && stacks.strictly_below(g, f.function))
        });
        if under_reported {
            return None;
        }
        Some(self.anomaly(key, f))
    }

    fn anomaly(&self, key: &SeriesKey, f: &Finding) -> Anomaly {
        let stacks = self.services.get(&key.service_key());
        let function = stacks
            .map_or("?", |s| s.functions.name(f.function))
            .to_owned();
        let example_stack = stacks
            .and_then(|s| s.stacks.get(&f.top_stack))
            .map(|ids| {
                let s = stacks.map(|s| &s.functions);
                ids.iter()
                    .rev()
                    .map(|id| s.map_or("?", |s| s.name(*id)))
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .unwrap_or_default();
        let w = self.window_us;
        let (cur_start, cur_end) = (f.current.0 * w, (f.current.1 + 1) * w);
        let (base_start, base_end) = (f.baseline_range.0 * w, (f.baseline_range.1 + 1) * w);
        let mut labels = BTreeMap::new();
        for (name, v) in self.cfg.group_by.iter().zip(&key.groups) {
            if let Some(v) = v {
                labels.insert(name.clone(), v.clone());
            }
        }
        let id_text = format!(
            "{}\u{1}{}\u{1}{}\u{1}{:?}\u{1}{}\u{1}{}\u{1}{}\u{1}{}\u{1}{}",
            key.tenant,
            key.service,
            key.profile_type,
            key.groups,
            function,
            f.metric.name(),
            f.baseline.name(),
            f.kind.name(),
            cur_start
        );
        let delta = f.current_share - f.baseline_share;
        let severity = match delta.abs() {
            d if d >= 0.05 => "critical",
            d if d >= 0.01 => "warning",
            _ => "info",
        };
        let (left, right) = match f.baseline {
            BaselineKind::Rolling | BaselineKind::RollingSeasonal => {
                (selector(key, &labels, None), selector(key, &labels, None))
            }
            BaselineKind::Version => (
                selector(key, &labels, Some(f.version_before.as_deref())),
                selector(key, &labels, Some(f.version_after.as_deref())),
            ),
        };
        let ms = |us: i64| us / 1000;
        let svg_url = format!(
            "/api/v1/diff.svg?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("left_query", &format!("{}{left}", key.profile_type))
                .append_pair("left_from", &ms(base_start).to_string())
                .append_pair("left_until", &ms(base_end).to_string())
                .append_pair("right_query", &format!("{}{right}", key.profile_type))
                .append_pair("right_from", &ms(cur_start).to_string())
                .append_pair("right_until", &ms(cur_end).to_string())
                .append_pair("title", &format!("{}: {function}", key.service))
                .finish()
        );
        let sql = format!(
            "SELECT * FROM function_diff({}, {}, {}, {}, {}, {}, {}) WHERE function = {}",
            sql_str(&key.profile_type),
            sql_str(&left),
            sql_str(&right),
            ms(base_start),
            ms(base_end),
            ms(cur_start),
            ms(cur_end),
            sql_str(&function)
        );
        let query_url = format!(
            "/api/v1/sql?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("query", &sql)
                .finish()
        );
        Anomaly {
            anomaly_id: format!("{:016x}", xxh3_64(id_text.as_bytes())),
            tenant: key.tenant.clone(),
            service_name: key.service.clone(),
            profile_type: key.profile_type.clone(),
            labels: serde_json::to_string(&labels).unwrap_or_else(|_| "{}".into()),
            kind: f.kind.name().into(),
            baseline: f.baseline.name().into(),
            metric: f.metric.name().into(),
            function,
            baseline_share: f.baseline_share,
            current_share: f.current_share,
            delta,
            score: if f.score.is_finite() {
                f.score
            } else {
                f64::MAX.copysign(f.score)
            },
            p_value: f.p_value,
            severity: severity.into(),
            window_start_us: cur_start,
            window_end_us: cur_end,
            baseline_start_us: base_start,
            baseline_end_us: base_end,
            windows: i32::try_from(f.current.1 - f.current.0 + 1).unwrap_or(i32::MAX),
            version_before: f.version_before.as_deref().map(str::to_owned),
            version_after: f.version_after.as_deref().map(str::to_owned),
            example_stack,
            query_url,
            svg_url,
        }
    }

    fn should_notify(&self, a: &Anomaly) -> bool {
        a.kind == Kind::Regression.name()
            || (self.cfg.notify_improvements && a.kind == Kind::Improvement.name())
    }

    async fn load_progress(&self) -> Result<Option<Progress>, DetectorError> {
        match self.store.read_state(PROGRESS).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| DetectorError::Progress(format!("{PROGRESS}: {e}"))),
        }
    }

    async fn save_progress(&self, p: &Progress) -> Result<(), DetectorError> {
        let bytes =
            serde_json::to_vec(p).map_err(|e| DetectorError::Progress(format!("encode: {e}")))?;
        Ok(self.store.write_state(PROGRESS, bytes).await?)
    }

    /// Notifies `pending`, returning those that still failed.
    async fn notify_all(&self, pending: Vec<Anomaly>) -> Vec<Anomaly> {
        let mut left = Vec::new();
        for a in pending {
            if let Err(e) = self.notifier.notify(&a).await {
                warn!(anomaly = %a.anomaly_id, error = %e, "notification failed; will retry");
                left.push(a);
            }
        }
        left
    }

    /// One live step at `now_us`: evaluates every window closed since the last step, stores
    /// and notifies what it finds, and records progress. Returns the anomalies stored.
    pub async fn step(&mut self, now_us: i64) -> Result<Vec<Anomaly>, DetectorError> {
        let settle = i64::try_from(self.cfg.settle.as_micros()).unwrap_or(0);
        let closed = (now_us - settle).div_euclid(self.window_us);
        let mut progress = match self.load_progress().await? {
            Some(p) => p,
            None => Progress {
                next_window: closed
                    - i64::try_from(self.cfg.backfill.as_micros()).unwrap_or(0) / self.window_us,
                pending: Vec::new(),
            },
        };
        if self.loaded == (0, 0) {
            // First step of this process: rebuild the cooldown state without reporting.
            let from = progress.next_window;
            self.process(from - self.cfg.cooldown_windows, from, false)
                .await?;
        }
        let mut stored = Vec::new();
        if closed > progress.next_window {
            let found = self.process(progress.next_window, closed, true).await?;
            // Record what is to be notified before storing it: a crash in between then
            // re-notifies (at least once) instead of forgetting.
            // After a crash between the two saves below, the same windows are evaluated again
            // and find the same anomalies: queue each ID once.
            let queued: HashSet<String> = progress
                .pending
                .iter()
                .map(|a| a.anomaly_id.clone())
                .collect();
            progress.pending.extend(
                found
                    .iter()
                    .filter(|a| self.should_notify(a) && !queued.contains(&a.anomaly_id))
                    .cloned(),
            );
            self.save_progress(&progress).await?;
            stored = self.store.append_anomalies(&found).await?;
            if !found.is_empty() {
                info!(anomalies = found.len(), windows = ?(progress.next_window..closed), "detector found anomalies");
            }
            progress.next_window = closed;
            self.save_progress(&progress).await?;
        }
        if !progress.pending.is_empty() {
            let before = progress.pending.len();
            progress.pending = self.notify_all(std::mem::take(&mut progress.pending)).await;
            progress.pending.truncate(10_000);
            if progress.pending.len() != before {
                self.save_progress(&progress).await?;
            }
        }
        Ok(stored)
    }
}

fn selector(
    key: &SeriesKey,
    labels: &BTreeMap<String, String>,
    version: Option<Option<&str>>,
) -> String {
    let q = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut parts = vec![format!("service_name=\"{}\"", q(&key.service))];
    for (k, v) in labels {
        parts.push(format!("{k}=\"{}\"", q(v)));
    }
    if let Some(v) = version {
        parts.push(format!("version=\"{}\"", q(v.unwrap_or(""))));
    }
    format!("{{{}}}", parts.join(","))
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs the detector until `shutdown`, evaluating each window once it has settled.
pub async fn run(
    store: Arc<Store>,
    cfg: DetectorConfig,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    let poll = cfg.poll;
    let mut detector = match Detector::new(store, cfg) {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "detector cannot start");
            return;
        }
    };
    info!(
        window_s = detector.window_us / 1_000_000,
        "detector started"
    );
    // Consecutive failed steps; the first success after some is logged, so an operator (and
    // the outage test) can see the detector pick up where it stopped.
    let mut failures = 0u64;
    loop {
        match detector.step(clock.now_us()).await {
            Ok(_) if failures > 0 => {
                info!(failed_steps = failures, "detector resumed");
                failures = 0;
            }
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                warn!(error = %e, failed_steps = failures, "detector step failed; retrying");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(poll) => {}
        }
    }
    info!("detector stopped");
}

/// A metric's column name (re-exported for users of [`Metric`]).
pub fn metric_name(m: Metric) -> &'static str {
    m.name()
}
