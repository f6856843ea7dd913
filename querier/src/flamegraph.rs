//! Flame graphs: a call tree built from weighted stacks, encoded in Pyroscope's
//! `querier.v1` "level" encoding (what Grafana's flame graph panel reads).
//!
//! ```text
//!  add(leaf-first stack, value) ──▶ FlameTree ──▶ to_flamegraph(max_nodes) ──▶ FlameGraph
//!                                      │    └───▶ diff(left, right, max_nodes) ──▶ FlameGraphDiff
//!                                      └── function_totals() (per-function self / total)
//!  FlameGraph ──▶ decode() ──▶ [(root-first stack, self value)]   (tests, SVG renderers)
//! ```
//!
//! Level encoding: `levels[d]` holds the nodes at depth `d` (level 0 is the root,
//! named `"total"`), left to right, as 4-tuples `[x_offset, total, self, name_index]`.
//! `x_offset` is relative to the end (absolute x + total) of the previous node on the
//! same level, or to 0 for the first node of a level. A diff carries 7-tuples
//! `[left_offset, left_total, left_self, right_offset, right_total, right_self,
//! name_index]` over the union of both trees, each side in its own coordinates.
//!
//! Children are ordered by function name; the synthetic `other` node that stands for
//! children dropped by `max_nodes` truncation always comes last among its siblings.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use stackdrift_proto::querier::v1::{FlameGraph, FlameGraphDiff, Level};

/// Name of the root node (index 0 of every names table).
pub const ROOT_NAME: &str = "total";

/// Name of the synthetic node that replaces children dropped by `max_nodes`.
pub const OTHER_NAME: &str = "other";

/// Index of the root node in [`FlameTree::nodes`].
const ROOT: u32 = 0;

/// One node of a [`FlameTree`].
#[derive(Debug, Clone)]
struct Node {
    /// Interned function name (unused for the root).
    name: u32,
    /// Value of stacks ending exactly at this node.
    self_value: i64,
    /// Value of all stacks passing through this node (self + children totals).
    total: i64,
    /// Child node ids, in insertion order.
    children: Vec<u32>,
}

impl Node {
    fn new(name: u32) -> Self {
        Self {
            name,
            self_value: 0,
            total: 0,
            children: Vec::new(),
        }
    }
}

/// A call tree keyed by function name under each parent: every distinct root-first
/// path of function names added with [`FlameTree::add`] is one node.
///
/// Stored compactly: one `Vec` of nodes, function names interned once, and one
/// `(parent, name) → child` index for merging stacks.
#[derive(Debug, Clone)]
pub struct FlameTree {
    /// Node 0 is the root.
    nodes: Vec<Node>,
    /// Interned function names, by id.
    names: Vec<String>,
    /// Function name → id.
    name_ids: HashMap<String, u32>,
    /// `(parent node, name id)` → child node.
    child_index: HashMap<(u32, u32), u32>,
}

impl Default for FlameTree {
    fn default() -> Self {
        Self::new()
    }
}

impl FlameTree {
    /// An empty tree (just the root, total 0).
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::new(0)],
            names: Vec::new(),
            name_ids: HashMap::default(),
            child_index: HashMap::default(),
        }
    }

    /// Adds `value` for a stack given LEAF FIRST (as stored), e.g.
    /// `["leaf", "mid", "main"]`.
    ///
    /// Only positive values are recorded: zero (and negative) values add nothing,
    /// not even nodes. Sums saturate at `i64::MAX` instead of overflowing. An empty
    /// stack adds its value to the root's self value.
    pub fn add<'a>(&mut self, leaf_first: impl DoubleEndedIterator<Item = &'a str>, value: i64) {
        if value <= 0 {
            return;
        }
        let mut node = ROOT;
        self.bump_total(node, value);
        for name in leaf_first.rev() {
            let name_id = self.intern(name);
            node = match self.child_index.get(&(node, name_id)) {
                Some(&child) => child,
                None => {
                    let child = to_u32(self.nodes.len());
                    self.nodes.push(Node::new(name_id));
                    self.nodes[node as usize].children.push(child);
                    self.child_index.insert((node, name_id), child);
                    child
                }
            };
            self.bump_total(node, value);
        }
        let leaf = &mut self.nodes[node as usize];
        leaf.self_value = leaf.self_value.saturating_add(value);
    }

    /// Sum of all values added (the root's total).
    pub fn total(&self) -> i64 {
        self.nodes[ROOT as usize].total
    }

    /// Number of nodes in the tree, root excluded.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - 1
    }

    /// Per-function `(self, total)` over the tree.
    ///
    /// A function's self value is the value of stacks whose leaf is that function; its
    /// total is the value of stacks that contain it anywhere. A function appearing
    /// several times on one stack (recursion) counts once in total for that stack.
    pub fn function_totals(&self) -> BTreeMap<String, (i64, i64)> {
        let mut sums = vec![(0i64, 0i64); self.names.len()];
        // How many times each function occurs on the current root path.
        let mut on_path = vec![0u32; self.names.len()];
        // (node, exiting): depth-first walk with explicit enter/exit events.
        let mut stack: Vec<(u32, bool)> = self.nodes[ROOT as usize]
            .children
            .iter()
            .map(|&c| (c, false))
            .collect();
        while let Some((id, exiting)) = stack.pop() {
            let node = &self.nodes[id as usize];
            let name = node.name as usize;
            if exiting {
                on_path[name] -= 1;
                continue;
            }
            let sum = &mut sums[name];
            sum.0 = sum.0.saturating_add(node.self_value);
            // The topmost occurrence of a function on a path accounts for every stack
            // through it; deeper (recursive) occurrences are already covered.
            if on_path[name] == 0 {
                sum.1 = sum.1.saturating_add(node.total);
            }
            on_path[name] += 1;
            stack.push((id, true));
            stack.extend(node.children.iter().map(|&c| (c, false)));
        }
        self.names.iter().cloned().zip(sums).collect()
    }

    /// Encodes the tree as a level-encoded flame graph, keeping at most `max_nodes`
    /// nodes (root excluded; `None` or `Some(0)`: no limit). Dropped children of a kept
    /// node are replaced by one `other` child carrying their summed total as self, so
    /// the totals of the root and of every kept node are exact.
    pub fn to_flamegraph(&self, max_nodes: Option<usize>) -> FlameGraph {
        let view = self.view();
        let keep = select(&view, max_nodes);
        let encoded = encode(&view, &keep);
        FlameGraph {
            names: encoded.names,
            levels: encoded.levels,
            total: self.total(),
            max_self: encoded.max_self,
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = to_u32(self.names.len());
        self.names.push(name.to_owned());
        self.name_ids.insert(name.to_owned(), id);
        id
    }

    fn bump_total(&mut self, node: u32, value: i64) {
        let node = &mut self.nodes[node as usize];
        node.total = node.total.saturating_add(value);
    }

    fn name_of(&self, node: u32) -> &str {
        if node == ROOT {
            ROOT_NAME
        } else {
            &self.names[self.nodes[node as usize].name as usize]
        }
    }

    /// Children of `node` sorted by function name.
    fn sorted_children(&self, node: u32) -> Vec<u32> {
        let mut children = self.nodes[node as usize].children.clone();
        children.sort_unstable_by(|&a, &b| self.name_of(a).cmp(self.name_of(b)));
        children
    }

    /// The tree in encoding order (pre-order, children sorted by name).
    fn view(&self) -> View<'_, 1> {
        let mut view = View::with_capacity(self.nodes.len());
        let mut stack = vec![(ROOT, NO_PARENT)];
        while let Some((id, parent)) = stack.pop() {
            let node = &self.nodes[id as usize];
            let index = view.push(self.name_of(id), [node.total], [node.self_value], parent);
            let children = self.sorted_children(id);
            stack.extend(children.into_iter().rev().map(|c| (c, index)));
        }
        view
    }
}

/// Compares two trees as a diff flame graph over the union of their nodes (a node
/// missing on one side has zeros there). Truncation with `max_nodes` (as in
/// [`FlameTree::to_flamegraph`]) ranks nodes by the larger of their two totals and
/// builds `other` nodes for both sides.
pub fn diff(left: &FlameTree, right: &FlameTree, max_nodes: Option<usize>) -> FlameGraphDiff {
    let view = diff_view(left, right);
    let keep = select(&view, max_nodes);
    let encoded = encode(&view, &keep);
    FlameGraphDiff {
        names: encoded.names,
        levels: encoded.levels,
        total: left.total().saturating_add(right.total()),
        max_self: encoded.max_self,
        left_ticks: left.total(),
        right_ticks: right.total(),
    }
}

/// The union of two trees in encoding order (pre-order, children sorted by name).
fn diff_view<'a>(left: &'a FlameTree, right: &'a FlameTree) -> View<'a, 2> {
    let mut view = View::with_capacity(left.nodes.len().max(right.nodes.len()));
    let mut stack = vec![(Some(ROOT), Some(ROOT), NO_PARENT)];
    while let Some((l, r, parent)) = stack.pop() {
        let side = |tree: &FlameTree, id: Option<u32>| {
            id.map_or((0, 0), |id| {
                let node = &tree.nodes[id as usize];
                (node.total, node.self_value)
            })
        };
        let (lt, ls) = side(left, l);
        let (rt, rs) = side(right, r);
        let name = match (l, r) {
            (Some(id), _) => left.name_of(id),
            (None, Some(id)) => right.name_of(id),
            (None, None) => unreachable!("diff node on neither side"),
        };
        let index = view.push(name, [lt, rt], [ls, rs], parent);

        // Merge-join the two sorted child lists by name.
        let lc = l.map(|id| left.sorted_children(id)).unwrap_or_default();
        let rc = r.map(|id| right.sorted_children(id)).unwrap_or_default();
        let mut merged = Vec::with_capacity(lc.len().max(rc.len()));
        let (mut i, mut j) = (0, 0);
        while i < lc.len() || j < rc.len() {
            let order = match (lc.get(i), rc.get(j)) {
                (Some(&a), Some(&b)) => left.name_of(a).cmp(right.name_of(b)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    merged.push((Some(lc[i]), None));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    merged.push((None, Some(rc[j])));
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    merged.push((Some(lc[i]), Some(rc[j])));
                    i += 1;
                    j += 1;
                }
            }
        }
        stack.extend(merged.into_iter().rev().map(|(a, b)| (a, b, index)));
    }
    view
}

/// Parent marker of the root in a [`View`].
const NO_PARENT: u32 = u32::MAX;

/// A tree laid out for encoding: nodes in pre-order with children sorted by name,
/// `N` value sides (1 for a flame graph, 2 for a diff).
#[derive(Debug)]
struct View<'a, const N: usize> {
    nodes: Vec<ViewNode<'a, N>>,
}

#[derive(Debug)]
struct ViewNode<'a, const N: usize> {
    name: &'a str,
    total: [i64; N],
    self_value: [i64; N],
    parent: u32,
    children: Vec<u32>,
}

impl<'a, const N: usize> View<'a, N> {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            nodes: Vec::with_capacity(capacity),
        }
    }

    /// Appends a node (pre-order) and links it to its parent; returns its index.
    fn push(&mut self, name: &'a str, total: [i64; N], self_value: [i64; N], parent: u32) -> u32 {
        let index = to_u32(self.nodes.len());
        self.nodes.push(ViewNode {
            name,
            total,
            self_value,
            parent,
            children: Vec::new(),
        });
        if parent != NO_PARENT {
            self.nodes[parent as usize].children.push(index);
        }
        index
    }

    /// Ranking weight for truncation: the largest total over the sides.
    fn weight(&self, index: u32) -> i64 {
        let node = &self.nodes[index as usize];
        node.total.iter().copied().max().unwrap_or(0)
    }
}

/// Which view nodes survive `max_nodes`: the `max_nodes` heaviest nodes (root
/// excluded, ties broken by pre-order position), closed under ancestors.
fn select<const N: usize>(view: &View<'_, N>, max_nodes: Option<usize>) -> Vec<bool> {
    let count = view.nodes.len() - 1;
    let limit = match max_nodes {
        Some(limit) if limit > 0 && count > limit => limit,
        _ => return vec![true; view.nodes.len()],
    };
    let mut order: Vec<u32> = (1..to_u32(view.nodes.len())).collect();
    // A parent weighs at least as much as its children and precedes them in
    // pre-order, so it is always considered before them.
    order.sort_unstable_by(|&a, &b| view.weight(b).cmp(&view.weight(a)).then(a.cmp(&b)));
    let mut keep = vec![false; view.nodes.len()];
    keep[ROOT as usize] = true;
    let mut kept = 0;
    for index in order {
        if kept == limit {
            break;
        }
        // Enforce ancestor closure: a node whose parent was dropped is dropped too.
        if keep[view.nodes[index as usize].parent as usize] {
            keep[index as usize] = true;
            kept += 1;
        }
    }
    keep
}

/// Output of [`encode`].
#[derive(Debug)]
struct Encoded {
    names: Vec<String>,
    levels: Vec<Level>,
    max_self: i64,
}

/// A node to emit: a kept view node, or the synthetic `other` node with its totals.
#[derive(Debug, Clone, Copy)]
enum Emit<const N: usize> {
    Node(u32),
    Other([i64; N]),
}

/// Level-encodes the kept nodes of `view`, adding an `other` child wherever children
/// were dropped.
fn encode<const N: usize>(view: &View<'_, N>, keep: &[bool]) -> Encoded {
    let mut names = vec![ROOT_NAME.to_owned()];
    let mut name_index: HashMap<&str, i64> = HashMap::default();
    name_index.insert(ROOT_NAME, 0);
    let mut levels: Vec<Vec<i64>> = Vec::new();
    // Per level, per side: absolute end of the last node emitted on that level.
    let mut level_end: Vec<[i64; N]> = Vec::new();
    let mut max_self = 0i64;

    // Pre-order walk: (node, depth, absolute x per side).
    let mut stack: Vec<(Emit<N>, usize, [i64; N])> = vec![(Emit::Node(ROOT), 0, [0; N])];
    let mut children: Vec<(Emit<N>, usize, [i64; N])> = Vec::new();
    while let Some((item, depth, x)) = stack.pop() {
        let (name, total, self_value) = match item {
            Emit::Node(index) => {
                let node = &view.nodes[index as usize];
                (node.name, node.total, node.self_value)
            }
            Emit::Other(total) => (OTHER_NAME, total, total),
        };
        if levels.len() <= depth {
            levels.push(Vec::new());
            level_end.push([0; N]);
        }
        let values = &mut levels[depth];
        for side in 0..N {
            values.push(x[side].saturating_sub(level_end[depth][side]));
            values.push(total[side]);
            values.push(self_value[side]);
            level_end[depth][side] = x[side].saturating_add(total[side]);
            max_self = max_self.max(self_value[side]);
        }
        let next = to_i64(names.len());
        let id = *name_index.entry(name).or_insert_with(|| {
            names.push(name.to_owned());
            next
        });
        values.push(id);

        let Emit::Node(index) = item else { continue };
        // Children left to right: kept ones by name, then `other` for the dropped.
        children.clear();
        let mut child_x = x;
        let mut dropped: Option<[i64; N]> = None;
        for &child in &view.nodes[index as usize].children {
            let child_total = view.nodes[child as usize].total;
            if keep[child as usize] {
                children.push((Emit::Node(child), depth + 1, child_x));
                for side in 0..N {
                    child_x[side] = child_x[side].saturating_add(child_total[side]);
                }
            } else {
                let sum = dropped.get_or_insert([0; N]);
                for side in 0..N {
                    sum[side] = sum[side].saturating_add(child_total[side]);
                }
            }
        }
        if let Some(sum) = dropped {
            children.push((Emit::Other(sum), depth + 1, child_x));
        }
        stack.extend(children.drain(..).rev());
    }

    Encoded {
        names,
        levels: levels.into_iter().map(|values| Level { values }).collect(),
        max_self,
    }
}

/// A node of a decoded flame graph.
#[derive(Debug, Clone)]
struct DecodedNode {
    name: usize,
    total: i64,
    self_value: i64,
    /// `usize::MAX` for the root.
    parent: usize,
    children: Vec<usize>,
}

/// Values per node in a (non-diff) level.
const TUPLE: usize = 4;

/// Parses the levels of `fg` into a tree (node 0 is the root), validating them.
fn decode_nodes(fg: &FlameGraph) -> Result<Vec<DecodedNode>, String> {
    if fg.levels.is_empty() {
        return Err("flame graph has no levels".to_owned());
    }
    let mut nodes: Vec<DecodedNode> = Vec::new();
    // Previous level's nodes as (node index, absolute x, absolute end).
    let mut parents: Vec<(usize, i64, i64)> = Vec::new();
    for (depth, level) in fg.levels.iter().enumerate() {
        let values = &level.values;
        if values.len() % TUPLE != 0 {
            return Err(format!(
                "level {depth}: {} values is not a multiple of {TUPLE} \
                 ([x_offset, total, self, name_index] per node)",
                values.len()
            ));
        }
        let count = values.len() / TUPLE;
        if depth == 0 && count != 1 {
            return Err(format!(
                "level 0 must hold exactly one node (the root), found {count}"
            ));
        }
        let mut current = Vec::with_capacity(count);
        let mut end = 0i64;
        let mut parent = 0usize;
        for (i, tuple) in values.chunks_exact(TUPLE).enumerate() {
            let [offset, total, self_value, name] = [tuple[0], tuple[1], tuple[2], tuple[3]];
            let at = || format!("level {depth} node {i}");
            if offset < 0 || total < 0 || self_value < 0 {
                return Err(format!(
                    "{}: negative offset, total or self ({offset}, {total}, {self_value})",
                    at()
                ));
            }
            if self_value > total {
                return Err(format!("{}: self {self_value} exceeds total {total}", at()));
            }
            let name = usize::try_from(name)
                .ok()
                .filter(|&n| n < fg.names.len())
                .ok_or_else(|| {
                    format!(
                        "{}: name index {name} out of range (names has {} entries)",
                        at(),
                        fg.names.len()
                    )
                })?;
            let x = end
                .checked_add(offset)
                .ok_or_else(|| format!("{}: x overflows i64", at()))?;
            end = x
                .checked_add(total)
                .ok_or_else(|| format!("{}: x + total overflows i64", at()))?;
            let index = nodes.len();
            let parent_index = if depth == 0 {
                usize::MAX
            } else {
                // Parents are ordered left to right, so the search only moves forward.
                loop {
                    let Some(&(p, px, pend)) = parents.get(parent) else {
                        return Err(format!(
                            "{}: span [{x}, {end}) lies outside every node of level {}",
                            at(),
                            depth - 1
                        ));
                    };
                    if px <= x && end <= pend {
                        break p;
                    }
                    if pend <= x {
                        parent += 1;
                        continue;
                    }
                    return Err(format!(
                        "{}: span [{x}, {end}) is not inside its parent's span [{px}, {pend}) \
                         on level {}",
                        at(),
                        depth - 1
                    ));
                }
            };
            if parent_index != usize::MAX {
                nodes[parent_index].children.push(index);
            }
            nodes.push(DecodedNode {
                name,
                total,
                self_value,
                parent: parent_index,
                children: Vec::new(),
            });
            current.push((index, x, end));
        }
        parents = current;
    }
    if nodes[0].total != fg.total {
        return Err(format!(
            "root total {} differs from the graph's total {}",
            nodes[0].total, fg.total
        ));
    }
    Ok(nodes)
}

/// Decodes a level-encoded flame graph back into `(root-first stack of names, self
/// value)` pairs, one per node with a positive self value, in left-to-right
/// (pre-order) order. The root's name is not part of the stacks (a root self value,
/// if any, is reported with an empty stack).
///
/// Fails with a descriptive error on malformed input: a level whose length is not a
/// multiple of 4, not exactly one root, a name index out of range, negative values,
/// self above total, a child whose span lies outside its parent's, or a root total
/// that differs from `fg.total`.
pub fn decode(fg: &FlameGraph) -> Result<Vec<(Vec<String>, i64)>, String> {
    let nodes = decode_nodes(fg)?;
    let mut out = Vec::new();
    let mut stack = vec![0usize];
    while let Some(index) = stack.pop() {
        let node = &nodes[index];
        if node.self_value > 0 {
            let mut path = Vec::new();
            let mut at = index;
            while at != 0 {
                path.push(fg.names[nodes[at].name].clone());
                at = nodes[at].parent;
            }
            path.reverse();
            out.push((path, node.self_value));
        }
        stack.extend(node.children.iter().rev());
    }
    Ok(out)
}

/// One node of a flame graph, for rendering it as rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlameNode {
    /// Position in pre-order (the root is 0).
    pub id: usize,
    /// Parent's `id` (`None` for the root).
    pub parent: Option<usize>,
    /// Distance from the root.
    pub depth: usize,
    /// Function name (`total` for the root, `other` for merged small nodes).
    pub name: String,
    /// Value of stacks ending here.
    pub self_value: i64,
    /// Value of stacks through here.
    pub total: i64,
}

/// The nodes of a level-encoded flame graph in pre-order (parents before children), with
/// the same validation as [`decode`].
pub fn nodes(fg: &FlameGraph) -> Result<Vec<FlameNode>, String> {
    let decoded = decode_nodes(fg)?;
    let mut out: Vec<FlameNode> = Vec::with_capacity(decoded.len());
    // (decoded index, parent's pre-order id, depth)
    let mut stack = vec![(0usize, None, 0usize)];
    while let Some((index, parent, depth)) = stack.pop() {
        let node = &decoded[index];
        let id = out.len();
        out.push(FlameNode {
            id,
            parent,
            depth,
            name: fg.names[node.name].clone(),
            self_value: node.self_value,
            total: node.total,
        });
        stack.extend(
            node.children
                .iter()
                .rev()
                .map(|c| (*c, Some(id), depth + 1)),
        );
    }
    Ok(out)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("flame graph exceeds u32::MAX nodes or names")
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).expect("names table exceeds i64::MAX entries")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Adds a ROOT-FIRST stack (easier to read in tests).
    fn add(tree: &mut FlameTree, root_first: &[&str], value: i64) {
        tree.add(root_first.iter().rev().copied(), value);
    }

    fn levels(fg_levels: &[Level]) -> Vec<Vec<i64>> {
        fg_levels.iter().map(|l| l.values.clone()).collect()
    }

    /// The hand-built example: siblings on levels 1 and 2, a gap on level 3.
    fn example() -> FlameTree {
        let mut t = FlameTree::new();
        // Deliberately not in name order: the encoding sorts children.
        add(&mut t, &["util"], 4);
        add(&mut t, &["main", "b", "d"], 2);
        add(&mut t, &["main", "a", "c"], 3);
        add(&mut t, &["main"], 1);
        add(&mut t, &["main", "a"], 1);
        t
    }

    /// Structural checks every encoded flame graph must pass; returns decoded nodes.
    fn check_structure(fg: &FlameGraph) -> Vec<DecodedNode> {
        let nodes = decode_nodes(fg).expect("valid encoding");
        assert_eq!(fg.names[0], ROOT_NAME);
        let distinct: BTreeSet<&String> = fg.names.iter().collect();
        assert_eq!(distinct.len(), fg.names.len(), "names not deduplicated");
        assert_eq!(nodes[0].total, fg.total, "root total != fg.total");
        let mut self_sum = 0i64;
        let mut max_self = 0i64;
        for node in &nodes {
            let children: i64 = node.children.iter().map(|&c| nodes[c].total).sum();
            assert_eq!(
                node.total,
                node.self_value + children,
                "total != self + children"
            );
            self_sum += node.self_value;
            max_self = max_self.max(node.self_value);
            // `other` is last among its siblings. Zero-width nodes (the missing side of
            // a diff) cannot be placed unambiguously by decoding, so look only at
            // positive-width children.
            let wide: Vec<usize> = node
                .children
                .iter()
                .copied()
                .filter(|&c| nodes[c].total > 0)
                .collect();
            for (i, &c) in wide.iter().enumerate() {
                if fg.names[nodes[c].name] == OTHER_NAME {
                    assert_eq!(i, wide.len() - 1, "`other` not last");
                    assert!(nodes[c].children.iter().all(|&k| nodes[k].total == 0));
                }
            }
        }
        assert_eq!(self_sum, fg.total, "sum of self values != total");
        assert_eq!(max_self, fg.max_self);
        nodes
    }

    /// Root-first stacks (names joined by ';') → merged value.
    fn merged(stacks: &[(Vec<String>, i64)]) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for (stack, value) in stacks {
            if *value > 0 {
                *out.entry(stack.join(";")).or_insert(0) += value;
            }
        }
        out
    }

    /// One side of a diff as a plain flame graph (offsets are per side already).
    fn side(d: &FlameGraphDiff, right: bool) -> FlameGraph {
        let base = if right { 3 } else { 0 };
        FlameGraph {
            names: d.names.clone(),
            levels: d
                .levels
                .iter()
                .map(|l| Level {
                    values: l
                        .values
                        .chunks_exact(7)
                        .flat_map(|t| [t[base], t[base + 1], t[base + 2], t[6]])
                        .collect(),
                })
                .collect(),
            total: if right { d.right_ticks } else { d.left_ticks },
            max_self: d
                .levels
                .iter()
                .flat_map(|l| l.values.chunks_exact(7).map(move |t| t[base + 2]))
                .max()
                .unwrap_or(0),
        }
    }

    /// Path (names joined by ';') → total of every non-root node.
    fn node_totals(fg: &FlameGraph, nodes: &[DecodedNode]) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate().skip(1) {
            let mut path = Vec::new();
            let mut at = i;
            while at != 0 {
                path.push(fg.names[nodes[at].name].as_str());
                at = nodes[at].parent;
            }
            path.reverse();
            out.insert(path.join(";"), node.total);
        }
        out
    }

    #[test]
    fn hand_built_example_levels() {
        let fg = example().to_flamegraph(None);
        assert_eq!(fg.names, ["total", "main", "a", "c", "b", "d", "util"]);
        assert_eq!(
            levels(&fg.levels),
            vec![
                vec![0, 11, 0, 0],
                // main [0,7) self 1; util [7,11) starts where main ends.
                vec![0, 7, 1, 1, 0, 4, 4, 6],
                // a [0,4) self 1; b [4,6).
                vec![0, 4, 1, 2, 0, 2, 0, 4],
                // c [0,3); d [4,6): offset 1 from c's end (a's self leaves a gap).
                vec![0, 3, 3, 3, 1, 2, 2, 5],
            ]
        );
        assert_eq!(fg.total, 11);
        assert_eq!(fg.max_self, 4);
        check_structure(&fg);
    }

    #[test]
    fn hand_built_example_truncated() {
        // Totals: main 7, a 4, util 4, c 3, b 2, d 2. Keep main, a (ties with util
        // and comes first in pre-order), util.
        let fg = example().to_flamegraph(Some(3));
        assert_eq!(fg.names, ["total", "main", "a", "other", "util"]);
        assert_eq!(
            levels(&fg.levels),
            vec![
                vec![0, 11, 0, 0],
                vec![0, 7, 1, 1, 0, 4, 4, 4],
                // a, then `other` for b (total 2, as self).
                vec![0, 4, 1, 2, 0, 2, 2, 3],
                // `other` under a for c.
                vec![0, 3, 3, 3],
            ]
        );
        assert_eq!(fg.total, 11);
        check_structure(&fg);
        // No limit when the tree fits, or for 0.
        let full = example().to_flamegraph(None);
        assert_eq!(example().to_flamegraph(Some(6)), full);
        assert_eq!(example().to_flamegraph(Some(0)), full);
        assert_ne!(example().to_flamegraph(Some(5)), full);
    }

    #[test]
    fn empty_tree_and_non_positive_values() {
        let mut t = FlameTree::new();
        add(&mut t, &["main", "a"], 0);
        add(&mut t, &["main", "b"], -5);
        assert_eq!(t.node_count(), 0);
        let fg = t.to_flamegraph(Some(10));
        assert_eq!(fg.names, ["total"]);
        assert_eq!(levels(&fg.levels), vec![vec![0, 0, 0, 0]]);
        assert_eq!((fg.total, fg.max_self), (0, 0));
        assert_eq!(decode(&fg).unwrap(), vec![]);
        assert!(t.function_totals().is_empty());
    }

    #[test]
    fn saturating_values_do_not_panic() {
        let mut t = FlameTree::new();
        add(&mut t, &["main", "a"], i64::MAX);
        add(&mut t, &["main", "a"], i64::MAX);
        add(&mut t, &["main", "b"], 7);
        assert_eq!(t.total(), i64::MAX);
        let fg = t.to_flamegraph(Some(1));
        assert_eq!(fg.total, i64::MAX);
        let d = diff(&t, &t, None);
        assert_eq!(d.total, i64::MAX);
    }

    #[test]
    fn decode_round_trip_merges_paths() {
        let mut t = FlameTree::new();
        let input: &[(&[&str], i64)] = &[
            (&["main", "a", "b"], 5),
            (&["main", "a"], 2),
            (&["main", "a", "b"], 3),
            (&["other_root"], 1),
            (&["main", "c", "a", "b"], 4),
            (&[], 6),
        ];
        let mut expected = BTreeMap::new();
        for (stack, value) in input {
            add(&mut t, stack, *value);
            *expected.entry(stack.join(";")).or_insert(0) += value;
        }
        let fg = t.to_flamegraph(None);
        check_structure(&fg);
        let decoded = decode(&fg).unwrap();
        assert_eq!(merged(&decoded), expected);
        // Left to right: the root's self first, then main;a, main;a;b, main;c;a;b, ...
        assert_eq!(decoded[0], (vec![], 6));
        assert_eq!(decoded[1], (vec!["main".to_owned(), "a".to_owned()], 2));
        assert_eq!(decoded.len(), 5);
    }

    #[test]
    fn function_totals_count_recursion_once() {
        let mut t = FlameTree::new();
        add(&mut t, &["main", "a", "b", "a"], 5);
        add(&mut t, &["main", "a"], 2);
        add(&mut t, &["main", "b"], 3);
        let totals = t.function_totals();
        let expected: BTreeMap<String, (i64, i64)> = [
            ("a".to_owned(), (7, 7)),
            ("b".to_owned(), (3, 8)),
            ("main".to_owned(), (0, 10)),
        ]
        .into();
        assert_eq!(totals, expected);
    }

    #[test]
    fn decode_rejects_malformed_input() {
        // `total` is taken from the root tuple when there is one.
        let fg = |names: &[&str], levels: Vec<Vec<i64>>| FlameGraph {
            names: names.iter().map(|s| s.to_string()).collect(),
            total: levels.first().and_then(|l| l.get(1)).copied().unwrap_or(0),
            levels: levels.into_iter().map(|values| Level { values }).collect(),
            max_self: 0,
        };
        let err = |g: FlameGraph| decode(&g).unwrap_err();
        assert!(err(fg(&["total"], vec![])).contains("no levels"));
        assert!(err(fg(&["total"], vec![vec![0, 1, 1]])).contains("multiple of 4"));
        assert!(err(fg(&["total"], vec![vec![0, 1, 1, 0, 0, 1, 1, 0]])).contains("exactly one"));
        assert!(err(fg(&["total"], vec![vec![0, 1, 1, 3]])).contains("name index 3"));
        assert!(err(fg(&["total"], vec![vec![0, 1, 1, -1]])).contains("name index -1"));
        assert!(err(fg(&["total"], vec![vec![0, 1, 2, 0]])).contains("exceeds total"));
        // Child [1, 4) sticks out of the root [0, 3).
        let e = err(fg(
            &["total", "a"],
            vec![vec![0, 3, 0, 0], vec![1, 3, 3, 1]],
        ));
        assert!(e.contains("not inside its parent"), "{e}");
        // Second child [2, 5) lies past the root [0, 2).
        let e = err(fg(
            &["total", "a"],
            vec![vec![0, 2, 0, 0], vec![0, 2, 2, 1, 0, 3, 3, 1]],
        ));
        assert!(e.contains("outside every node"), "{e}");
        let mut bad_total = fg(&["total", "a"], vec![vec![0, 3, 1, 0], vec![1, 2, 2, 1]]);
        bad_total.total = 4;
        assert!(err(bad_total).contains("differs from the graph's total"));
        // A well-formed graph decodes.
        let ok = fg(&["total", "a"], vec![vec![0, 3, 1, 0], vec![1, 2, 2, 1]]);
        assert_eq!(
            decode(&ok).unwrap(),
            vec![(vec![], 1), (vec!["a".to_owned()], 2)]
        );
    }

    /// A deterministic pseudo-random tree with many nodes.
    fn big_tree() -> FlameTree {
        let mut t = FlameTree::new();
        let names = ["f0", "f1", "f2", "f3", "f4", "f5"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..40 {
            let depth = 1 + (next() % 5) as usize;
            let stack: Vec<&str> = (0..depth).map(|_| names[(next() % 6) as usize]).collect();
            add(&mut t, &stack, 1 + (next() % 100) as i64);
        }
        t
    }

    #[test]
    fn max_nodes_truncation_keeps_heaviest_and_exact_total() {
        let t = big_tree();
        assert!(t.node_count() >= 50, "only {} nodes", t.node_count());
        let full = t.to_flamegraph(None);
        let full_nodes = check_structure(&full);
        let full_totals = node_totals(&full, &full_nodes);

        let fg = t.to_flamegraph(Some(10));
        let nodes = check_structure(&fg);
        assert_eq!(fg.total, t.total());
        let kept: Vec<_> = nodes[1..]
            .iter()
            .filter(|n| fg.names[n.name] != OTHER_NAME)
            .collect();
        assert_eq!(kept.len(), 10);
        assert!(nodes.iter().any(|n| fg.names[n.name] == OTHER_NAME));
        // Every kept node keeps its exact total, found at the same path in the full graph.
        let totals = node_totals(&fg, &nodes);
        let mut kept_totals = Vec::new();
        for (path, total) in &totals {
            if !path.split(';').any(|p| p == OTHER_NAME) {
                assert_eq!(full_totals.get(path), Some(total), "{path}");
                kept_totals.push(*total);
            }
        }
        // The kept totals are the 10 largest totals of the full tree.
        let mut all: Vec<i64> = full_totals.values().copied().collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        kept_totals.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(kept_totals, all[..10]);
        // The truncated decode still accounts for every unit of value.
        let self_sum: i64 = decode(&fg).unwrap().iter().map(|(_, v)| v).sum();
        assert_eq!(self_sum, t.total());
    }

    #[test]
    fn diff_with_itself_is_symmetric() {
        let t = big_tree();
        for max_nodes in [None, Some(7)] {
            let d = diff(&t, &t, max_nodes);
            assert_eq!(d.left_ticks, t.total());
            assert_eq!(d.right_ticks, t.total());
            assert_eq!(d.total, 2 * t.total());
            for level in &d.levels {
                assert_eq!(level.values.len() % 7, 0);
                for tuple in level.values.chunks_exact(7) {
                    assert_eq!(tuple[0..3], tuple[3..6], "{tuple:?}");
                }
            }
            // Each side equals the plain flame graph.
            let plain = t.to_flamegraph(max_nodes);
            assert_eq!(d.names, plain.names);
            assert_eq!(d.max_self, plain.max_self);
            assert_eq!(levels(&side(&d, false).levels), levels(&plain.levels));
        }
    }

    #[test]
    fn diff_disjoint_and_partial_trees() {
        let mut left = FlameTree::new();
        add(&mut left, &["main", "a"], 3);
        let mut right = FlameTree::new();
        add(&mut right, &["main", "b"], 2);
        let d = diff(&left, &right, None);
        assert_eq!(d.names, ["total", "main", "a", "b"]);
        assert_eq!(
            levels(&d.levels),
            vec![
                vec![0, 3, 0, 0, 2, 0, 0],
                vec![0, 3, 0, 0, 2, 0, 1],
                vec![0, 3, 3, 0, 0, 0, 2, 0, 0, 0, 0, 2, 2, 3],
            ]
        );
        assert_eq!(
            (d.left_ticks, d.right_ticks, d.total, d.max_self),
            (3, 2, 5, 3)
        );

        // Fully disjoint trees: both sides' nodes, zeros on the missing side.
        let mut right = FlameTree::new();
        add(&mut right, &["x", "y"], 4);
        let d = diff(&left, &right, None);
        assert_eq!(d.names, ["total", "main", "a", "x", "y"]);
        assert_eq!(
            levels(&d.levels),
            vec![
                vec![0, 3, 0, 0, 4, 0, 0],
                vec![0, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 4, 0, 3],
                vec![0, 3, 3, 0, 0, 0, 2, 0, 0, 0, 0, 4, 4, 4],
            ]
        );
        let l = check_structure(&side(&d, false));
        let r = check_structure(&side(&d, true));
        assert_eq!((l[0].total, r[0].total), (3, 4));
        assert_eq!(
            merged(&decode(&side(&d, false)).unwrap()),
            [("main;a".to_owned(), 3)].into()
        );
        assert_eq!(
            merged(&decode(&side(&d, true)).unwrap()),
            [("x;y".to_owned(), 4)].into()
        );
    }

    #[test]
    fn diff_truncation_builds_other_on_both_sides() {
        let mut left = FlameTree::new();
        add(&mut left, &["main", "a"], 10);
        add(&mut left, &["main", "b"], 1);
        let mut right = FlameTree::new();
        add(&mut right, &["main", "c"], 8);
        add(&mut right, &["main", "b"], 2);
        // Weights: main 11|10, a 10, c 8, b 2. Keep main, a, c; b → other.
        let d = diff(&left, &right, Some(3));
        assert_eq!(d.names, ["total", "main", "a", "c", "other"]);
        assert_eq!(
            levels(&d.levels)[2],
            vec![
                0, 10, 10, 0, 0, 0, 2, 0, 0, 0, 0, 8, 8, 3, 0, 1, 1, 0, 2, 2, 4
            ]
        );
        check_structure(&side(&d, false));
        check_structure(&side(&d, true));
    }

    const ALPHABET: [&str; 6] = ["main", "run", "alloc", "parse", "io", "total"];

    fn stacks() -> impl Strategy<Value = Vec<(Vec<usize>, i64)>> {
        prop::collection::vec(
            (prop::collection::vec(0..ALPHABET.len(), 1..8), 0i64..1000),
            0..40,
        )
    }

    fn build(stacks: &[(Vec<usize>, i64)]) -> (FlameTree, BTreeMap<String, i64>) {
        let mut t = FlameTree::new();
        let mut expected = BTreeMap::new();
        for (stack, value) in stacks {
            let names: Vec<&str> = stack.iter().map(|&i| ALPHABET[i]).collect();
            add(&mut t, &names, *value);
            if *value > 0 {
                *expected.entry(names.join(";")).or_insert(0) += value;
            }
        }
        (t, expected)
    }

    proptest! {
        #[test]
        fn prop_flamegraph_invariants(input in stacks(), max_nodes in prop::option::of(0usize..30)) {
            let (t, expected) = build(&input);
            let full = t.to_flamegraph(None);
            check_structure(&full);
            prop_assert_eq!(full.total, expected.values().sum::<i64>());
            prop_assert_eq!(merged(&decode(&full).unwrap()), expected);

            let fg = t.to_flamegraph(max_nodes);
            let nodes = check_structure(&fg);
            prop_assert_eq!(fg.total, t.total());
            let kept = nodes[1..].iter().filter(|n| fg.names[n.name] != OTHER_NAME).count();
            match max_nodes.filter(|&m| m > 0) {
                Some(limit) if t.node_count() > limit => {
                    prop_assert_eq!(kept, limit);
                    prop_assert!(fg.names.iter().any(|n| n == OTHER_NAME));
                }
                _ => prop_assert_eq!(kept, t.node_count()),
            }
            let self_sum: i64 = decode(&fg).unwrap().iter().map(|(_, v)| v).sum();
            prop_assert_eq!(self_sum, t.total());
        }

        #[test]
        fn prop_function_totals(input in stacks()) {
            let (t, _) = build(&input);
            let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            for (stack, value) in &input {
                if *value <= 0 {
                    continue;
                }
                let distinct: BTreeSet<&str> = stack.iter().map(|&i| ALPHABET[i]).collect();
                for name in distinct {
                    expected.entry(name.to_owned()).or_default().1 += value;
                }
                let leaf = ALPHABET[*stack.last().unwrap()];
                expected.entry(leaf.to_owned()).or_default().0 += value;
            }
            prop_assert_eq!(t.function_totals(), expected);
        }

        #[test]
        fn prop_diff_sides(a in stacks(), b in stacks(), max_nodes in prop::option::of(0usize..30)) {
            let (left, left_expected) = build(&a);
            let (right, right_expected) = build(&b);
            let d = diff(&left, &right, max_nodes);
            prop_assert_eq!(d.left_ticks, left.total());
            prop_assert_eq!(d.right_ticks, right.total());
            prop_assert_eq!(d.total, left.total() + right.total());
            let l = side(&d, false);
            let r = side(&d, true);
            check_structure(&l);
            check_structure(&r);
            prop_assert_eq!(d.max_self, l.max_self.max(r.max_self));
            if max_nodes.is_none_or(|m| m == 0) {
                prop_assert_eq!(merged(&decode(&l).unwrap()), left_expected);
                prop_assert_eq!(merged(&decode(&r).unwrap()), right_expected);
            } else {
                let ls: i64 = decode(&l).unwrap().iter().map(|(_, v)| v).sum();
                let rs: i64 = decode(&r).unwrap().iter().map(|(_, v)| v).sum();
                prop_assert_eq!((ls, rs), (left.total(), right.total()));
            }
        }
    }
}
