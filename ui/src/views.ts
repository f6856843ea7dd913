// The four views (flame graph, diff, anomalies, SQL) and the query bar they share.
//
// What is shown lives in the URL's hash, `#/VIEW?key=value&…`, so every state is a link
// (the anomaly list links to diffs that way) and the back button works:
// * all views: `type` (profile type ID), `service`, `m` (one `name=value` label matcher
//   per parameter), `from`, `until` (as typed: `now-1h`, Unix ms, a date);
// * flame: `search`;
// * diff: `lq`, `lfrom`, `luntil` (baseline selector and range), `rq`, `rfrom`, `runtil`
//   (comparison), `search`;
// * anomalies: `kind`, `since`, `all` (every service).
// Each view's section carries `data-state` (`loading`, `ready`, `error`) and `data-route`
// (the hash that state belongs to) for tests: a state is current only while its route is
// `location.hash`, so a test never mistakes the previous load's `ready` for the next one's.

type ViewName = "flame" | "diff" | "anomalies" | "sql";
const VIEWS: ViewName[] = ["flame", "diff", "anomalies", "sql"];

const RANGE_PRESETS: [string, string][] = [
  ["now-15m", "Last 15 minutes"],
  ["now-1h", "Last hour"],
  ["now-3h", "Last 3 hours"],
  ["now-6h", "Last 6 hours"],
  ["now-12h", "Last 12 hours"],
  ["now-24h", "Last 24 hours"],
  ["now-2d", "Last 2 days"],
  ["now-7d", "Last 7 days"],
  ["", "Custom"],
];

interface Route {
  view: ViewName;
  params: URLSearchParams;
}

function currentRoute(): Route {
  const hash = location.hash.replace(/^#\/?/, "");
  const q = hash.indexOf("?");
  const name = (q < 0 ? hash : hash.slice(0, q)) as ViewName;
  return {
    view: VIEWS.includes(name) ? name : "flame",
    params: new URLSearchParams(q < 0 ? "" : hash.slice(q + 1)),
  };
}

function routeHash(view: ViewName, params: URLSearchParams): string {
  const q = params.toString();
  return `#/${view}${q ? `?${q}` : ""}`;
}

/** Goes to a view; `replace` keeps the history entry (for pickers filling defaults). */
function navigate(view: ViewName, params: URLSearchParams, replace = false): void {
  const hash = routeHash(view, params);
  if (hash === location.hash) {
    app.show();
  } else if (replace) {
    history.replaceState(null, "", hash);
    app.show();
  } else {
    location.hash = hash;
  }
}

/** Marks a view busy, done or failed. */
function setState(section: HTMLElement, state: "loading" | "ready" | "error", error?: string): void {
  section.dataset.state = state;
  section.dataset.route = location.hash;
  const box = section.querySelector(".view-error") as HTMLElement | null;
  if (box) {
    box.textContent = error ?? "";
    box.hidden = !error;
  }
}

/** The shared query bar: profile type, service, label filters and time range. */
class QueryBar {
  readonly type = byId<HTMLSelectElement>("profile-type");
  readonly service = byId<HTMLSelectElement>("service");
  readonly filterName = byId<HTMLSelectElement>("filter-name");
  readonly filterValue = byId<HTMLSelectElement>("filter-value");
  readonly filters = byId("filters");
  readonly preset = byId<HTMLSelectElement>("range-preset");
  readonly from = byId<HTMLInputElement>("from");
  readonly until = byId<HTMLInputElement>("until");
  /** Units of the profile types seen, by ID. */
  private units = new Map<string, string>();

  constructor() {
    setOptions(this.preset, RANGE_PRESETS);
    this.type.addEventListener("change", () => this.apply({ type: this.type.value, m: null }));
    this.service.addEventListener("change", () => this.apply({ service: this.service.value, m: null }));
    this.preset.addEventListener("change", () => {
      if (this.preset.value) this.apply({ from: this.preset.value, until: "now" });
    });
    byId("query-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.apply({ from: this.from.value.trim() || "now-1h", until: this.until.value.trim() || "now" });
    });
    this.filterName.addEventListener("change", () => void this.loadFilterValues());
    byId("filter-add").addEventListener("click", () => {
      const name = this.filterName.value;
      const value = this.filterValue.value;
      if (!name) return;
      const params = currentRoute().params;
      params.append("m", `${name}=${value}`);
      navigate(currentRoute().view, params);
    });
  }

  /** Changes some parameters of the current route (null removes one) and goes there. */
  apply(changes: Record<string, string | null>): void {
    const { view, params } = currentRoute();
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === "") params.delete(k);
      else params.set(k, v);
    }
    navigate(view, params);
  }

  /** The route's range, resolved to Unix ms. */
  range(params: URLSearchParams): { start: number; end: number } {
    const now = Date.now();
    const start = parseTime(params.get("from") || "now-1h", now);
    const end = parseTime(params.get("until") || "now", now);
    if (start >= end) throw new Error("the range starts after it ends");
    return { start, end };
  }

  matchers(params: URLSearchParams): [string, string][] {
    const m: [string, string][] = [];
    const service = params.get("service");
    if (service) m.push(["service_name", service]);
    for (const f of params.getAll("m")) {
      const i = f.indexOf("=");
      if (i > 0) m.push([f.slice(0, i), f.slice(i + 1)]);
    }
    return m;
  }

  selector(params: URLSearchParams): string {
    return selectorOf(this.matchers(params));
  }

  unit(type: string): string {
    return this.units.get(type) ?? type.split(":")[2] ?? "";
  }

  /**
   * Fills the pickers from the route, asking the server for the profile types, services and
   * label names of the range. Returns the route's parameters with defaults filled in (the
   * first profile type, preferring CPU, and the first service) when some were missing.
   */
  async sync(params: URLSearchParams): Promise<URLSearchParams> {
    const from = params.get("from") || "now-1h";
    const until = params.get("until") || "now";
    this.from.value = from;
    this.until.value = until;
    this.preset.value = until === "now" && RANGE_PRESETS.some(([v]) => v === from) ? from : "";
    const { start, end } = this.range(params);
    const out = new URLSearchParams(params);

    const types = await api.profileTypes(start, end);
    for (const t of types) this.units.set(t.ID, t.sampleUnit ?? t.ID.split(":")[2] ?? "");
    let type = params.get("type") ?? "";
    // Prefer CPU time (sample type `cpu`), as Pyroscope does, over sample counts.
    if (!type && types.length)
      type = (
        types.find((t) => t.ID.split(":")[1] === "cpu") ??
        types.find((t) => t.ID.includes(":cpu:")) ??
        types[0]
      ).ID;
    const typeOptions: [string, string][] = types.map((t) => [t.ID, t.ID]);
    if (type && !types.some((t) => t.ID === type)) typeOptions.push([type, `${type} (no data in range)`]);
    setOptions(this.type, typeOptions, type);
    if (type) out.set("type", type);

    const typeMatcher = type ? [`{__profile_type__=${quoteLabel(type)}}`] : [];
    const services = await api.labelValues("service_name", typeMatcher, start, end);
    let service = params.get("service");
    if (service === null && services.length) service = services[0];
    const serviceOptions: [string, string][] = [["", "(all services)"], ...services.map((s): [string, string] => [s, s])];
    if (service && !services.includes(service)) serviceOptions.push([service, `${service} (no data in range)`]);
    setOptions(this.service, serviceOptions, service ?? "");
    if (service) out.set("service", service);

    // Filter chips, and the label names of the selection for new filters.
    clear(this.filters);
    for (const f of params.getAll("m")) {
      const remove = () => {
        const p = currentRoute().params;
        const rest = p.getAll("m").filter((x) => x !== f);
        p.delete("m");
        rest.forEach((x) => p.append("m", x));
        navigate(currentRoute().view, p);
      };
      const i = f.indexOf("=");
      this.filters.append(
        h(
          "span",
          { class: "chip", "data-matcher": f },
          `${f.slice(0, i)}="${f.slice(i + 1)}"`,
          h("button", { type: "button", title: "Remove this filter", onclick: remove }, "×"),
        ),
      );
    }
    const base = selectorOf(this.matchers(out));
    const names = (await api.labelNames([base], start, end)).filter((n) => !n.startsWith("__") && n !== "service_name");
    setOptions(this.filterName, [["", "label…"], ...names.map((n): [string, string] => [n, n])]);
    await this.loadFilterValues();
    return out;
  }

  private async loadFilterValues(): Promise<void> {
    const name = this.filterName.value;
    if (!name) {
      setOptions(this.filterValue, [["", "value…"]]);
      return;
    }
    const params = currentRoute().params;
    const { start, end } = this.range(params);
    const values = await api.labelValues(name, [this.selector(params)], start, end);
    setOptions(this.filterValue, values.map((v): [string, string] => [v, v]));
  }
}

/** A small area chart of the selection's total over time (SVG built with the DOM). */
function drawSeries(container: HTMLElement, points: [number, number][], start: number, end: number, unit: string): void {
  clear(container);
  const ns = "http://www.w3.org/2000/svg";
  const W = 1000;
  const H = 60;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "series");
  const max = Math.max(1, ...points.map(([, v]) => v));
  const x = (t: number) => ((t - start) / Math.max(1, end - start)) * W;
  const y = (v: number) => H - (v / max) * (H - 4);
  if (points.length) {
    const sorted = [...points].sort((a, b) => a[0] - b[0]);
    let d = `M ${x(sorted[0][0]).toFixed(1)} ${H}`;
    for (const [t, v] of sorted) d += ` L ${x(t).toFixed(1)} ${y(v).toFixed(1)}`;
    d += ` L ${x(sorted[sorted.length - 1][0]).toFixed(1)} ${H} Z`;
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  container.append(
    svg,
    h(
      "div",
      { class: "series-axis" },
      h("span", {}, fmtTime(start)),
      h("span", {}, points.length ? `peak ${fmtValue(max, unit)} per step` : "no data in this range"),
      h("span", {}, fmtTime(end)),
    ),
  );
}

/** The flame graph of the query bar's selection, with search and a table of functions. */
class FlameView {
  readonly section = byId("view-flame");
  readonly search = byId<HTMLInputElement>("search");
  readonly graph: FlameGraphView;
  private seq = 0;

  constructor(private readonly bar: QueryBar) {
    this.graph = new FlameGraphView(byId("flamegraph"));
    this.search.addEventListener("input", () => {
      this.graph.setSearch(this.search.value);
      const p = currentRoute().params;
      if (this.search.value) p.set("search", this.search.value);
      else p.delete("search");
      history.replaceState(null, "", routeHash("flame", p));
      this.section.dataset.route = location.hash;
    });
    byId("reset-zoom").addEventListener("click", () => this.graph.zoomTo(null));
  }

  async show(params: URLSearchParams): Promise<void> {
    const seq = ++this.seq;
    setState(this.section, "loading");
    try {
      const filled = await this.bar.sync(params);
      if (seq !== this.seq) return;
      if (filled.toString() !== params.toString()) {
        navigate("flame", filled, true);
        return;
      }
      const type = params.get("type");
      if (!type) {
        this.graph.set(null);
        clear(byId("series"));
        clear(byId("top-functions"));
        setState(this.section, "ready", "No profiles in this range: push some, or pick a longer range.");
        return;
      }
      const { start, end } = this.bar.range(params);
      const sel: ProfileQuery = { type, selector: this.bar.selector(params), start, end };
      const step = Math.max(10, Math.round((end - start) / 1000 / 120));
      const [fg, points] = await Promise.all([api.flamegraph(sel), api.series(sel, step)]);
      if (seq !== this.seq) return;
      const unit = this.bar.unit(type);
      drawSeries(byId("series"), points, start, end, unit);
      const data = flameData(fg, unit);
      this.search.value = params.get("search") ?? "";
      this.graph.setSearch(this.search.value);
      this.graph.set(data);
      this.topFunctions(data);
      byId("flame-title").textContent = `${sel.selector} · ${type} · ${fmtTime(start)} – ${fmtTime(end)}`;
      setState(this.section, "ready", data.root.total === 0 ? "No samples match this selection." : undefined);
    } catch (e) {
      if (seq === this.seq) setState(this.section, "error", errorText(e));
    }
  }

  private topFunctions(data: FlameData): void {
    const table = byId("top-functions");
    clear(table);
    const total = data.root.total || 1;
    const rows = functionTotals(data)
      .sort((a, b) => b.self - a.self || b.total - a.total)
      .slice(0, 30);
    table.append(
      h(
        "thead",
        {},
        h("tr", {}, h("th", {}, "Function"), h("th", {}, "Self"), h("th", {}, "Self %"), h("th", {}, "Total"), h("th", {}, "Total %")),
      ),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            { "data-function": r.name },
            h(
              "td",
              {},
              h(
                "a",
                {
                  href: "#",
                  title: "Highlight in the flame graph",
                  onclick: (ev: Event) => {
                    ev.preventDefault();
                    this.search.value = r.name;
                    this.search.dispatchEvent(new Event("input"));
                  },
                },
                r.name,
              ),
            ),
            h("td", { class: "num" }, fmtValue(r.self, data.unit)),
            h("td", { class: "num" }, fmtPct(r.self / total)),
            h("td", { class: "num" }, fmtValue(r.total, data.unit)),
            h("td", { class: "num" }, fmtPct(r.total / total)),
          ),
        ),
      ),
    );
  }
}

/** Baseline against comparison: two ranges, or two label selections, or both. */
class DiffView {
  readonly section = byId("view-diff");
  readonly lq = byId<HTMLInputElement>("diff-left-query");
  readonly lfrom = byId<HTMLInputElement>("diff-left-from");
  readonly luntil = byId<HTMLInputElement>("diff-left-until");
  readonly rq = byId<HTMLInputElement>("diff-right-query");
  readonly rfrom = byId<HTMLInputElement>("diff-right-from");
  readonly runtil = byId<HTMLInputElement>("diff-right-until");
  readonly search = byId<HTMLInputElement>("diff-search");
  readonly label = byId<HTMLSelectElement>("diff-label");
  readonly valueA = byId<HTMLSelectElement>("diff-value-a");
  readonly valueB = byId<HTMLSelectElement>("diff-value-b");
  readonly graph: FlameGraphView;
  private seq = 0;

  constructor(private readonly bar: QueryBar) {
    this.graph = new FlameGraphView(byId("diff-flamegraph"));
    byId("diff-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.bar.apply({
        lq: this.lq.value.trim(),
        lfrom: this.lfrom.value.trim(),
        luntil: this.luntil.value.trim(),
        rq: this.rq.value.trim(),
        rfrom: this.rfrom.value.trim(),
        runtil: this.runtil.value.trim(),
      });
    });
    byId("diff-previous").addEventListener("click", () => {
      // The query bar's range against the period of the same length just before it.
      const p = currentRoute().params;
      try {
        const { start, end } = this.bar.range(p);
        const sel = this.bar.selector(p);
        this.bar.apply({
          lq: sel,
          rq: sel,
          lfrom: String(start - (end - start)),
          luntil: String(start),
          rfrom: String(start),
          runtil: String(end),
        });
      } catch (e) {
        setState(this.section, "error", errorText(e));
      }
    });
    byId("diff-by-label").addEventListener("click", () => {
      // The query bar's range for both, one label value against another.
      const p = currentRoute().params;
      const name = this.label.value;
      if (!name) return;
      const base = this.bar.matchers(p).filter(([n]) => n !== name);
      this.bar.apply({
        lq: selectorOf([...base, [name, this.valueA.value]]),
        rq: selectorOf([...base, [name, this.valueB.value]]),
        lfrom: p.get("from") || "now-1h",
        luntil: p.get("until") || "now",
        rfrom: p.get("from") || "now-1h",
        runtil: p.get("until") || "now",
      });
    });
    this.label.addEventListener("change", () => void this.loadLabelValues());
    this.search.addEventListener("input", () => {
      this.graph.setSearch(this.search.value);
      const p = currentRoute().params;
      if (this.search.value) p.set("search", this.search.value);
      else p.delete("search");
      history.replaceState(null, "", routeHash("diff", p));
      this.section.dataset.route = location.hash;
    });
    byId("diff-reset-zoom").addEventListener("click", () => this.graph.zoomTo(null));
  }

  async show(params: URLSearchParams): Promise<void> {
    const seq = ++this.seq;
    setState(this.section, "loading");
    try {
      const filled = await this.bar.sync(params);
      if (seq !== this.seq) return;
      // Defaults: the query bar's selection, its range against the period before it.
      const { start, end } = this.bar.range(filled);
      const sel = this.bar.selector(filled);
      const defaults: [string, string][] = [
        ["lq", sel],
        ["rq", sel],
        ["lfrom", String(start - (end - start))],
        ["luntil", String(start)],
        ["rfrom", filled.get("from") || "now-1h"],
        ["runtil", filled.get("until") || "now"],
      ];
      for (const [k, v] of defaults) if (!filled.get(k)) filled.set(k, v);
      if (filled.toString() !== params.toString()) {
        navigate("diff", filled, true);
        return;
      }
      const type = params.get("type");
      this.lq.value = params.get("lq")!;
      this.lfrom.value = params.get("lfrom")!;
      this.luntil.value = params.get("luntil")!;
      this.rq.value = params.get("rq")!;
      this.rfrom.value = params.get("rfrom")!;
      this.runtil.value = params.get("runtil")!;
      await this.loadLabels(params);
      if (!type) {
        this.graph.set(null);
        setState(this.section, "ready", "No profiles in this range: push some, or pick a longer range.");
        return;
      }
      const now = Date.now();
      const left: ProfileQuery = {
        type,
        selector: this.lq.value,
        start: parseTime(this.lfrom.value, now),
        end: parseTime(this.luntil.value, now),
      };
      const right: ProfileQuery = {
        type,
        selector: this.rq.value,
        start: parseTime(this.rfrom.value, now),
        end: parseTime(this.runtil.value, now),
      };
      const fg = await api.diff(left, right);
      if (seq !== this.seq) return;
      const data = diffData(fg, this.bar.unit(type));
      this.search.value = params.get("search") ?? "";
      this.graph.setSearch(this.search.value);
      this.graph.set(data);
      byId("diff-title").textContent =
        `baseline ${left.selector} ${fmtTime(left.start)} – ${fmtTime(left.end)}  vs  ` +
        `comparison ${right.selector} ${fmtTime(right.start)} – ${fmtTime(right.end)}`;
      const empty = !data.diff || data.diff.leftTicks === 0 || data.diff.rightTicks === 0;
      setState(this.section, "ready", empty ? "One side has no samples: widths show the other side only." : undefined);
    } catch (e) {
      if (seq === this.seq) setState(this.section, "error", errorText(e));
    }
  }

  private async loadLabels(params: URLSearchParams): Promise<void> {
    const { start, end } = this.bar.range(params);
    const names = await api.labelNames([this.bar.selector(params)], start, end);
    setOptions(
      this.label,
      [["", "label…"], ...names.filter((n) => !n.startsWith("__")).map((n): [string, string] => [n, n])],
      this.label.value || (names.includes("version") ? "version" : ""),
    );
    await this.loadLabelValues();
  }

  private async loadLabelValues(): Promise<void> {
    const name = this.label.value;
    const params = currentRoute().params;
    if (!name) {
      setOptions(this.valueA, []);
      setOptions(this.valueB, []);
      return;
    }
    const { start, end } = this.bar.range(params);
    const base = this.bar.matchers(params).filter(([n]) => n !== name);
    const values = await api.labelValues(name, [selectorOf(base)], start, end);
    const options = values.map((v): [string, string] => [v, v]);
    setOptions(this.valueA, options, values[0]);
    setOptions(this.valueB, options, values[values.length - 1]);
  }
}

/** The diff route of an anomaly: its baseline against its evaluated windows. */
function anomalyDiffParams(a: Anomaly): URLSearchParams {
  const link = new URLSearchParams(a.svg_url.includes("?") ? a.svg_url.slice(a.svg_url.indexOf("?") + 1) : "");
  const selectorIn = (query: string | null): string | null => {
    if (!query) return null;
    const i = query.indexOf("{");
    return i < 0 ? null : query.slice(i);
  };
  const fallback = selectorOf([["service_name", a.service_name], ...Object.entries(a.labels ?? {})]);
  const p = new URLSearchParams();
  p.set("type", a.profile_type);
  p.set("service", a.service_name);
  const lfrom = link.get("left_from") ?? String(a.baseline_start_ms);
  const runtil = link.get("right_until") ?? String(a.window_end_ms);
  p.set("from", lfrom);
  p.set("until", runtil);
  p.set("lq", selectorIn(link.get("left_query")) ?? fallback);
  p.set("lfrom", lfrom);
  p.set("luntil", link.get("left_until") ?? String(a.baseline_end_ms));
  p.set("rq", selectorIn(link.get("right_query")) ?? fallback);
  p.set("rfrom", link.get("right_from") ?? String(a.window_start_ms));
  p.set("runtil", runtil);
  p.set("search", a.function);
  return p;
}

/** What the detector found (`GET /api/v1/anomalies`), each with a link to its diff. */
class AnomaliesView {
  readonly section = byId("view-anomalies");
  readonly kind = byId<HTMLSelectElement>("anomaly-kind");
  readonly since = byId<HTMLSelectElement>("anomaly-since");
  readonly all = byId<HTMLInputElement>("anomaly-all");
  private seq = 0;

  constructor(private readonly bar: QueryBar) {
    setOptions(this.kind, [
      ["", "all kinds"],
      ["regression", "regressions"],
      ["improvement", "improvements"],
      ["shift", "shifts"],
    ]);
    setOptions(this.since, [
      ["now-1h", "last hour"],
      ["now-6h", "last 6 hours"],
      ["now-24h", "last 24 hours"],
      ["now-7d", "last 7 days"],
      ["now-30d", "last 30 days"],
    ]);
    const update = () =>
      this.bar.apply({ kind: this.kind.value, since: this.since.value, all: this.all.checked ? "1" : null });
    this.kind.addEventListener("change", update);
    this.since.addEventListener("change", update);
    this.all.addEventListener("change", update);
  }

  async show(params: URLSearchParams): Promise<void> {
    const seq = ++this.seq;
    setState(this.section, "loading");
    try {
      const filled = await this.bar.sync(params);
      if (seq !== this.seq) return;
      if (filled.toString() !== params.toString()) {
        navigate("anomalies", filled, true);
        return;
      }
      this.kind.value = params.get("kind") ?? "";
      this.since.value = params.get("since") ?? "now-24h";
      this.all.checked = params.get("all") === "1";
      const service = this.all.checked ? "" : (params.get("service") ?? "");
      const list = await api.anomalies({
        service,
        kind: this.kind.value,
        from: this.since.value,
        until: "now",
        limit: "500",
      });
      if (seq !== this.seq) return;
      this.render(list);
      setState(this.section, "ready", list.length ? undefined : "No anomalies in this range.");
    } catch (e) {
      if (seq === this.seq) setState(this.section, "error", errorText(e));
    }
  }

  private render(list: Anomaly[]): void {
    const table = byId("anomalies");
    clear(table);
    table.append(
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Detected", "Service", "Function", "Kind", "Severity", "Share", "Change", "Windows", "Version", "Diff"].map((c) =>
            h("th", {}, c),
          ),
        ),
      ),
    );
    const body = h("tbody");
    for (const a of list) {
      const labels = Object.entries(a.labels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(", ");
      const versions =
        a.version_before && a.version_after && a.version_before !== a.version_after
          ? `${a.version_before} → ${a.version_after}`
          : (a.version_after ?? a.version_before ?? "");
      body.append(
        h(
          "tr",
          {
            class: `anomaly kind-${a.kind}`,
            "data-anomaly-id": a.anomaly_id,
            "data-function": a.function,
            "data-kind": a.kind,
          },
          h("td", { title: `windows ${fmtTime(a.window_start_ms)} – ${fmtTime(a.window_end_ms)}` }, fmtTime(a.detected_at_ms)),
          h("td", {}, a.service_name, labels ? h("div", { class: "muted" }, labels) : null),
          h("td", { class: "function" }, a.function, h("div", { class: "muted" }, `${a.metric} · ${a.baseline} baseline`)),
          h("td", {}, h("span", { class: `badge ${a.kind}` }, a.kind)),
          h("td", {}, h("span", { class: `badge sev-${a.severity}` }, a.severity)),
          h("td", { class: "num" }, `${fmtPct(a.baseline_share)} → ${fmtPct(a.current_share)}`),
          h("td", { class: "num" }, fmtPp(a.delta)),
          h("td", { class: "num" }, String(a.windows)),
          h("td", {}, versions),
          h(
            "td",
            {},
            h("a", { class: "diff-link", href: routeHash("diff", anomalyDiffParams(a)) }, "diff"),
            " · ",
            h("a", { class: "svg-link", href: a.svg_url.replace(/^\//, ""), target: "_blank", rel: "noopener" }, "svg"),
          ),
        ),
      );
    }
    table.append(body);
  }
}

/** The SQL console: `POST /api/v1/sql`, rows as a table, errors as messages. */
class SqlView {
  readonly section = byId("view-sql");
  readonly query = byId<HTMLTextAreaElement>("sql-query");
  private seq = 0;

  constructor() {
    byId("sql-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.run();
    });
    this.query.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        void this.run();
      }
    });
  }

  show(): void {
    // The console's state belongs to its last query, which survives leaving the view.
    if (!this.section.dataset.state) setState(this.section, "ready");
    else this.section.dataset.route = location.hash;
  }

  async run(): Promise<void> {
    const seq = ++this.seq;
    const table = byId("sql-result");
    const status = byId("sql-status");
    const error = byId("sql-error");
    setState(this.section, "loading");
    error.hidden = true;
    status.textContent = "running…";
    const started = performance.now();
    try {
      const rows = await api.sql(this.query.value);
      if (seq !== this.seq) return;
      clear(table);
      const shown = rows.slice(0, 1000);
      const columns: string[] = [];
      for (const r of shown) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
      table.append(
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
        h(
          "tbody",
          {},
          shown.map((r) =>
            h(
              "tr",
              {},
              columns.map((c) => {
                const v = r[c];
                if (v === null || v === undefined) return h("td", { class: "null" }, "NULL");
                const text = typeof v === "object" ? JSON.stringify(v) : String(v);
                return h("td", { class: typeof v === "number" ? "num" : undefined }, text);
              }),
            ),
          ),
        ),
      );
      const ms = Math.round(performance.now() - started);
      status.textContent =
        `${fmtInt(rows.length)} row${rows.length === 1 ? "" : "s"}` +
        (rows.length > shown.length ? ` (first ${shown.length} shown)` : "") +
        ` in ${ms} ms`;
      setState(this.section, "ready");
    } catch (e) {
      if (seq !== this.seq) return;
      clear(table);
      status.textContent = "";
      error.textContent = errorText(e);
      error.hidden = false;
      setState(this.section, "error");
    }
  }
}
