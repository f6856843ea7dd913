//! A bound on the memory pushes in flight hold.
//!
//! A push holds its body, its decompressed bytes, the decoded profile and its rows until its
//! batch commits. Under a burst those add up: at 900 concurrent clients of 34 KB pushes the
//! ingester's RSS grew by about 18 bytes per body byte in flight (BENCHMARKS.md). So every
//! admitted push reserves [`EXPANSION`] × its body size from one process-wide budget, and gives
//! it back when it is answered; a push that does not fit is refused at once with 429 and
//! `Retry-After` (the SDKs retry), before it is decompressed or decoded. One push larger than
//! the whole budget is still admitted when nothing else is in flight, so a budget smaller than
//! the body limit cannot make a valid push impossible.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;

/// Bytes of memory reserved per body byte.
pub const EXPANSION: usize = 16;

/// The process-wide budget; cheap to share.
#[derive(Debug)]
pub struct InflightBudget {
    /// Most bytes reserved at once; `0`: unlimited.
    limit: usize,
    used: AtomicUsize,
    gauge: Option<IntGauge>,
}

impl InflightBudget {
    /// A budget of `limit` bytes (`0`: unlimited), reported in `gauge` if given.
    pub fn new(limit: usize, gauge: Option<IntGauge>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// No limit.
    pub fn unlimited() -> Arc<Self> {
        Self::new(0, None)
    }

    /// The limit in bytes (`0`: unlimited).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves memory for a push of `body_bytes`; `None` when it does not fit.
    pub fn try_acquire(self: &Arc<Self>, body_bytes: usize) -> Option<InflightPermit> {
        let cost = if self.limit == 0 {
            0
        } else {
            body_bytes.saturating_mul(EXPANSION).clamp(1, self.limit)
        };
        if cost > 0 {
            let mut used = self.used.load(Ordering::Relaxed);
            loop {
                if used > 0 && used + cost > self.limit {
                    return None;
                }
                match self.used.compare_exchange_weak(
                    used,
                    used + cost,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => used = now,
                }
            }
            if let Some(g) = &self.gauge {
                g.add(cost as i64);
            }
        }
        Some(InflightPermit {
            budget: self.clone(),
            cost,
        })
    }
}

/// Memory reserved for one push; given back on drop.
#[derive(Debug)]
pub struct InflightPermit {
    budget: Arc<InflightBudget>,
    cost: usize,
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        if self.cost > 0 {
            self.budget.used.fetch_sub(self.cost, Ordering::AcqRel);
            if let Some(g) = &self.budget.gauge {
                g.sub(self.cost as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_beyond_the_budget_wait_for_earlier_ones() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let b = InflightBudget::new(1000, Some(gauge.clone()));
        let first = b.try_acquire(40).expect("640 of 1000");
        assert_eq!(b.used(), 640);
        assert!(b.try_acquire(40).is_none(), "1280 > 1000");
        let small = b.try_acquire(20).expect("960 of 1000");
        assert_eq!(gauge.get(), 960);
        drop(first);
        assert_eq!(b.used(), 320);
        let again = b.try_acquire(40).expect("fits again");
        drop((small, again));
        assert_eq!(b.used(), 0);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn one_push_larger_than_the_budget_passes_alone() {
        let b = InflightBudget::new(1000, None);
        let big = b
            .try_acquire(1 << 20)
            .expect("alone, a big push is admitted");
        assert_eq!(b.used(), 1000);
        assert!(b.try_acquire(1).is_none());
        drop(big);
        assert!(b.try_acquire(1).is_some());
    }

    #[test]
    fn unlimited_never_refuses() {
        let b = InflightBudget::unlimited();
        let permits: Vec<_> = (0..100).map(|_| b.try_acquire(1 << 30).unwrap()).collect();
        assert_eq!(b.used(), 0);
        drop(permits);
    }
}
