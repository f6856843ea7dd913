// Flame graphs: decoding the level encoding into a tree, and drawing it as absolutely
// positioned <div>s (root at the top), with click to zoom, search highlighting and a tooltip.
//
// Level encoding (querier/src/flamegraph.rs): `levels[d]` holds the nodes at depth d, left to
// right, as `[x_offset, total, self, name_index]` where x_offset is relative to the end of
// the previous node on that level. A diff holds 7-tuples `[left_offset, left_total,
// left_self, right_offset, right_total, right_self, name_index]` over the union of both
// trees, each side in its own coordinates.

/** Totals of one side of a node. */
interface SideValues {
  total: number;
  self: number;
}

interface FlameNode {
  id: number;
  name: string;
  depth: number;
  /** Plain graph: the values. Diff: the comparison (right) side. */
  total: number;
  self: number;
  /** Diff only: the baseline (left) side. */
  base?: SideValues;
  /** Width in layout units (plain: total; diff: the mean of both sides' shares). */
  weight: number;
  /** Start in layout units, from the root's start. */
  x: number;
  parent: FlameNode | null;
  children: FlameNode[];
}

interface FlameData {
  root: FlameNode;
  nodes: FlameNode[];
  /** Sample unit of the profile type (`nanoseconds`, `bytes`, `count`, …). */
  unit: string;
  /** Diff only: totals of each side. */
  diff?: { leftTicks: number; rightTicks: number };
  maxDepth: number;
}

/**
 * Share-change classes of diff nodes: a relative change of the total share below this is
 * "none" (10 %, the detector's default minimum relative change), so nodes whose share only
 * shrank because another grew stay grey.
 */
const DIFF_THRESHOLD = 0.1;

/**
 * Decodes the levels into a tree. `sides` is 1 for a flame graph, 2 for a diff. A node's
 * parent is the node one level up whose span (on a side where the node has a width)
 * contains it; parents are in order, so the search only moves forward.
 */
function decodeLevels(fg: WireFlameGraph, sides: 1 | 2): FlameNode[] {
  const names = fg.names ?? [];
  const stride = sides * 3 + 1;
  const nodes: FlameNode[] = [];
  let prev: { node: FlameNode; x: number[]; t: number[] }[] = [];
  (fg.levels ?? []).forEach((level, depth) => {
    const v = (level.values ?? []).map(Number);
    if (v.length % stride !== 0) throw new Error(`level ${depth}: ${v.length} values is not a multiple of ${stride}`);
    const ends = new Array<number>(sides).fill(0);
    const cur: typeof prev = [];
    let p = 0;
    for (let i = 0; i < v.length; i += stride) {
      const x: number[] = [];
      const t: number[] = [];
      const s: number[] = [];
      for (let side = 0; side < sides; side++) {
        const o = i + side * 3;
        x.push(ends[side] + v[o]);
        t.push(v[o + 1]);
        s.push(v[o + 2]);
        ends[side] = x[side] + v[o + 1];
      }
      const last = sides - 1;
      const node: FlameNode = {
        id: nodes.length,
        name: names[v[i + stride - 1]] ?? `?${v[i + stride - 1]}`,
        depth,
        total: t[last],
        self: s[last],
        base: sides === 2 ? { total: t[0], self: s[0] } : undefined,
        weight: 0,
        x: 0,
        parent: null,
        children: [],
      };
      if (depth > 0) {
        if (prev.length === 0) throw new Error(`level ${depth} has no parent level`);
        const side = t.findIndex((n) => n > 0);
        const inside = (q: (typeof prev)[number]) =>
          side < 0 || (q.t[side] > 0 && q.x[side] <= x[side] && x[side] + t[side] <= q.x[side] + q.t[side]);
        while (p < prev.length && !inside(prev[p])) p++;
        if (p === prev.length) throw new Error(`level ${depth}: node ${node.name} has no parent`);
        node.parent = prev[p].node;
        prev[p].node.children.push(node);
      }
      nodes.push(node);
      cur.push({ node, x, t });
    }
    prev = cur;
  });
  if (nodes.length === 0) throw new Error("the flame graph has no levels");
  return nodes;
}

/** Sets `x` of every node: children start at their parent's start, in order. */
function layout(root: FlameNode): void {
  const stack = [root];
  root.x = 0;
  while (stack.length) {
    const n = stack.pop()!;
    let x = n.x;
    for (const c of n.children) {
      c.x = x;
      x += c.weight;
      stack.push(c);
    }
  }
}

function flameData(fg: WireFlameGraph, unit: string): FlameData {
  const nodes = decodeLevels(fg, 1);
  for (const n of nodes) n.weight = n.total;
  layout(nodes[0]);
  return { root: nodes[0], nodes, unit, maxDepth: Math.max(...nodes.map((n) => n.depth)) };
}

function diffData(fg: WireFlameGraph, unit: string): FlameData {
  const nodes = decodeLevels(fg, 2);
  const root = nodes[0];
  const leftTicks = Number(fg.leftTicks ?? root.base?.total ?? 0);
  const rightTicks = Number(fg.rightTicks ?? root.total);
  // Each side normalized by its own total, so a node's width is its mean share of both.
  for (const n of nodes) {
    const l = leftTicks > 0 ? (n.base?.total ?? 0) / leftTicks : 0;
    const r = rightTicks > 0 ? n.total / rightTicks : 0;
    n.weight = (l + r) / (leftTicks > 0 && rightTicks > 0 ? 2 : 1);
  }
  layout(root);
  return {
    root,
    nodes,
    unit,
    diff: { leftTicks, rightTicks },
    maxDepth: Math.max(...nodes.map((n) => n.depth)),
  };
}

/** Baseline and comparison shares of a diff node and the normalized change in [-1, 1]. */
function diffOf(n: FlameNode, d: { leftTicks: number; rightTicks: number }) {
  const before = d.leftTicks > 0 ? (n.base?.total ?? 0) / d.leftTicks : 0;
  const after = d.rightTicks > 0 ? n.total / d.rightTicks : 0;
  const top = Math.max(before, after);
  const change = top > 0 ? (after - before) / top : 0;
  const kind = change >= DIFF_THRESHOLD ? "regression" : change <= -DIFF_THRESHOLD ? "improvement" : "none";
  return { before, after, change, kind };
}

/** Per-function self and total (a function counted once per stack, as in the SQL). */
function functionTotals(data: FlameData): { name: string; self: number; total: number }[] {
  const totals = new Map<string, { self: number; total: number }>();
  const onPath = new Map<string, number>();
  const walk = (n: FlameNode) => {
    const entry = totals.get(n.name) ?? { self: 0, total: 0 };
    totals.set(n.name, entry);
    entry.self += n.self;
    const depth = onPath.get(n.name) ?? 0;
    if (depth === 0) entry.total += n.total;
    onPath.set(n.name, depth + 1);
    n.children.forEach(walk);
    onPath.set(n.name, depth);
  };
  data.root.children.forEach(walk);
  return [...totals.entries()].map(([name, v]) => ({ name, ...v }));
}

const ROW_PX = 20;
/** Nodes narrower than this many pixels are not drawn. */
const MIN_PX = 0.5;

/** An interactive flame graph in `container`. */
class FlameGraphView {
  private data: FlameData | null = null;
  private zoom: FlameNode | null = null;
  private search = "";
  private byId = new Map<number, FlameNode>();
  private readonly graph: HTMLElement;
  private readonly tooltip: HTMLElement;
  private readonly status: HTMLElement;

  constructor(
    readonly container: HTMLElement,
    private readonly onChange: () => void = () => {},
  ) {
    this.status = h("div", { class: "flame-status" });
    this.graph = h("div", { class: "flame" });
    this.tooltip = h("div", { class: "tooltip", hidden: true });
    container.append(this.status, this.graph, this.tooltip);
    this.graph.addEventListener("click", (ev) => {
      const n = this.nodeAt(ev.target);
      if (n) this.zoomTo(n === this.zoom ? n.parent : n);
    });
    this.graph.addEventListener("mousemove", (ev) => this.showTooltip(ev));
    this.graph.addEventListener("mouseleave", () => (this.tooltip.hidden = true));
    window.addEventListener("resize", () => this.render());
  }

  set(data: FlameData | null): void {
    this.data = data;
    this.zoom = null;
    this.byId = new Map(data ? data.nodes.map((n) => [n.id, n]) : []);
    this.render();
  }

  get zoomed(): FlameNode | null {
    return this.zoom;
  }

  zoomTo(n: FlameNode | null): void {
    this.zoom = n && n.parent ? n : null;
    this.render();
    this.onChange();
  }

  setSearch(text: string): void {
    this.search = text.trim().toLowerCase();
    this.render();
  }

  private nodeAt(target: EventTarget | null): FlameNode | undefined {
    const e = (target as HTMLElement | null)?.closest?.(".node") as HTMLElement | null;
    return e ? this.byId.get(Number(e.dataset.id)) : undefined;
  }

  private matches(n: FlameNode): boolean {
    return this.search !== "" && n.name.toLowerCase().includes(this.search);
  }

  render(): void {
    clear(this.graph);
    const data = this.data;
    this.graph.classList.toggle("diff", !!data?.diff);
    if (!data) {
      this.status.textContent = "";
      return;
    }
    const focus = this.zoom ?? data.root;
    const width = this.graph.clientWidth || 1000;
    const scale = focus.weight > 0 ? 1 / focus.weight : 0;
    const minWeight = focus.weight * (MIN_PX / width);
    let drawn = 0;
    let depth = 0;
    const draw = (n: FlameNode, left: number, w: number, ancestor: boolean) => {
      const e = h("div", { class: "node", "data-id": n.id, "data-name": n.name, "data-depth": n.depth });
      e.dataset.total = String(n.total);
      e.dataset.self = String(n.self);
      e.style.left = `${left * 100}%`;
      e.style.width = `${w * 100}%`;
      e.style.top = `${n.depth * ROW_PX}px`;
      if (ancestor) e.classList.add("ancestor");
      if (n === this.zoom) e.classList.add("focus");
      if (this.search) e.classList.add(this.matches(n) ? "match" : "dim");
      if (data.diff) {
        const d = diffOf(n, data.diff);
        e.dataset.change = d.kind;
        e.dataset.delta = d.change.toFixed(4);
        e.style.backgroundColor = diffColor(d.change);
      } else {
        e.style.backgroundColor = nodeColor(n.name);
      }
      if (w * width >= 24) e.append(h("span", {}, n.name));
      this.graph.append(e);
      drawn++;
      depth = Math.max(depth, n.depth);
    };
    // The zoomed node's ancestors span the whole width.
    for (let a = focus.parent; a; a = a.parent) draw(a, 0, 1, true);
    const stack: FlameNode[] = [focus];
    while (stack.length) {
      const n = stack.pop()!;
      if (n.weight < minWeight) continue;
      draw(n, (n.x - focus.x) * scale, n.weight * scale, false);
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]);
    }
    this.graph.style.height = `${(depth + 1) * ROW_PX}px`;
    this.status.textContent = this.summary(focus, drawn);
  }

  private summary(focus: FlameNode, drawn: number): string {
    const data = this.data!;
    const parts: string[] = [];
    if (data.diff) {
      parts.push(
        `baseline ${fmtValue(data.diff.leftTicks, data.unit)}, comparison ${fmtValue(data.diff.rightTicks, data.unit)}`,
      );
    } else {
      parts.push(`total ${fmtValue(data.root.total, data.unit)}`);
    }
    parts.push(`${fmtInt(data.nodes.length)} nodes (${fmtInt(drawn)} drawn)`);
    if (this.zoom) parts.push(`zoomed to ${focus.name} (click it again or Reset to zoom out)`);
    if (this.search) {
      // Share of the matches: nodes that match with no matching ancestor, counted once.
      let weight = 0;
      let count = 0;
      const walk = (n: FlameNode) => {
        if (this.matches(n)) {
          weight += n.weight;
          count++;
          return;
        }
        n.children.forEach(walk);
      };
      walk(data.root);
      parts.push(`"${this.search}": ${count} match${count === 1 ? "" : "es"}, ${fmtPct(weight / (data.root.weight || 1))} of the total`);
    }
    return parts.join(" · ");
  }

  private showTooltip(ev: MouseEvent): void {
    const n = this.nodeAt(ev.target);
    const data = this.data;
    if (!n || !data) {
      this.tooltip.hidden = true;
      return;
    }
    clear(this.tooltip);
    const row = (label: string, value: string) => h("tr", {}, h("th", {}, label), h("td", {}, value));
    const rows: HTMLElement[] = [];
    if (data.diff) {
      const d = diffOf(n, data.diff);
      const side = (v: SideValues, ticks: number) =>
        `total ${fmtValue(v.total, data.unit)} (${fmtPct(ticks ? v.total / ticks : 0)}), self ${fmtValue(v.self, data.unit)} (${fmtPct(ticks ? v.self / ticks : 0)})`;
      rows.push(row("Baseline", side(n.base ?? { total: 0, self: 0 }, data.diff.leftTicks)));
      rows.push(row("Comparison", side(n, data.diff.rightTicks)));
      rows.push(row("Change", `${fmtPp(d.after - d.before)} of the total (${d.kind})`));
    } else {
      const total = data.root.total || 1;
      rows.push(row("Total", `${fmtValue(n.total, data.unit)} (${fmtPct(n.total / total)} of total)`));
      rows.push(row("Self", `${fmtValue(n.self, data.unit)} (${fmtPct(n.self / total)} of total)`));
      if (n.parent && n.parent.total > 0) rows.push(row("Of parent", fmtPct(n.total / n.parent.total)));
    }
    this.tooltip.append(h("div", { class: "tooltip-name" }, n.name), h("table", {}, rows));
    this.tooltip.hidden = false;
    const pad = 14;
    const r = this.tooltip.getBoundingClientRect();
    let x = ev.clientX + pad;
    let y = ev.clientY + pad;
    if (x + r.width > window.innerWidth) x = Math.max(0, ev.clientX - r.width - pad);
    if (y + r.height > window.innerHeight) y = Math.max(0, ev.clientY - r.height - pad);
    this.tooltip.style.left = `${x}px`;
    this.tooltip.style.top = `${y}px`;
  }
}

/** Warm colours, fixed per function name. */
function nodeColor(name: string): string {
  const x = hashString(name);
  const hue = 8 + (x % 42);
  const light = 58 + ((x >>> 8) % 14);
  return `hsl(${hue}, 78%, ${light}%)`;
}

/** Red for a regression, green for an improvement, stronger with the normalized change. */
function diffColor(change: number): string {
  const i = Math.min(1, Math.abs(change));
  if (Math.abs(change) < DIFF_THRESHOLD) return "hsl(220, 8%, 84%)";
  const light = 88 - 40 * i;
  return change > 0 ? `hsl(0, 82%, ${light}%)` : `hsl(125, 55%, ${light}%)`;
}
