//! What the detector keeps per series: interned functions and stacks of each service, and per
//! evaluation window the self and inclusive weight of every function.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Identifies one tested series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Tenant.
    pub tenant: String,
    /// Service.
    pub service: String,
    /// Profile type ID.
    pub profile_type: String,
    /// Values of the configured grouping labels, in configuration order.
    pub groups: Vec<Option<String>>,
}

impl SeriesKey {
    /// The service this series belongs to.
    pub fn service_key(&self) -> (String, String) {
        (self.tenant.clone(), self.service.clone())
    }
}

/// Function names of one service, interned.
#[derive(Debug, Default)]
pub struct Functions {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Functions {
    /// The ID of `name`, interning it on first sight.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.index.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.index.insert(name, id);
        id
    }

    /// The ID of `name`, if interned.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The name of `id`.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", |n| n)
    }
}

/// The functions of each known stack of one service.
#[derive(Debug, Default)]
pub struct ServiceStacks {
    /// Interned function names.
    pub functions: Functions,
    /// Stack ID → distinct functions, leaf first.
    pub stacks: HashMap<i64, Arc<[u32]>>,
}

impl ServiceStacks {
    /// Remembers a stack given its distinct functions, leaf first.
    pub fn insert(&mut self, id: i64, functions: &[&str]) {
        let ids: Vec<u32> = functions.iter().map(|f| self.functions.intern(f)).collect();
        self.stacks.insert(id, ids.into());
    }

    /// Whether `below` appears under `above` (nearer the leaf) in some stack, weighted by
    /// nothing: a yes/no over all known stacks.
    pub fn is_below(&self, below: u32, above: u32) -> bool {
        self.stacks.values().any(|s| {
            let b = s.iter().position(|f| *f == below);
            let a = s.iter().position(|f| *f == above);
            matches!((b, a), (Some(b), Some(a)) if b < a)
        })
    }
}

impl ServiceStacks {
    /// `below` appears under `above` in some stack and never above it: a library function
    /// called both under and over another explains neither's change.
    pub fn strictly_below(&self, below: u32, above: u32) -> bool {
        self.is_below(below, above) && !self.is_below(above, below)
    }
}

/// A function's weight in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FnWeight {
    /// Weight of samples whose leaf is the function.
    pub self_w: f64,
    /// Weight of samples with the function anywhere in the stack (counted once per stack).
    pub total_w: f64,
    /// The heaviest stack through the function, and its weight.
    pub top_stack: i64,
    top_stack_w: f64,
}

/// Function weights of one set of samples (a window, or one version's part of a window).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    /// Total weight.
    pub total: f64,
    /// Per function.
    pub functions: HashMap<u32, FnWeight>,
}

impl Weights {
    /// Adds `weight` of stack `id` with `functions` (distinct, leaf first).
    pub fn add(&mut self, id: i64, functions: &[u32], weight: f64) {
        self.total += weight;
        for (i, f) in functions.iter().enumerate() {
            let e = self.functions.entry(*f).or_default();
            if i == 0 {
                e.self_w += weight;
            }
            e.total_w += weight;
            if weight > e.top_stack_w {
                e.top_stack_w = weight;
                e.top_stack = id;
            }
        }
    }

    /// Self or total weight of `f`.
    pub fn get(&self, f: u32, metric: Metric) -> f64 {
        self.functions.get(&f).map_or(0.0, |w| match metric {
            Metric::SelfWeight => w.self_w,
            Metric::Total => w.total_w,
        })
    }
}

/// Which weight of a function is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Samples whose leaf is the function.
    SelfWeight,
    /// Samples with the function anywhere on the stack.
    Total,
}

impl Metric {
    /// Column value.
    pub fn name(self) -> &'static str {
        match self {
            Self::SelfWeight => "self",
            Self::Total => "total",
        }
    }
}

/// One evaluation window of one series.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// All samples of the window.
    pub all: Weights,
    /// Per `version` label value (`None`: no version label), only filled when the window has
    /// more than one version; otherwise `versions` names the single one.
    pub by_version: BTreeMap<Option<Arc<str>>, Weights>,
    /// Total weight per version.
    pub versions: BTreeMap<Option<Arc<str>>, f64>,
}

impl Window {
    /// The version carrying most of the window's weight.
    pub fn dominant_version(&self) -> Option<Arc<str>> {
        self.versions
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .and_then(|(v, _)| v.clone())
    }
}

/// Per window index, the windows of one series that have data.
pub type History = BTreeMap<i64, Window>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_count_self_at_the_leaf_and_total_once_per_stack() {
        let mut s = ServiceStacks::default();
        s.insert(1, &["leaf", "mid", "main"]);
        s.insert(2, &["mid", "main"]);
        let mut w = Weights::default();
        w.add(1, &s.stacks[&1].clone(), 3.0);
        w.add(2, &s.stacks[&2].clone(), 5.0);
        let leaf = s.functions.intern("leaf");
        let mid = s.functions.intern("mid");
        let main = s.functions.intern("main");
        assert_eq!(w.total, 8.0);
        assert_eq!(w.get(leaf, Metric::SelfWeight), 3.0);
        assert_eq!(w.get(mid, Metric::SelfWeight), 5.0);
        assert_eq!(w.get(mid, Metric::Total), 8.0);
        assert_eq!(w.get(main, Metric::Total), 8.0);
        assert_eq!(w.functions[&mid].top_stack, 2);
        assert!(s.is_below(leaf, main));
        assert!(!s.is_below(main, leaf));
    }
}
