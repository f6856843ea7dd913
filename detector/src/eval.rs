//! Evaluation harness: a generator of realistic fleets with regressions of known size, time
//! and function, and the scoring of what the detector reported against them.
//!
//! The fleet: each service is a random call tree (deep chains, shared library functions such
//! as `json.encode` called from several places), Zipf-like self weights, a diurnal load curve,
//! bursty sample counts per window, extra window-to-window variation of every stack's weight
//! (overdispersion), deploys (new `version`) that inject a regression, a cost shift (a
//! function renamed: its weight moves to a new name, total unchanged) or nothing, and
//! noise-only services. `stackdrift-eval` pushes it through the ingest API and runs the
//! detector over it; docs/DETECTION.md shows the results.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use stackdrift_storage::Anomaly;

/// Size and shape of a generated fleet.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Services.
    pub services: usize,
    /// Of which this many only ever have noise (and plain deploys).
    pub noise_only: usize,
    /// Windows per service.
    pub windows: i64,
    /// Window length, µs.
    pub window_us: i64,
    /// First window's start, µs (a multiple of the window).
    pub start_us: i64,
    /// Mean samples per window and service.
    pub samples_per_window: f64,
    /// Call-tree nodes per service.
    pub nodes: usize,
    /// Zipf exponent of the self weights.
    pub zipf: f64,
    /// Relative amplitude of the daily load curve.
    pub diurnal: f64,
    /// Log-normal sigma of the per-window sample count (bursty sampling).
    pub burst: f64,
    /// Log-normal sigma of each stack's weight per window (overdispersion).
    pub jitter: f64,
    /// Regression sizes, as a fraction of the service's total weight; cycled through.
    pub sizes: Vec<f64>,
    /// Windows between two deploys of one service.
    pub deploy_every: i64,
    /// First deploy, in windows from the start (after the baseline has filled).
    pub first_deploy: i64,
    /// Seed.
    pub seed: u64,
}

impl FleetSpec {
    /// The reduced size CI runs.
    pub fn small(start_us: i64) -> Self {
        Self {
            services: 12,
            noise_only: 2,
            windows: 8 * 60,
            window_us: 60_000_000,
            start_us,
            samples_per_window: 5_000.0,
            nodes: 160,
            zipf: 1.1,
            diurnal: 0.3,
            burst: 0.2,
            jitter: 0.05,
            sizes: vec![0.005, 0.01, 0.02, 0.05],
            deploy_every: 90,
            first_deploy: 80,
            seed: 42,
        }
    }
}

/// What a deploy changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A function got heavier by `size` of the service's total.
    Regression,
    /// A function was renamed (weight moved, total unchanged).
    Shift,
    /// Only the version changed.
    Nothing,
}

/// One deploy, with the truth the detector is scored against.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    /// Service.
    pub service: String,
    /// What changed.
    pub change: Change,
    /// The function that changed (regressions and shifts).
    pub function: String,
    /// Size of a regression, fraction of the total.
    pub size: f64,
    /// The function's self share before the change.
    pub base_share: f64,
    /// First window with the change.
    pub window: i64,
    /// Version before and after.
    pub versions: (String, String),
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    parent: Option<usize>,
    weight: f64,
}

/// One service's call tree and its current version.
#[derive(Debug, Clone)]
pub struct ServiceModel {
    /// Service name.
    pub name: String,
    nodes: Vec<Node>,
    version: u32,
}

/// Splitmix64: small, seedable, good enough for simulation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Poisson with mean `lambda` (normal approximation above 50).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 50.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

const LIBRARY: [&str; 12] = [
    "json.encode",
    "json.decode",
    "regexp.match",
    "gzip.write",
    "db.query",
    "tls.handshake",
    "http.readRequest",
    "proto.marshal",
    "sort.slice",
    "strings.builder",
    "log.write",
    "hash.sha256",
];

impl ServiceModel {
    fn new(name: String, spec: &FleetSpec, rng: &mut Rng) -> Self {
        let mut nodes = vec![Node {
            name: "main".into(),
            parent: None,
            weight: 0.0,
        }];
        for i in 1..spec.nodes {
            // Parents among the last few nodes give deep chains; some jump back to the top.
            let parent = if rng.unit() < 0.15 {
                rng.below(i.min(4))
            } else {
                i - 1 - rng.below(i.min(6))
            };
            let name = if rng.unit() < 0.1 {
                LIBRARY[rng.below(LIBRARY.len())].to_owned()
            } else {
                format!("{name}.pkg{}.fn{i}", i % 7)
            };
            nodes.push(Node {
                name,
                parent: Some(parent),
                weight: 0.0,
            });
        }
        // Zipf self weights over a random order of ~70 % of the nodes.
        let mut order: Vec<usize> = (1..nodes.len()).filter(|_| rng.unit() < 0.7).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let total: f64 = (1..=order.len())
            .map(|r| 1.0 / (r as f64).powf(spec.zipf))
            .sum();
        for (r, n) in order.iter().enumerate() {
            nodes[*n].weight = 1.0 / ((r + 1) as f64).powf(spec.zipf) / total;
        }
        Self {
            name,
            nodes,
            version: 1,
        }
    }

    fn version(&self) -> String {
        format!("1.{}.0", self.version)
    }

    fn stack(&self, mut i: usize) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            out.push(self.nodes[i].name.clone());
            match self.nodes[i].parent {
                Some(p) => i = p,
                None => break,
            }
        }
        out.reverse();
        out
    }

    fn self_share(&self, name: &str) -> f64 {
        let total: f64 = self.nodes.iter().map(|n| n.weight).sum();
        self.nodes
            .iter()
            .filter(|n| n.name == name)
            .map(|n| n.weight)
            .sum::<f64>()
            / total
    }

    /// A node with self weight, uniformly.
    fn weighted_node(&self, rng: &mut Rng) -> usize {
        let with: Vec<usize> = (1..self.nodes.len())
            .filter(|i| self.nodes[*i].weight > 0.0)
            .collect();
        with[rng.below(with.len())]
    }
}

/// One window's profile of one service: labels and (root-first stack, sample count).
#[derive(Debug, Clone)]
pub struct WindowProfile {
    /// Service.
    pub service: String,
    /// `version` label.
    pub version: String,
    /// Window index.
    pub window: i64,
    /// Stacks (root first) and sample counts.
    pub stacks: Vec<(Vec<String>, u64)>,
}

/// A generated fleet: call `window` for each window in order.
#[derive(Debug)]
pub struct Fleet {
    spec: FleetSpec,
    services: Vec<ServiceModel>,
    rng: Rng,
    /// Deploys so far.
    pub injected: Vec<Injected>,
}

impl Fleet {
    /// A fleet following `spec`.
    pub fn new(spec: FleetSpec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let services = (0..spec.services)
            .map(|i| ServiceModel::new(format!("svc{i:02}"), &spec, &mut rng))
            .collect();
        Self {
            spec,
            services,
            rng,
            injected: Vec::new(),
        }
    }

    /// The spec.
    pub fn spec(&self) -> &FleetSpec {
        &self.spec
    }

    fn deploy(&mut self, s: usize, w: i64) {
        let n_deploy = (w - self.spec.first_deploy) / self.spec.deploy_every;
        let noise_only = s < self.spec.noise_only;
        // Deploy kinds cycle: regression, regression, shift, nothing (services offset).
        let kind = if noise_only {
            if n_deploy % 2 == 0 {
                Change::Shift
            } else {
                Change::Nothing
            }
        } else {
            match (n_deploy + s as i64) % 4 {
                0 | 1 => Change::Regression,
                2 => Change::Shift,
                _ => Change::Nothing,
            }
        };
        let rng = &mut self.rng;
        let svc = &mut self.services[s];
        let before = svc.version();
        svc.version += 1;
        let after = svc.version();
        let mut inj = Injected {
            service: svc.name.clone(),
            change: kind,
            function: String::new(),
            size: 0.0,
            base_share: 0.0,
            window: w,
            versions: (before, after),
        };
        let total: f64 = svc.nodes.iter().map(|n| n.weight).sum();
        match kind {
            Change::Regression => {
                let k = self
                    .injected
                    .iter()
                    .filter(|i| i.change == Change::Regression)
                    .count();
                let size = self.spec.sizes[k % self.spec.sizes.len()];
                let node = svc.weighted_node(rng);
                let target = if rng.unit() < 0.5 {
                    node
                } else {
                    // A new callee (a new slow path under an existing function).
                    let name = format!("{}.slowpath{}", svc.name, svc.nodes.len());
                    svc.nodes.push(Node {
                        name,
                        parent: Some(node),
                        weight: 0.0,
                    });
                    svc.nodes.len() - 1
                };
                inj.function = svc.nodes[target].name.clone();
                inj.base_share = svc.self_share(&inj.function);
                inj.size = size;
                svc.nodes[target].weight += size * total;
            }
            Change::Shift => {
                let node = svc.weighted_node(rng);
                let old = svc.nodes[node].name.clone();
                inj.base_share = svc.self_share(&old);
                let new = format!("{old}_v{}", svc.version);
                // Rename every node of the function: all its weight moves to the new name.
                for n in svc.nodes.iter_mut().filter(|n| n.name == old) {
                    n.name = new.clone();
                }
                inj.function = old;
            }
            Change::Nothing => {}
        }
        self.injected.push(inj);
    }

    /// The profiles of window `w` (call with increasing `w`).
    pub fn window(&mut self, w: i64) -> Vec<WindowProfile> {
        let spec = self.spec.clone();
        let day_windows = 86_400_000_000 / spec.window_us;
        let phase = std::f64::consts::TAU * (w % day_windows.max(1)) as f64 / day_windows as f64;
        let mut out = Vec::new();
        for s in 0..self.services.len() {
            if w >= spec.first_deploy && (w - spec.first_deploy) % spec.deploy_every == 0 {
                self.deploy(s, w);
            }
            let rng = &mut self.rng;
            let svc = &self.services[s];
            let load = (1.0 + spec.diurnal * (phase + s as f64).sin())
                * (spec.burst * rng.normal() - spec.burst * spec.burst / 2.0).exp();
            let n = spec.samples_per_window * load;
            let total: f64 = svc.nodes.iter().map(|n| n.weight).sum();
            let mut stacks = Vec::new();
            for (i, node) in svc.nodes.iter().enumerate() {
                if node.weight <= 0.0 {
                    continue;
                }
                let jitter = (spec.jitter * rng.normal() - spec.jitter * spec.jitter / 2.0).exp();
                let c = rng.poisson(n * node.weight / total * jitter);
                if c > 0 {
                    stacks.push((svc.stack(i), c));
                }
            }
            out.push(WindowProfile {
                service: svc.name.clone(),
                version: svc.version(),
                window: w,
                stacks,
            });
        }
        out
    }
}

/// Recall and the rest for one regression size.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SizeRow {
    /// Regression size, fraction of the total.
    pub size: f64,
    /// Regressions injected.
    pub injected: usize,
    /// Regressions detected (a regression anomaly of the service within 10 windows).
    pub detected: usize,
    /// Detected with the injected function as the top finding.
    pub top1: usize,
    /// Detection latencies, windows from the first changed window to the end of the window
    /// the anomaly was reported in.
    pub latencies: Vec<i64>,
}

/// The evaluation's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Per regression size.
    pub sizes: Vec<SizeRow>,
    /// Regression or improvement anomalies that match no injected regression.
    pub false_alarms: usize,
    /// Service-days observed.
    pub service_days: f64,
    /// Injected cost shifts, and how many raised a regression or improvement.
    pub shifts: usize,
    /// Cost shifts that raised an alarm.
    pub shifts_alarmed: usize,
    /// Recall for regressions at least twice the binomial noise floor's critical effect.
    pub recall_at_2x_floor: f64,
    /// Regressions at least twice the floor.
    pub at_2x_floor: usize,
}

impl Report {
    /// Recall over sizes ≥ `min`.
    pub fn recall(&self, min: f64, max: f64) -> f64 {
        let (mut i, mut d) = (0, 0);
        for r in self.sizes.iter().filter(|r| r.size >= min && r.size <= max) {
            i += r.injected;
            d += r.detected;
        }
        if i == 0 { 1.0 } else { d as f64 / i as f64 }
    }
    /// Top-1 root-cause accuracy over detected regressions.
    pub fn top1(&self) -> f64 {
        let d: usize = self.sizes.iter().map(|r| r.detected).sum();
        let t: usize = self.sizes.iter().map(|r| r.top1).sum();
        if d == 0 { 0.0 } else { t as f64 / d as f64 }
    }
    /// Fraction of detections of regressions of at least `min` within `n` windows.
    pub fn within(&self, n: i64, min: f64) -> f64 {
        let all: Vec<i64> = self
            .sizes
            .iter()
            .filter(|r| r.size >= min)
            .flat_map(|r| r.latencies.clone())
            .collect();
        if all.is_empty() {
            return 0.0;
        }
        all.iter().filter(|l| **l <= n).count() as f64 / all.len() as f64
    }
    /// The `q` quantile of detection latency (windows) over regressions of at least `min`.
    pub fn latency_quantile(&self, q: f64, min: f64) -> i64 {
        let mut all: Vec<i64> = self
            .sizes
            .iter()
            .filter(|r| r.size >= min)
            .flat_map(|r| r.latencies.clone())
            .collect();
        all.sort();
        if all.is_empty() {
            return i64::MAX;
        }
        let i = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
        all[i]
    }

    /// False alarms per service-day.
    pub fn false_alarm_rate(&self) -> f64 {
        self.false_alarms as f64 / self.service_days.max(1e-9)
    }

    /// The targets of the detector issue, each with whether it holds.
    pub fn targets(&self) -> Vec<(String, String, bool)> {
        let r1 = self.recall(0.01, 1.0);
        let r05 = self.recall(0.005, 0.0099);
        let fa = self.false_alarm_rate();
        let p95 = self.latency_quantile(0.95, 0.01);
        let w2_all = self.within(2, 0.0);
        let top1 = self.top1();
        vec![
            (
                "recall, regressions ≥ 1 %".into(),
                format!("{:.1} % (≥ 95 %)", r1 * 100.0),
                r1 >= 0.95,
            ),
            (
                "recall, regressions of 0.5 %".into(),
                format!("{:.1} % (≥ 80 %)", r05 * 100.0),
                r05 >= 0.80,
            ),
            (
                "false alarms per service-day".into(),
                format!("{fa:.3} (≤ 0.1)"),
                fa <= 0.1,
            ),
            (
                "detection latency (p95, regressions ≥ 1 %)".into(),
                format!(
                    "{p95} windows (≤ 2; {:.1} % of all detections within 2)",
                    w2_all * 100.0
                ),
                p95 <= 2,
            ),
            (
                "top-1 root cause".into(),
                format!("{:.1} % (≥ 90 %)", top1 * 100.0),
                top1 >= 0.90,
            ),
            (
                "recall at 2× the binomial floor".into(),
                format!(
                    "{:.1} % of {} (≥ 80 %)",
                    self.recall_at_2x_floor * 100.0,
                    self.at_2x_floor
                ),
                self.recall_at_2x_floor >= 0.80,
            ),
        ]
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| size | injected | detected | recall | top-1 | median latency |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
        for r in &self.sizes {
            let mut l = r.latencies.clone();
            l.sort();
            let med = l.get(l.len() / 2).map_or("–".into(), |v| v.to_string());
            let _ = writeln!(
                s,
                "| {:.1} % | {} | {} | {:.0} % | {} | {med} |",
                r.size * 100.0,
                r.injected,
                r.detected,
                100.0 * r.detected as f64 / r.injected.max(1) as f64,
                r.top1,
            );
        }
        let _ = writeln!(
            s,
            "\nfalse alarms: {} in {:.2} service-days; cost shifts: {} injected, {} alarmed\n",
            self.false_alarms, self.service_days, self.shifts, self.shifts_alarmed
        );
        let _ = writeln!(s, "| target | measured | met |");
        let _ = writeln!(s, "|---|---|---|");
        for (name, v, ok) in self.targets() {
            let _ = writeln!(s, "| {name} | {v} | {} |", if ok { "yes" } else { "NO" });
        }
        s
    }
}

/// Scores `anomalies` against the fleet's deploys. `persistence` and `baseline_windows` are
/// the detector's, for the binomial noise floor.
pub fn score(
    spec: &FleetSpec,
    injected: &[Injected],
    anomalies: &[Anomaly],
    persistence: i64,
    baseline_windows: i64,
    critical_z: f64,
) -> Report {
    let win = spec.window_us;
    let window_of = |us: i64| (us - spec.start_us).div_euclid(win);
    let mut rows: BTreeMap<u64, SizeRow> = BTreeMap::new();
    let mut matched = vec![false; anomalies.len()];
    let mut report = Report {
        service_days: spec.services as f64 * spec.windows as f64 * win as f64 / 86_400e6,
        ..Report::default()
    };
    let alarm = |a: &Anomaly| a.kind == "regression" || a.kind == "improvement";
    let (mut floor_n, mut floor_d) = (0, 0);
    for inj in injected {
        let near: Vec<usize> = anomalies
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                let end = window_of(a.window_end_us);
                a.service_name == inj.service
                    && alarm(a)
                    && end > inj.window
                    && end <= inj.window + 10
            })
            .map(|(i, _)| i)
            .collect();
        match inj.change {
            Change::Regression => {
                let row = rows
                    .entry((inj.size * 1e6) as u64)
                    .or_insert_with(|| SizeRow {
                        size: inj.size,
                        ..SizeRow::default()
                    });
                row.injected += 1;
                let regressions: Vec<usize> = near
                    .iter()
                    .copied()
                    .filter(|i| anomalies[*i].kind == "regression")
                    .collect();
                // Pure binomial noise of the share test at this size and base share.
                let n = spec.samples_per_window;
                let p = inj.base_share;
                let sd = (p
                    * (1.0 - p)
                    * (1.0 / (persistence as f64 * n) + 1.0 / (baseline_windows as f64 * n)))
                    .sqrt();
                let twice_floor = inj.size >= 2.0 * critical_z * sd.max(1e-12);
                if twice_floor {
                    floor_n += 1;
                }
                if let Some(first_end) = regressions
                    .iter()
                    .map(|i| window_of(anomalies[*i].window_end_us))
                    .min()
                {
                    row.detected += 1;
                    if twice_floor {
                        floor_d += 1;
                    }
                    row.latencies.push(first_end - inj.window);
                    let top = regressions
                        .iter()
                        .filter(|i| window_of(anomalies[**i].window_end_us) == first_end)
                        .max_by(|a, b| {
                            anomalies[**a]
                                .delta
                                .abs()
                                .total_cmp(&anomalies[**b].delta.abs())
                        });
                    if top.is_some_and(|i| anomalies[*i].function == inj.function) {
                        row.top1 += 1;
                    }
                }
                for i in regressions {
                    matched[i] = true;
                }
                // Other functions' shares fall a little when one grows: improvements the
                // detector reports alongside are not counted as false alarms.
                for i in near {
                    if anomalies[i].kind == "improvement" {
                        matched[i] = true;
                    }
                }
            }
            Change::Shift => {
                report.shifts += 1;
                if !near.is_empty() {
                    report.shifts_alarmed += 1;
                }
            }
            Change::Nothing => {}
        }
    }
    report.false_alarms = anomalies
        .iter()
        .zip(&matched)
        .filter(|(a, m)| alarm(a) && !**m)
        .count();
    report.sizes = rows.into_values().collect();
    report.at_2x_floor = floor_n;
    report.recall_at_2x_floor = if floor_n == 0 {
        1.0
    } else {
        floor_d as f64 / floor_n as f64
    };
    report
}

/// Per service, the anomalies (for printing).
pub fn by_service(anomalies: &[Anomaly]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for a in anomalies {
        *m.entry(a.service_name.clone()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_is_deterministic_and_injects_on_schedule() {
        let spec = FleetSpec {
            services: 3,
            noise_only: 1,
            windows: 200,
            ..FleetSpec::small(0)
        };
        let mut a = Fleet::new(spec.clone());
        let mut b = Fleet::new(spec);
        for w in 0..200 {
            let pa = a.window(w);
            let pb = b.window(w);
            assert_eq!(pa.len(), 3);
            assert_eq!(pa[0].stacks, pb[0].stacks);
        }
        // Deploys at 80 and 170 for each service.
        assert_eq!(a.injected.len(), 6);
        assert!(a.injected.iter().all(|i| i.window == 80 || i.window == 170));
        assert!(a.injected.iter().any(|i| i.change == Change::Regression));
        // Deep stacks and about the requested samples per window.
        let p = a.window(200);
        let depth = p[1].stacks.iter().map(|s| s.0.len()).max().unwrap();
        assert!(depth >= 10, "depth {depth}");
        let n: u64 = p.iter().flat_map(|p| p.stacks.iter().map(|s| s.1)).sum();
        assert!((5_000..30_000).contains(&n), "{n}");
    }

    #[test]
    fn poisson_has_the_right_mean() {
        let mut r = Rng::new(7);
        for lambda in [0.5, 3.0, 40.0, 500.0] {
            let n = 20_000;
            let mean = (0..n).map(|_| r.poisson(lambda) as f64).sum::<f64>() / n as f64;
            assert!((mean / lambda - 1.0).abs() < 0.05, "{lambda}: {mean}");
        }
    }
}
