//! The share test: one series, one evaluation window, against its baselines.
//!
//! For each function and each of its two weights (self, total) the test compares the share
//! of the window's total weight in the last `persistence` windows (pooled) with the baseline
//! share, under a quasi-binomial model whose dispersion is estimated robustly from the
//! baseline's window-to-window variation. See docs/DETECTION.md for the method.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::series::{History, Metric, ServiceStacks, Weights, Window};
use crate::stats::{MAD_TO_SD, bh_threshold, mad, median, two_sided_p};

/// Statistical settings.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Rolling baseline length, in windows.
    pub baseline_windows: i64,
    /// Fewest baseline windows with data before a series is tested.
    pub min_baseline_windows: usize,
    /// A change must hold for this many consecutive windows (they are tested pooled, and each
    /// must move the same way).
    pub persistence: i64,
    /// Benjamini–Hochberg false discovery rate over all tests of one series and window.
    pub fdr: f64,
    /// Smallest reported change of a share, absolute (0.002 = 0.2 percentage points).
    pub min_abs: f64,
    /// Smallest reported change of a share, relative to the baseline share.
    pub min_rel: f64,
    /// A change offset by another function's opposite change of this fraction to its inverse
    /// (weight moved, total unchanged) is a cost shift, not a regression.
    pub shift_ratio: f64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            baseline_windows: 60,
            min_baseline_windows: 20,
            persistence: 2,
            fdr: 2e-5,
            min_abs: 0.002,
            min_rel: 0.1,
            shift_ratio: 0.6,
        }
    }
}

/// What a finding was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BaselineKind {
    /// The series' recent past.
    Rolling,
    /// The recent past, and the same time a day and/or a week earlier.
    RollingSeasonal,
    /// The previous version's samples in the same windows.
    Version,
}

impl BaselineKind {
    /// Column value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rolling => "rolling",
            Self::RollingSeasonal => "rolling+seasonal",
            Self::Version => "version",
        }
    }
}

/// Direction and nature of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The function's share grew.
    Regression,
    /// The function's share shrank.
    Improvement,
    /// Weight moved between functions with the total unchanged.
    Shift,
}

impl Kind {
    /// Column value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::Improvement => "improvement",
            Self::Shift => "shift",
        }
    }
}

/// A significant change of one function's share.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Function ID (see [`ServiceStacks`]).
    pub function: u32,
    /// Which weight is reported.
    pub metric: Metric,
    /// Regression, improvement or shift.
    pub kind: Kind,
    /// What it was compared with.
    pub baseline: BaselineKind,
    /// Baseline share.
    pub baseline_share: f64,
    /// Share in the evaluated windows.
    pub current_share: f64,
    /// z score.
    pub score: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Evaluated windows, first and last index.
    pub current: (i64, i64),
    /// Baseline windows, first and last index.
    pub baseline_range: (i64, i64),
    /// Dominant version of the baseline (or the previous version).
    pub version_before: Option<Arc<str>>,
    /// Dominant version of the evaluated windows (or the new version).
    pub version_after: Option<Arc<str>>,
    /// The heaviest stack through the function in the evaluated windows.
    pub top_stack: i64,
}

/// Each of the persistence windows on its own must show the change at least this clearly
/// (|z|), so that one strong window cannot carry a quiet one.
const PER_WINDOW_Z: f64 = 1.5;

/// One (function, metric) test.
#[derive(Debug, Clone)]
struct Test {
    function: u32,
    metric: Metric,
    base: f64,
    current: f64,
    z: f64,
    p: f64,
    /// Every evaluated window moved the same way, by at least half the minimum effect.
    persistent: bool,
}

impl Test {
    fn delta(&self) -> f64 {
        self.current - self.base
    }
}

/// Whether finding `f` also stands against `past` windows (the same windows a day or a week
/// earlier): the pooled shares differ the same way, by the minimum effect, with |z| ≥ 3.
pub fn holds_against(
    cfg: &DetectConfig,
    past: &[&Weights],
    current: &[&Weights],
    disp: &Dispersions,
    f: &Finding,
) -> bool {
    let wp: f64 = past.iter().map(|w| w.total).sum();
    let wc: f64 = current.iter().map(|w| w.total).sum();
    if wp <= 0.0 || wc <= 0.0 {
        return true;
    }
    let share = |ws: &[&Weights], total: f64| {
        ws.iter().map(|w| w.get(f.function, f.metric)).sum::<f64>() / total
    };
    let (b, c) = (share(past, wp), share(current, wc));
    let z = share_z(c, wc, b, wp, disp.phi(f.function, f.metric), 1.0);
    let d = c - b;
    let same_way = d.signum() == (f.current_share - f.baseline_share).signum();
    same_way && d.abs() >= cfg.min_abs && z.abs() >= 3.0
}

/// Robust dispersion of one function's shares over baseline windows, in units of the
/// binomial variance per unit of weight: (1.4826 · MAD of the standardized residuals)².
fn dispersion(shares: &[(f64, f64)], center: f64) -> f64 {
    let c = center.max(1e-12);
    let resid: Vec<f64> = shares
        .iter()
        .map(|(p, total)| (p - center) / (c * (1.0 - c).max(1e-12) / total).sqrt())
        .collect();
    let center_r = median(&mut resid.clone());
    let s = MAD_TO_SD * mad(&resid, center_r);
    s * s
}

/// Pooled two-sample share test: z of `current` (over weight `wc`) against `base` (over
/// weight `wb`, `base_factor` inflating its variance, e.g. π/2 for a median).
///
/// For functions with few samples the normal approximation overstates how unlikely a jump
/// is (a Poisson count of mean 4.5 reaches 12 about once in 300 windows, not once in
/// millions), so the score is capped by the variance-stabilized one: weights divided by the
/// dispersion are effective counts, and `2(√(x+3/8) − √(λ+3/8))` is close to normal in the
/// tails even for small `λ`.
fn share_z(current: f64, wc: f64, base: f64, wb: f64, phi: f64, base_factor: f64) -> f64 {
    let pooled = (current * wc + base * wb) / (wc + wb);
    let var = phi * pooled * (1.0 - pooled).max(0.0) * (1.0 / wc + base_factor / wb);
    if var <= 0.0 {
        return if current == base {
            0.0
        } else {
            f64::INFINITY.copysign(current - base)
        };
    }
    let z = (current - base) / var.sqrt();
    // Few samples: cap by the variance-stabilized score of the effective counts.
    let (x, lambda) = (current * wc / phi, base * wc / phi);
    let z_counts =
        2.0 * ((x + 0.375).sqrt() - (lambda + 0.375).sqrt()) / (1.0 + base_factor * wc / wb).sqrt();
    if z_counts.signum() == z.signum() {
        z.signum() * z.abs().min(z_counts.abs())
    } else {
        0.0
    }
}

/// The rolling test of window `t` of one series. Returns the findings whose condition holds
/// at `t`, before suppression of repeats. `count_unit`: weights are sample counts (the
/// binomial variance is then a floor for the dispersion).
pub fn evaluate_rolling(
    cfg: &DetectConfig,
    hist: &History,
    stacks: &ServiceStacks,
    t: i64,
    count_unit: bool,
) -> (Vec<Finding>, Dispersions) {
    let k = cfg.persistence.max(1);
    let current: Vec<&Window> = (t - k + 1..=t).filter_map(|w| hist.get(&w)).collect();
    if current.len() as i64 != k || current.iter().any(|w| w.all.total <= 0.0) {
        return (Vec::new(), Dispersions::default());
    }
    let b_first = t - k - cfg.baseline_windows + 1;
    let b_last = t - k;
    let baseline: Vec<&Window> = hist
        .range(b_first..=b_last)
        .map(|(_, w)| w)
        .filter(|w| w.all.total > 0.0)
        .collect();
    if baseline.len() < cfg.min_baseline_windows {
        return (Vec::new(), Dispersions::default());
    }
    let cur_parts: Vec<&Weights> = current.iter().map(|w| &w.all).collect();
    let base_parts: Vec<&Weights> = baseline.iter().map(|w| &w.all).collect();
    let disp = Dispersions::estimate(&base_parts, cfg.min_abs, count_unit);
    // A deploy inside the evaluated windows: wait until they all run the new version, so a
    // change is dated from the deploy, not from a noisy window before it.
    let first_version = current[0].dominant_version();
    if current
        .iter()
        .any(|w| w.dominant_version() != first_version)
    {
        return (Vec::new(), disp);
    }
    let tests = share_tests(cfg, &base_parts, &cur_parts, &disp, true);
    let version_before = dominant(&baseline);
    let version_after = dominant(&current);
    let findings = select(cfg, &tests, stacks, &cur_parts)
        .into_iter()
        .map(|(test, kind)| Finding {
            function: test.function,
            metric: test.metric,
            kind,
            baseline: BaselineKind::Rolling,
            baseline_share: test.base,
            current_share: test.current,
            score: test.z,
            p_value: test.p,
            current: (t - k + 1, t),
            baseline_range: (b_first, b_last),
            version_before: version_before.clone(),
            version_after: version_after.clone(),
            top_stack: top_stack(&cur_parts, test.function),
        })
        .collect();
    (findings, disp)
}

/// The deployment-aware test of window `t`: when the evaluated windows hold two versions, the
/// newest version's samples against the previous version's over the same windows (since the
/// new version appeared, at most one baseline length back).
pub fn evaluate_version(
    cfg: &DetectConfig,
    hist: &History,
    stacks: &ServiceStacks,
    t: i64,
    disp: &Dispersions,
) -> Vec<Finding> {
    let k = cfg.persistence.max(1);
    let Some(last) = hist.get(&t) else {
        return Vec::new();
    };
    if last.by_version.len() < 2 {
        return Vec::new();
    }
    // The newest version: the one whose first window with data is latest.
    let first = t - cfg.baseline_windows + 1;
    let mut first_seen: HashMap<Option<Arc<str>>, i64> = HashMap::new();
    for (w, win) in hist.range(first - cfg.baseline_windows..=t) {
        for v in win.versions.keys() {
            first_seen.entry(v.clone()).or_insert(*w);
        }
    }
    let Some(new) = last
        .by_version
        .keys()
        .max_by_key(|v| (first_seen.get(*v).copied().unwrap_or(t), (*v).clone()))
        .cloned()
    else {
        return Vec::new();
    };
    let Some(old) = last
        .by_version
        .iter()
        .filter(|(v, _)| **v != new)
        .max_by(|a, b| a.1.total.total_cmp(&b.1.total))
        .map(|(v, _)| v.clone())
    else {
        return Vec::new();
    };
    let start = first.max(first_seen.get(&new).copied().unwrap_or(t));
    let mut new_parts = Vec::new();
    let mut old_parts = Vec::new();
    for w in start..=t {
        let (Some(n), Some(o)) = (
            hist.get(&w).and_then(|x| x.by_version.get(&new)),
            hist.get(&w).and_then(|x| x.by_version.get(&old)),
        ) else {
            continue;
        };
        if n.total > 0.0 && o.total > 0.0 {
            new_parts.push(n);
            old_parts.push(o);
        }
    }
    if (new_parts.len() as i64) < k {
        return Vec::new();
    }
    let tests = share_tests_paired(cfg, &old_parts, &new_parts, disp, k as usize);
    select(cfg, &tests, stacks, &new_parts)
        .into_iter()
        .map(|(test, kind)| Finding {
            function: test.function,
            metric: test.metric,
            kind,
            baseline: BaselineKind::Version,
            baseline_share: test.base,
            current_share: test.current,
            score: test.z,
            p_value: test.p,
            current: (start, t),
            baseline_range: (start, t),
            version_before: old.clone(),
            version_after: new.clone(),
            top_stack: top_stack(&new_parts, test.function),
        })
        .collect()
}

fn dominant(windows: &[&Window]) -> Option<Arc<str>> {
    let mut by: HashMap<Option<Arc<str>>, f64> = HashMap::new();
    for w in windows {
        for (v, t) in &w.versions {
            *by.entry(v.clone()).or_default() += t;
        }
    }
    by.into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .and_then(|(v, _)| v)
}

fn top_stack(parts: &[&Weights], f: u32) -> i64 {
    let mut by: HashMap<i64, f64> = HashMap::new();
    for p in parts {
        if let Some(w) = p.functions.get(&f) {
            *by.entry(w.top_stack).or_default() += w.total_w;
        }
    }
    by.into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(s, _)| s)
}

/// Dispersion estimates of one baseline: per (function, metric), and the series' median as a
/// floor (a single function's MAD over a few dozen windows can come out too small by chance).
#[derive(Debug, Clone, Default)]
pub struct Dispersions {
    per: HashMap<(u32, Metric), f64>,
    series: f64,
    floor: f64,
}

impl Dispersions {
    fn estimate(base: &[&Weights], min_abs: f64, count_unit: bool) -> Self {
        let mut per = HashMap::new();
        let mut big = Vec::new();
        let wb: f64 = base.iter().map(|w| w.total).sum();
        for (f, metric) in candidates(base, &[], min_abs) {
            let shares: Vec<(f64, f64)> = base
                .iter()
                .map(|w| (w.get(f, metric) / w.total, w.total))
                .collect();
            let m = median(&mut shares.iter().map(|s| s.0).collect::<Vec<_>>());
            let phi = dispersion(&shares, m.max(0.5 / wb));
            if m >= 0.01 {
                big.push(phi);
            }
            per.insert((f, metric), phi);
        }
        let series = median(&mut big);
        Self {
            per,
            series,
            floor: if count_unit { 1.0 } else { 0.0 },
        }
    }

    /// The dispersion used for `(f, metric)`.
    pub fn phi(&self, f: u32, metric: Metric) -> f64 {
        let own = self.per.get(&(f, metric)).copied().unwrap_or(0.0);
        own.max(self.series).max(self.floor).max(1e-12)
    }
}

/// (function, metric) pairs whose share reaches `min_abs` somewhere in `a` or `b`: the only
/// ones whose change can reach the minimum effect.
fn candidates(a: &[&Weights], b: &[&Weights], min_abs: f64) -> Vec<(u32, Metric)> {
    let mut out: HashSet<(u32, Metric)> = HashSet::new();
    for w in a.iter().chain(b) {
        for (f, fw) in &w.functions {
            // Half the minimum effect: such functions cannot be reported, but they can be the
            // other side of a cost shift.
            if fw.total_w / w.total >= min_abs / 2.0 {
                out.insert((*f, Metric::Total));
            }
            if fw.self_w / w.total >= min_abs / 2.0 {
                out.insert((*f, Metric::SelfWeight));
            }
        }
    }
    let mut v: Vec<_> = out.into_iter().collect();
    v.sort();
    v
}

/// Rolling tests: pooled current windows against the median baseline share.
fn share_tests(
    cfg: &DetectConfig,
    base: &[&Weights],
    cur: &[&Weights],
    disp: &Dispersions,
    median_base: bool,
) -> Vec<Test> {
    let wb: f64 = base.iter().map(|w| w.total).sum();
    let wc: f64 = cur.iter().map(|w| w.total).sum();
    let factor = if median_base {
        std::f64::consts::FRAC_PI_2
    } else {
        1.0
    };
    candidates(base, cur, cfg.min_abs)
        .into_iter()
        .map(|(f, metric)| {
            let mut shares: Vec<f64> = base.iter().map(|w| w.get(f, metric) / w.total).collect();
            let m = median(&mut shares);
            let c = cur.iter().map(|w| w.get(f, metric)).sum::<f64>() / wc;
            let z = share_z(c, wc, m, wb, disp.phi(f, metric), factor);
            let d = c - m;
            let phi = disp.phi(f, metric);
            let persistent = cur.iter().all(|w| {
                let dw = w.get(f, metric) / w.total - m;
                let zw = share_z(w.get(f, metric) / w.total, w.total, m, wb, phi, factor);
                dw.signum() == d.signum()
                    && dw.abs() >= cfg.min_abs / 2.0
                    && zw.abs() >= PER_WINDOW_Z
            });
            Test {
                function: f,
                metric,
                base: m,
                current: c,
                z,
                p: two_sided_p(z),
                persistent,
            }
        })
        .collect()
}

/// Version tests: the new version's pooled share against the old version's over the same
/// windows; the last `k` windows must each move the same way.
fn share_tests_paired(
    cfg: &DetectConfig,
    old: &[&Weights],
    new: &[&Weights],
    disp: &Dispersions,
    k: usize,
) -> Vec<Test> {
    let wo: f64 = old.iter().map(|w| w.total).sum();
    let wn: f64 = new.iter().map(|w| w.total).sum();
    candidates(old, new, cfg.min_abs)
        .into_iter()
        .map(|(f, metric)| {
            let b = old.iter().map(|w| w.get(f, metric)).sum::<f64>() / wo;
            let c = new.iter().map(|w| w.get(f, metric)).sum::<f64>() / wn;
            let z = share_z(c, wn, b, wo, disp.phi(f, metric), 1.0);
            let d = c - b;
            let n = old.len();
            let phi = disp.phi(f, metric);
            let persistent = (n.saturating_sub(k)..n).all(|i| {
                let (cn, co) = (
                    new[i].get(f, metric) / new[i].total,
                    old[i].get(f, metric) / old[i].total,
                );
                let zw = share_z(cn, new[i].total, co, old[i].total, phi, 1.0);
                let dw = cn - co;
                dw.signum() == d.signum()
                    && dw.abs() >= cfg.min_abs / 2.0
                    && zw.abs() >= PER_WINDOW_Z
            });
            Test {
                function: f,
                metric,
                base: b,
                current: c,
                z,
                p: two_sided_p(z),
                persistent,
            }
        })
        .collect()
}

/// From all tests of one series and window to the reported findings: BH over all tests,
/// minimum effect, persistence, then one finding per root cause, then the cost-shift filter.
fn select(
    cfg: &DetectConfig,
    tests: &[Test],
    stacks: &ServiceStacks,
    _cur: &[&Weights],
) -> Vec<(Test, Kind)> {
    // Only tests that can reach the minimum effect count towards the false discovery rate
    // (the others are there as possible partners of a cost shift).
    let p: Vec<f64> = tests
        .iter()
        .filter(|t| t.base.max(t.current) >= cfg.min_abs)
        .map(|t| t.p)
        .collect();
    let Some(cut) = bh_threshold(&p, cfg.fdr) else {
        return Vec::new();
    };
    let meaningful = |t: &Test| {
        let d = t.delta().abs();
        t.p <= cut && t.persistent && d >= cfg.min_abs && d >= cfg.min_rel * t.base.max(1e-12)
    };
    // Per function: the total-weight test (for ancestry), and the reported test (self if
    // significant, else total).
    let total: HashMap<u32, &Test> = tests
        .iter()
        .filter(|t| t.metric == Metric::Total)
        .map(|t| (t.function, t))
        .collect();
    let mut chosen: HashMap<u32, &Test> = HashMap::new();
    for t in tests.iter().filter(|t| meaningful(t)) {
        let e = chosen.entry(t.function).or_insert(t);
        if t.metric == Metric::SelfWeight {
            *e = t;
        }
    }
    let delta_total =
        |f: u32, fallback: &Test| total.get(&f).map_or(fallback.delta(), |t| t.delta());
    let mut out = Vec::new();
    // Share gained by the regressions found: every other function's share shrinks by its own
    // share times this, which is no improvement of its own.
    let mut gained = 0.0;
    for up in [true, false] {
        let side: Vec<(u32, &Test)> = chosen
            .iter()
            .filter(|(_, t)| (t.delta() > 0.0) == up)
            .map(|(f, t)| (*f, *t))
            .collect();
        // A caller whose change a function below it explains (half or more) is not the cause.
        let roots: Vec<(u32, &Test)> = side
            .iter()
            .filter(|(g, gt)| {
                let dg = delta_total(*g, gt).abs();
                !side.iter().any(|(h, ht)| {
                    h != g && delta_total(*h, ht).abs() >= 0.5 * dg && stacks.strictly_below(*h, *g)
                })
            })
            .copied()
            .collect();
        // Functions under a remaining cause are part of it: one root cause, one finding.
        let mut kept: Vec<(u32, &Test)> = roots
            .iter()
            .filter(|(h, _)| {
                !roots
                    .iter()
                    .any(|(g, _)| g != h && stacks.strictly_below(*h, *g))
            })
            .copied()
            .collect();
        kept.sort_by_key(|(f, _)| *f);
        if !up {
            let se = |t: &Test| {
                if t.z != 0.0 {
                    (t.delta() / t.z).abs()
                } else {
                    0.0
                }
            };
            kept.retain(|(f, t)| {
                let expected = -total.get(f).map_or(t.base, |x| x.base) * gained;
                let own = delta_total(*f, t) - expected;
                own.abs() > 3.0 * se(t) && own.abs() >= cfg.min_abs
            });
        }
        for (f, t) in kept {
            let kind = if is_shift(cfg, f, t, &total, stacks, delta_total(f, t)) {
                Kind::Shift
            } else if up {
                gained += delta_total(f, t);
                Kind::Regression
            } else {
                Kind::Improvement
            };
            out.push((t.clone(), kind));
        }
    }
    out
}

/// Whether `f`'s change is offset by an opposite change of another, unrelated function, with
/// the rest of the program unchanged: weights relative to everything outside the two moved
/// by (nearly) opposite amounts.
fn is_shift(
    cfg: &DetectConfig,
    f: u32,
    ft: &Test,
    total: &HashMap<u32, &Test>,
    stacks: &ServiceStacks,
    df: f64,
) -> bool {
    let Some(ftot) = total.get(&f) else {
        return false;
    };
    let _ = ft;
    total.iter().any(|(g, gt)| {
        // The partner must itself be a clear change the other way, of about the same size
        // (checked below): a noisy big function dipping by chance, or shrinking only because
        // another function grew, must not explain a real regression away.
        let vanished = gt.current == 0.0 && gt.base > 0.0;
        if *g == f || gt.delta().signum() == df.signum() || (gt.z.abs() < 2.0 && !vanished) {
            return false;
        }
        let rb = 1.0 - ftot.base - gt.base;
        let rc = 1.0 - ftot.current - gt.current;
        if rb <= 0.02 || rc <= 0.02 {
            return false;
        }
        let a_f = ftot.current / rc - ftot.base / rb;
        let a_g = gt.current / rc - gt.base / rb;
        let ratio = -a_g / a_f;
        // A partner that lost (or gained) a large part of its own weight: a function that
        // shrinks only because another grew loses just that growth's fraction.
        let relative = gt.delta().abs() / gt.base.max(gt.current).max(1e-12);
        // A rename (one name appears as another vanishes) may differ more in size: the new
        // name is reported when noise pushed it over the threshold, so it reads high.
        let renamed = ftot.base.min(ftot.current) < 0.1 * ftot.base.max(ftot.current)
            && gt.base.min(gt.current) < 0.1 * gt.base.max(gt.current);
        let low = if renamed {
            cfg.shift_ratio * cfg.shift_ratio
        } else {
            cfg.shift_ratio
        };
        // A vanished name is evidence in itself; a partial move must be clearly significant.
        let clear = renamed || gt.z.abs() >= 3.0;
        let offsets = clear && relative >= 0.3 && ratio >= low && ratio <= 1.0 / low;
        offsets && !stacks.is_below(*g, f) && !stacks.is_below(f, *g)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Rng;

    /// Stacks (leaf-first distinct functions) of a small service.
    fn service() -> ServiceStacks {
        let mut s = ServiceStacks::default();
        s.insert(1, &["db.query", "handler", "http.serve", "main"]);
        s.insert(2, &["json.encode", "handler", "http.serve", "main"]);
        s.insert(3, &["handler", "http.serve", "main"]);
        s.insert(4, &["gc", "main"]);
        s.insert(5, &["log.write", "http.serve", "main"]);
        s.insert(6, &["json.encode_v2", "handler", "http.serve", "main"]);
        s
    }

    /// One window with Poisson counts around `mix` (stack ID, expected samples), split
    /// between versions by `canary` (fraction of samples with version "2").
    fn window(
        s: &ServiceStacks,
        rng: &mut Rng,
        mix: &[(i64, f64)],
        canary: Option<(f64, &[(i64, f64)])>,
    ) -> Window {
        let mut w = Window::default();
        let mut part = |version: &str, mix: &[(i64, f64)], scale: f64, w: &mut Window| {
            let v: Option<Arc<str>> = Some(version.into());
            for (id, mean) in mix {
                let c = rng.poisson(mean * scale) as f64;
                if c > 0.0 {
                    w.all.add(*id, &s.stacks[id], c);
                    w.by_version
                        .entry(v.clone())
                        .or_default()
                        .add(*id, &s.stacks[id], c);
                    *w.versions.entry(v.clone()).or_default() += c;
                }
            }
        };
        match canary {
            None => part("1", mix, 1.0, &mut w),
            Some((frac, new_mix)) => {
                part("1", mix, 1.0 - frac, &mut w);
                part("2", new_mix, frac, &mut w);
            }
        }
        if w.by_version.len() < 2 {
            w.by_version.clear();
        }
        w
    }

    const BASE: [(i64, f64); 5] = [(1, 2000.0), (2, 600.0), (3, 1200.0), (4, 700.0), (5, 500.0)];

    fn run(
        s: &ServiceStacks,
        seed: u64,
        after: &[(i64, f64)],
        change_at: i64,
        windows: i64,
    ) -> Vec<(i64, Finding)> {
        let cfg = DetectConfig::default();
        let mut rng = Rng::new(seed);
        let mut h = History::new();
        let mut out = Vec::new();
        for t in 0..windows {
            let mix = if t >= change_at { after } else { &BASE[..] };
            h.insert(t, window(s, &mut rng, mix, None));
            let (f, d) = evaluate_rolling(&cfg, &h, s, t, true);
            out.extend(f.into_iter().map(|f| (t, f)));
            out.extend(
                evaluate_version(&cfg, &h, s, t, &d)
                    .into_iter()
                    .map(|f| (t, f)),
            );
        }
        out
    }

    #[test]
    fn noise_alone_raises_nothing() {
        let s = service();
        for seed in 0..5 {
            let found = run(&s, seed, &BASE, i64::MAX, 200);
            assert!(found.is_empty(), "seed {seed}: {found:?}");
        }
    }

    #[test]
    fn a_heavier_leaf_is_one_regression_named_after_the_leaf() {
        let s = service();
        // json.encode +250 samples (5 % of 5,000) from window 80.
        let after = [(1, 2000.0), (2, 850.0), (3, 1200.0), (4, 700.0), (5, 500.0)];
        let found = run(&s, 7, &after, 80, 90);
        let first = found.iter().map(|(t, _)| *t).min().expect("detected");
        // Two changed windows; or one, when the window before moved the same way by chance.
        assert!((80..=81).contains(&first), "reported at {first}");
        let at_first: Vec<&Finding> = found
            .iter()
            .filter(|(t, _)| *t == first)
            .map(|(_, f)| f)
            .collect();
        let regressions: Vec<&str> = at_first
            .iter()
            .filter(|f| f.kind == Kind::Regression)
            .map(|f| s.functions.name(f.function))
            .collect();
        assert_eq!(regressions, ["json.encode"], "{at_first:?}");
        // Other shares shrink only because json.encode grew: not improvements.
        assert!(
            at_first.iter().all(|f| f.kind == Kind::Regression),
            "{at_first:?}"
        );
        assert_eq!(at_first[0].current, (first - 1, first));
    }

    #[test]
    fn a_one_window_blip_does_not_alert() {
        let s = service();
        let cfg = DetectConfig::default();
        let mut rng = Rng::new(3);
        let mut h = History::new();
        let blip = [
            (1, 2000.0),
            (2, 1500.0),
            (3, 1200.0),
            (4, 700.0),
            (5, 500.0),
        ];
        for t in 0..100 {
            let mix = if t == 80 { &blip[..] } else { &BASE[..] };
            h.insert(t, window(&s, &mut rng, mix, None));
            let (f, _) = evaluate_rolling(&cfg, &h, &s, t, true);
            assert!(f.is_empty(), "window {t}: {f:?}");
        }
    }

    #[test]
    fn a_renamed_function_is_a_shift() {
        let s = service();
        // json.encode's weight moves to json.encode_v2.
        let after = [(1, 2000.0), (6, 600.0), (3, 1200.0), (4, 700.0), (5, 500.0)];
        let found = run(&s, 11, &after, 80, 90);
        assert!(!found.is_empty());
        for (_, f) in &found {
            assert_eq!(
                f.kind,
                Kind::Shift,
                "{} {f:?}",
                s.functions.name(f.function)
            );
        }
    }

    #[test]
    fn a_canary_is_compared_with_the_previous_version() {
        let s = service();
        let cfg = DetectConfig::default();
        let mut rng = Rng::new(5);
        let mut h = History::new();
        // From window 70 a 20 % canary whose json.encode is twice as heavy.
        let heavy = [
            (1, 2000.0),
            (2, 1200.0),
            (3, 1200.0),
            (4, 700.0),
            (5, 500.0),
        ];
        let mut version = Vec::new();
        for t in 0..90 {
            let canary = (t >= 70).then_some((0.2, &heavy[..]));
            h.insert(t, window(&s, &mut rng, &BASE, canary));
            let (_, d) = evaluate_rolling(&cfg, &h, &s, t, true);
            version.extend(
                evaluate_version(&cfg, &h, &s, t, &d)
                    .into_iter()
                    .map(|f| (t, f)),
            );
        }
        let (t, f) = version.first().expect("the canary's regression is found");
        assert!(*t <= 72, "found at {t}");
        assert_eq!(s.functions.name(f.function), "json.encode");
        assert_eq!(f.kind, Kind::Regression);
        assert_eq!(f.baseline, BaselineKind::Version);
        assert_eq!(f.version_before.as_deref(), Some("1"));
        assert_eq!(f.version_after.as_deref(), Some("2"));
    }
}
