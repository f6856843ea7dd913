"use strict";
// Small helpers shared by the whole UI: DOM building, number, time and unit formatting.
//
// The UI is compiled by tsc into one classic script (ui/tsconfig.json: outFile, no
// modules), so the files share one scope; their order is the `files` list there.
/** Creates an element: attributes starting with `on` become listeners, `class` the class. */
function h(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === false)
            continue;
        if (typeof v === "function") {
            e.addEventListener(k.slice(2), v);
        }
        else if (v === true) {
            e.setAttribute(k, "");
        }
        else {
            e.setAttribute(k, String(v));
        }
    }
    appendAll(e, children);
    return e;
}
function appendAll(e, children) {
    for (const c of children) {
        if (Array.isArray(c)) {
            appendAll(e, c);
        }
        else if (c !== null && c !== undefined && c !== false) {
            e.append(c);
        }
    }
}
/** The element with this ID (it must exist). */
function byId(id) {
    const e = document.getElementById(id);
    if (!e)
        throw new Error(`no element #${id}`);
    return e;
}
function clear(e) {
    while (e.firstChild)
        e.removeChild(e.firstChild);
}
/** Options of a <select>; keeps the current value when it is still offered. */
function setOptions(sel, options, wanted) {
    const want = wanted ?? sel.value;
    clear(sel);
    for (const [value, label] of options) {
        sel.append(h("option", { value }, label));
    }
    if (options.some(([v]) => v === want))
        sel.value = want;
}
/** 1234567 → "1,234,567". */
function fmtInt(n) {
    return Math.round(n).toLocaleString("en-US");
}
/** A share (0–1) as a percentage. */
function fmtPct(x) {
    if (!isFinite(x))
        return "–";
    const p = x * 100;
    const digits = Math.abs(p) >= 10 ? 1 : 2;
    return `${p.toFixed(digits)}%`;
}
/** A signed change in percentage points. */
function fmtPp(x) {
    const p = x * 100;
    return `${p >= 0 ? "+" : ""}${p.toFixed(2)} pp`;
}
/** A value in the profile's sample unit (`nanoseconds`, `bytes`, `count`, …). */
function fmtValue(v, unit) {
    const scaled = (steps) => {
        let [div, name] = steps[0];
        for (const [d, n] of steps) {
            if (Math.abs(v) >= d)
                [div, name] = [d, n];
        }
        const x = v / div;
        const digits = Math.abs(x) >= 100 || div === 1 ? 0 : Math.abs(x) >= 10 ? 1 : 2;
        return `${x.toFixed(digits)} ${name}`;
    };
    switch (unit) {
        case "nanoseconds":
            return scaled([[1, "ns"], [1e3, "µs"], [1e6, "ms"], [1e9, "s"], [60e9, "min"], [3600e9, "h"]]);
        case "microseconds":
            return scaled([[1, "µs"], [1e3, "ms"], [1e6, "s"], [60e6, "min"], [3600e6, "h"]]);
        case "milliseconds":
            return scaled([[1, "ms"], [1e3, "s"], [60e3, "min"], [3600e3, "h"]]);
        case "seconds":
            return scaled([[1, "s"], [60, "min"], [3600, "h"]]);
        case "bytes":
            return scaled([[1, "B"], [1024, "KiB"], [1024 ** 2, "MiB"], [1024 ** 3, "GiB"], [1024 ** 4, "TiB"]]);
        default: {
            if (Math.abs(v) < 1e4)
                return fmtInt(v);
            return scaled([[1, ""], [1e3, "k"], [1e6, "M"], [1e9, "G"]]).replace(" ", "");
        }
    }
}
/** Unix ms as local `YYYY-MM-DD HH:MM:SS`. */
function fmtTime(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return (`${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
        `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`);
}
const UNIT_MS = {
    s: 1e3,
    m: 60e3,
    h: 3600e3,
    d: 86400e3,
    w: 7 * 86400e3,
};
/**
 * A time as the user writes it, to Unix ms: `now`, `now-1h`, `now+30m` (s, m, h, d, w),
 * a Unix timestamp in s, ms, µs or ns (told apart by size), or a date `Date.parse` reads
 * (`2025-01-31T12:00`, local time unless it names a zone).
 */
function parseTime(text, nowMs) {
    const s = text.trim();
    const rel = /^now(?:\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$/.exec(s);
    if (rel) {
        if (!rel[1])
            return nowMs;
        const delta = parseFloat(rel[2]) * UNIT_MS[rel[3]];
        return Math.round(rel[1] === "-" ? nowMs - delta : nowMs + delta);
    }
    if (/^\d+$/.test(s)) {
        const n = Number(s);
        if (n < 1e11)
            return n * 1e3;
        if (n < 1e14)
            return n;
        if (n < 1e17)
            return Math.floor(n / 1e3);
        return Math.floor(n / 1e6);
    }
    const t = Date.parse(s.includes(" ") && !s.includes("T") ? s.replace(" ", "T") : s);
    if (isNaN(t))
        throw new Error(`cannot read the time "${text}" (try now-1h, a date or Unix ms)`);
    return t;
}
/** A stable hash of a string (FNV-1a 32), for colours. */
function hashString(s) {
    let x = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) {
        x ^= s.charCodeAt(i);
        x = Math.imul(x, 0x01000193) >>> 0;
    }
    return x;
}
/** A label value quoted for a Prometheus selector. */
function quoteLabel(v) {
    return `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}
/** `{a="x", b="y"}` from matchers; `{}` when there are none. */
function selectorOf(matchers) {
    return `{${matchers.map(([n, v]) => `${n}=${quoteLabel(v)}`).join(", ")}}`;
}
/** The message of anything thrown. */
function errorText(e) {
    return e instanceof Error ? e.message : String(e);
}
// The server's APIs as the UI calls them: Connect JSON for `querier.v1.QuerierService`,
// `GET /api/v1/anomalies` and `POST /api/v1/sql`. Every request carries the tenant
// (`X-Scope-OrgID`) and the bearer token when the user set them (kept in localStorage).
const TENANT_KEY = "stackdrift.tenant";
const TOKEN_KEY = "stackdrift.token";
/** Tenant and token, as stored in localStorage (empty when unset). */
const auth = {
    get tenant() {
        return localStorage.getItem(TENANT_KEY) ?? "";
    },
    get token() {
        return localStorage.getItem(TOKEN_KEY) ?? "";
    },
    save(tenant, token) {
        const put = (k, v) => (v ? localStorage.setItem(k, v) : localStorage.removeItem(k));
        put(TENANT_KEY, tenant.trim());
        put(TOKEN_KEY, token.trim());
    },
};
class ApiError extends Error {
    constructor(message, status) {
        super(message);
        this.status = status;
    }
}
function authHeaders() {
    const headers = {};
    if (auth.tenant)
        headers["X-Scope-OrgID"] = auth.tenant;
    if (auth.token)
        headers["Authorization"] = `Bearer ${auth.token}`;
    return headers;
}
/** Fetches and parses JSON; errors become an ApiError with the server's message. */
async function fetchJson(url, init) {
    const headers = { ...authHeaders(), ...(init.headers ?? {}) };
    const resp = await fetch(url, { ...init, headers });
    const text = await resp.text();
    let body = undefined;
    try {
        body = text ? JSON.parse(text) : {};
    }
    catch {
        body = undefined;
    }
    if (!resp.ok) {
        const b = body;
        const msg = b?.message ?? b?.error ?? (text.trim() || resp.statusText);
        const hint = resp.status === 401 ? " (set the tenant token at the top right)" : "";
        throw new ApiError(`${resp.status}: ${msg}${hint}`, resp.status);
    }
    if (body === undefined)
        throw new ApiError(`${url}: the answer is not JSON`, resp.status);
    return body;
}
/** One Connect unary call with a JSON body. */
function connect(method, request) {
    return fetchJson(`querier.v1.QuerierService/${method}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
    });
}
const MAX_NODES = 4096;
function stacktracesRequest(s) {
    return {
        profileTypeID: s.type,
        labelSelector: s.selector,
        start: String(s.start),
        end: String(s.end),
        maxNodes: String(MAX_NODES),
    };
}
const api = {
    async profileTypes(start, end) {
        const r = await connect("ProfileTypes", {
            start: String(start),
            end: String(end),
        });
        return r.profileTypes ?? [];
    },
    async labelNames(matchers, start, end) {
        const r = await connect("LabelNames", {
            matchers,
            start: String(start),
            end: String(end),
        });
        return r.names ?? [];
    },
    async labelValues(name, matchers, start, end) {
        const r = await connect("LabelValues", {
            name,
            matchers,
            start: String(start),
            end: String(end),
        });
        return r.names ?? [];
    },
    async flamegraph(s) {
        const r = await connect("SelectMergeStacktraces", stacktracesRequest(s));
        return r.flamegraph ?? {};
    },
    async diff(left, right) {
        const r = await connect("Diff", {
            left: stacktracesRequest(left),
            right: stacktracesRequest(right),
        });
        return r.flamegraph ?? {};
    },
    /** The selection's total per step (seconds), one series. */
    async series(s, stepSecs) {
        const r = await connect("SelectSeries", {
            profileTypeID: s.type,
            labelSelector: s.selector,
            start: String(s.start),
            end: String(s.end),
            step: stepSecs,
        });
        const points = r.series?.[0]?.points ?? [];
        return points.map((p) => [Number(p.timestamp ?? 0), Number(p.value ?? 0)]);
    },
    async anomalies(params) {
        const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== ""));
        const r = await fetchJson(`api/v1/anomalies?${q}`, { method: "GET" });
        return r.anomalies ?? [];
    },
    async sql(query) {
        return fetchJson("api/v1/sql?format=json", {
            method: "POST",
            headers: { "Content-Type": "text/plain" },
            body: query,
        });
    },
};
// Flame graphs: decoding the level encoding into a tree, and drawing it as absolutely
// positioned <div>s (root at the top), with click to zoom, search highlighting and a tooltip.
//
// Level encoding (querier/src/flamegraph.rs): `levels[d]` holds the nodes at depth d, left to
// right, as `[x_offset, total, self, name_index]` where x_offset is relative to the end of
// the previous node on that level. A diff holds 7-tuples `[left_offset, left_total,
// left_self, right_offset, right_total, right_self, name_index]` over the union of both
// trees, each side in its own coordinates.
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
function decodeLevels(fg, sides) {
    const names = fg.names ?? [];
    const stride = sides * 3 + 1;
    const nodes = [];
    let prev = [];
    (fg.levels ?? []).forEach((level, depth) => {
        const v = (level.values ?? []).map(Number);
        if (v.length % stride !== 0)
            throw new Error(`level ${depth}: ${v.length} values is not a multiple of ${stride}`);
        const ends = new Array(sides).fill(0);
        const cur = [];
        let p = 0;
        for (let i = 0; i < v.length; i += stride) {
            const x = [];
            const t = [];
            const s = [];
            for (let side = 0; side < sides; side++) {
                const o = i + side * 3;
                x.push(ends[side] + v[o]);
                t.push(v[o + 1]);
                s.push(v[o + 2]);
                ends[side] = x[side] + v[o + 1];
            }
            const last = sides - 1;
            const node = {
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
                if (prev.length === 0)
                    throw new Error(`level ${depth} has no parent level`);
                const side = t.findIndex((n) => n > 0);
                const inside = (q) => side < 0 || (q.t[side] > 0 && q.x[side] <= x[side] && x[side] + t[side] <= q.x[side] + q.t[side]);
                while (p < prev.length && !inside(prev[p]))
                    p++;
                if (p === prev.length)
                    throw new Error(`level ${depth}: node ${node.name} has no parent`);
                node.parent = prev[p].node;
                prev[p].node.children.push(node);
            }
            nodes.push(node);
            cur.push({ node, x, t });
        }
        prev = cur;
    });
    if (nodes.length === 0)
        throw new Error("the flame graph has no levels");
    return nodes;
}
/** Sets `x` of every node: children start at their parent's start, in order. */
function layout(root) {
    const stack = [root];
    root.x = 0;
    while (stack.length) {
        const n = stack.pop();
        let x = n.x;
        for (const c of n.children) {
            c.x = x;
            x += c.weight;
            stack.push(c);
        }
    }
}
function flameData(fg, unit) {
    const nodes = decodeLevels(fg, 1);
    for (const n of nodes)
        n.weight = n.total;
    layout(nodes[0]);
    return { root: nodes[0], nodes, unit, maxDepth: Math.max(...nodes.map((n) => n.depth)) };
}
function diffData(fg, unit) {
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
function diffOf(n, d) {
    const before = d.leftTicks > 0 ? (n.base?.total ?? 0) / d.leftTicks : 0;
    const after = d.rightTicks > 0 ? n.total / d.rightTicks : 0;
    const top = Math.max(before, after);
    const change = top > 0 ? (after - before) / top : 0;
    const kind = change >= DIFF_THRESHOLD ? "regression" : change <= -DIFF_THRESHOLD ? "improvement" : "none";
    return { before, after, change, kind };
}
/** Per-function self and total (a function counted once per stack, as in the SQL). */
function functionTotals(data) {
    const totals = new Map();
    const onPath = new Map();
    const walk = (n) => {
        const entry = totals.get(n.name) ?? { self: 0, total: 0 };
        totals.set(n.name, entry);
        entry.self += n.self;
        const depth = onPath.get(n.name) ?? 0;
        if (depth === 0)
            entry.total += n.total;
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
    constructor(container, onChange = () => { }) {
        this.container = container;
        this.onChange = onChange;
        this.data = null;
        this.zoom = null;
        this.search = "";
        this.byId = new Map();
        this.status = h("div", { class: "flame-status" });
        this.graph = h("div", { class: "flame" });
        this.tooltip = h("div", { class: "tooltip", hidden: true });
        container.append(this.status, this.graph, this.tooltip);
        this.graph.addEventListener("click", (ev) => {
            const n = this.nodeAt(ev.target);
            if (n)
                this.zoomTo(n === this.zoom ? n.parent : n);
        });
        this.graph.addEventListener("mousemove", (ev) => this.showTooltip(ev));
        this.graph.addEventListener("mouseleave", () => (this.tooltip.hidden = true));
        window.addEventListener("resize", () => this.render());
    }
    set(data) {
        this.data = data;
        this.zoom = null;
        this.byId = new Map(data ? data.nodes.map((n) => [n.id, n]) : []);
        this.render();
    }
    get zoomed() {
        return this.zoom;
    }
    zoomTo(n) {
        this.zoom = n && n.parent ? n : null;
        this.render();
        this.onChange();
    }
    setSearch(text) {
        this.search = text.trim().toLowerCase();
        this.render();
    }
    nodeAt(target) {
        const e = target?.closest?.(".node");
        return e ? this.byId.get(Number(e.dataset.id)) : undefined;
    }
    matches(n) {
        return this.search !== "" && n.name.toLowerCase().includes(this.search);
    }
    render() {
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
        const draw = (n, left, w, ancestor) => {
            const e = h("div", { class: "node", "data-id": n.id, "data-name": n.name, "data-depth": n.depth });
            e.dataset.total = String(n.total);
            e.dataset.self = String(n.self);
            e.style.left = `${left * 100}%`;
            e.style.width = `${w * 100}%`;
            e.style.top = `${n.depth * ROW_PX}px`;
            if (ancestor)
                e.classList.add("ancestor");
            if (n === this.zoom)
                e.classList.add("focus");
            if (this.search)
                e.classList.add(this.matches(n) ? "match" : "dim");
            if (data.diff) {
                const d = diffOf(n, data.diff);
                e.dataset.change = d.kind;
                e.dataset.delta = d.change.toFixed(4);
                e.style.backgroundColor = diffColor(d.change);
            }
            else {
                e.style.backgroundColor = nodeColor(n.name);
            }
            if (w * width >= 24)
                e.append(h("span", {}, n.name));
            this.graph.append(e);
            drawn++;
            depth = Math.max(depth, n.depth);
        };
        // The zoomed node's ancestors span the whole width.
        for (let a = focus.parent; a; a = a.parent)
            draw(a, 0, 1, true);
        const stack = [focus];
        while (stack.length) {
            const n = stack.pop();
            if (n.weight < minWeight)
                continue;
            draw(n, (n.x - focus.x) * scale, n.weight * scale, false);
            for (let i = n.children.length - 1; i >= 0; i--)
                stack.push(n.children[i]);
        }
        this.graph.style.height = `${(depth + 1) * ROW_PX}px`;
        this.status.textContent = this.summary(focus, drawn);
    }
    summary(focus, drawn) {
        const data = this.data;
        const parts = [];
        if (data.diff) {
            parts.push(`baseline ${fmtValue(data.diff.leftTicks, data.unit)}, comparison ${fmtValue(data.diff.rightTicks, data.unit)}`);
        }
        else {
            parts.push(`total ${fmtValue(data.root.total, data.unit)}`);
        }
        parts.push(`${fmtInt(data.nodes.length)} nodes (${fmtInt(drawn)} drawn)`);
        if (this.zoom)
            parts.push(`zoomed to ${focus.name} (click it again or Reset to zoom out)`);
        if (this.search) {
            // Share of the matches: nodes that match with no matching ancestor, counted once.
            let weight = 0;
            let count = 0;
            const walk = (n) => {
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
    showTooltip(ev) {
        const n = this.nodeAt(ev.target);
        const data = this.data;
        if (!n || !data) {
            this.tooltip.hidden = true;
            return;
        }
        clear(this.tooltip);
        const row = (label, value) => h("tr", {}, h("th", {}, label), h("td", {}, value));
        const rows = [];
        if (data.diff) {
            const d = diffOf(n, data.diff);
            const side = (v, ticks) => `total ${fmtValue(v.total, data.unit)} (${fmtPct(ticks ? v.total / ticks : 0)}), self ${fmtValue(v.self, data.unit)} (${fmtPct(ticks ? v.self / ticks : 0)})`;
            rows.push(row("Baseline", side(n.base ?? { total: 0, self: 0 }, data.diff.leftTicks)));
            rows.push(row("Comparison", side(n, data.diff.rightTicks)));
            rows.push(row("Change", `${fmtPp(d.after - d.before)} of the total (${d.kind})`));
        }
        else {
            const total = data.root.total || 1;
            rows.push(row("Total", `${fmtValue(n.total, data.unit)} (${fmtPct(n.total / total)} of total)`));
            rows.push(row("Self", `${fmtValue(n.self, data.unit)} (${fmtPct(n.self / total)} of total)`));
            if (n.parent && n.parent.total > 0)
                rows.push(row("Of parent", fmtPct(n.total / n.parent.total)));
        }
        this.tooltip.append(h("div", { class: "tooltip-name" }, n.name), h("table", {}, rows));
        this.tooltip.hidden = false;
        const pad = 14;
        const r = this.tooltip.getBoundingClientRect();
        let x = ev.clientX + pad;
        let y = ev.clientY + pad;
        if (x + r.width > window.innerWidth)
            x = Math.max(0, ev.clientX - r.width - pad);
        if (y + r.height > window.innerHeight)
            y = Math.max(0, ev.clientY - r.height - pad);
        this.tooltip.style.left = `${x}px`;
        this.tooltip.style.top = `${y}px`;
    }
}
/** Warm colours, fixed per function name. */
function nodeColor(name) {
    const x = hashString(name);
    const hue = 8 + (x % 42);
    const light = 58 + ((x >>> 8) % 14);
    return `hsl(${hue}, 78%, ${light}%)`;
}
/** Red for a regression, green for an improvement, stronger with the normalized change. */
function diffColor(change) {
    const i = Math.min(1, Math.abs(change));
    if (Math.abs(change) < DIFF_THRESHOLD)
        return "hsl(220, 8%, 84%)";
    const light = 88 - 40 * i;
    return change > 0 ? `hsl(0, 82%, ${light}%)` : `hsl(125, 55%, ${light}%)`;
}
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
const VIEWS = ["flame", "diff", "anomalies", "sql"];
const RANGE_PRESETS = [
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
function currentRoute() {
    const hash = location.hash.replace(/^#\/?/, "");
    const q = hash.indexOf("?");
    const name = (q < 0 ? hash : hash.slice(0, q));
    return {
        view: VIEWS.includes(name) ? name : "flame",
        params: new URLSearchParams(q < 0 ? "" : hash.slice(q + 1)),
    };
}
function routeHash(view, params) {
    const q = params.toString();
    return `#/${view}${q ? `?${q}` : ""}`;
}
/** Goes to a view; `replace` keeps the history entry (for pickers filling defaults). */
function navigate(view, params, replace = false) {
    const hash = routeHash(view, params);
    if (hash === location.hash) {
        app.show();
    }
    else if (replace) {
        history.replaceState(null, "", hash);
        app.show();
    }
    else {
        location.hash = hash;
    }
}
/** Marks a view busy, done or failed. */
function setState(section, state, error) {
    section.dataset.state = state;
    section.dataset.route = location.hash;
    const box = section.querySelector(".view-error");
    if (box) {
        box.textContent = error ?? "";
        box.hidden = !error;
    }
}
/** The shared query bar: profile type, service, label filters and time range. */
class QueryBar {
    constructor() {
        this.type = byId("profile-type");
        this.service = byId("service");
        this.filterName = byId("filter-name");
        this.filterValue = byId("filter-value");
        this.filters = byId("filters");
        this.preset = byId("range-preset");
        this.from = byId("from");
        this.until = byId("until");
        /** Units of the profile types seen, by ID. */
        this.units = new Map();
        setOptions(this.preset, RANGE_PRESETS);
        this.type.addEventListener("change", () => this.apply({ type: this.type.value, m: null }));
        this.service.addEventListener("change", () => this.apply({ service: this.service.value, m: null }));
        this.preset.addEventListener("change", () => {
            if (this.preset.value)
                this.apply({ from: this.preset.value, until: "now" });
        });
        byId("query-form").addEventListener("submit", (ev) => {
            ev.preventDefault();
            this.apply({ from: this.from.value.trim() || "now-1h", until: this.until.value.trim() || "now" });
        });
        this.filterName.addEventListener("change", () => void this.loadFilterValues());
        byId("filter-add").addEventListener("click", () => {
            const name = this.filterName.value;
            const value = this.filterValue.value;
            if (!name)
                return;
            const params = currentRoute().params;
            params.append("m", `${name}=${value}`);
            navigate(currentRoute().view, params);
        });
    }
    /** Changes some parameters of the current route (null removes one) and goes there. */
    apply(changes) {
        const { view, params } = currentRoute();
        for (const [k, v] of Object.entries(changes)) {
            if (v === null || v === "")
                params.delete(k);
            else
                params.set(k, v);
        }
        navigate(view, params);
    }
    /** The route's range, resolved to Unix ms. */
    range(params) {
        const now = Date.now();
        const start = parseTime(params.get("from") || "now-1h", now);
        const end = parseTime(params.get("until") || "now", now);
        if (start >= end)
            throw new Error("the range starts after it ends");
        return { start, end };
    }
    matchers(params) {
        const m = [];
        const service = params.get("service");
        if (service)
            m.push(["service_name", service]);
        for (const f of params.getAll("m")) {
            const i = f.indexOf("=");
            if (i > 0)
                m.push([f.slice(0, i), f.slice(i + 1)]);
        }
        return m;
    }
    selector(params) {
        return selectorOf(this.matchers(params));
    }
    unit(type) {
        return this.units.get(type) ?? type.split(":")[2] ?? "";
    }
    /**
     * Fills the pickers from the route, asking the server for the profile types, services and
     * label names of the range. Returns the route's parameters with defaults filled in (the
     * first profile type, preferring CPU, and the first service) when some were missing.
     */
    async sync(params) {
        const from = params.get("from") || "now-1h";
        const until = params.get("until") || "now";
        this.from.value = from;
        this.until.value = until;
        this.preset.value = until === "now" && RANGE_PRESETS.some(([v]) => v === from) ? from : "";
        const { start, end } = this.range(params);
        const out = new URLSearchParams(params);
        const types = await api.profileTypes(start, end);
        for (const t of types)
            this.units.set(t.ID, t.sampleUnit ?? t.ID.split(":")[2] ?? "");
        let type = params.get("type") ?? "";
        // Prefer CPU time (sample type `cpu`), as Pyroscope does, over sample counts.
        if (!type && types.length)
            type = (types.find((t) => t.ID.split(":")[1] === "cpu") ??
                types.find((t) => t.ID.includes(":cpu:")) ??
                types[0]).ID;
        const typeOptions = types.map((t) => [t.ID, t.ID]);
        if (type && !types.some((t) => t.ID === type))
            typeOptions.push([type, `${type} (no data in range)`]);
        setOptions(this.type, typeOptions, type);
        if (type)
            out.set("type", type);
        const typeMatcher = type ? [`{__profile_type__=${quoteLabel(type)}}`] : [];
        const services = await api.labelValues("service_name", typeMatcher, start, end);
        let service = params.get("service");
        if (service === null && services.length)
            service = services[0];
        const serviceOptions = [["", "(all services)"], ...services.map((s) => [s, s])];
        if (service && !services.includes(service))
            serviceOptions.push([service, `${service} (no data in range)`]);
        setOptions(this.service, serviceOptions, service ?? "");
        if (service)
            out.set("service", service);
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
            this.filters.append(h("span", { class: "chip", "data-matcher": f }, `${f.slice(0, i)}="${f.slice(i + 1)}"`, h("button", { type: "button", title: "Remove this filter", onclick: remove }, "×")));
        }
        const base = selectorOf(this.matchers(out));
        const names = (await api.labelNames([base], start, end)).filter((n) => !n.startsWith("__") && n !== "service_name");
        setOptions(this.filterName, [["", "label…"], ...names.map((n) => [n, n])]);
        await this.loadFilterValues();
        return out;
    }
    async loadFilterValues() {
        const name = this.filterName.value;
        if (!name) {
            setOptions(this.filterValue, [["", "value…"]]);
            return;
        }
        const params = currentRoute().params;
        const { start, end } = this.range(params);
        const values = await api.labelValues(name, [this.selector(params)], start, end);
        setOptions(this.filterValue, values.map((v) => [v, v]));
    }
}
/** A small area chart of the selection's total over time (SVG built with the DOM). */
function drawSeries(container, points, start, end, unit) {
    clear(container);
    const ns = "http://www.w3.org/2000/svg";
    const W = 1000;
    const H = 60;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "series");
    const max = Math.max(1, ...points.map(([, v]) => v));
    const x = (t) => ((t - start) / Math.max(1, end - start)) * W;
    const y = (v) => H - (v / max) * (H - 4);
    if (points.length) {
        const sorted = [...points].sort((a, b) => a[0] - b[0]);
        let d = `M ${x(sorted[0][0]).toFixed(1)} ${H}`;
        for (const [t, v] of sorted)
            d += ` L ${x(t).toFixed(1)} ${y(v).toFixed(1)}`;
        d += ` L ${x(sorted[sorted.length - 1][0]).toFixed(1)} ${H} Z`;
        const path = document.createElementNS(ns, "path");
        path.setAttribute("d", d);
        svg.append(path);
    }
    container.append(svg, h("div", { class: "series-axis" }, h("span", {}, fmtTime(start)), h("span", {}, points.length ? `peak ${fmtValue(max, unit)} per step` : "no data in this range"), h("span", {}, fmtTime(end))));
}
/** The flame graph of the query bar's selection, with search and a table of functions. */
class FlameView {
    constructor(bar) {
        this.bar = bar;
        this.section = byId("view-flame");
        this.search = byId("search");
        this.seq = 0;
        this.graph = new FlameGraphView(byId("flamegraph"));
        this.search.addEventListener("input", () => {
            this.graph.setSearch(this.search.value);
            const p = currentRoute().params;
            if (this.search.value)
                p.set("search", this.search.value);
            else
                p.delete("search");
            history.replaceState(null, "", routeHash("flame", p));
            this.section.dataset.route = location.hash;
        });
        byId("reset-zoom").addEventListener("click", () => this.graph.zoomTo(null));
    }
    async show(params) {
        const seq = ++this.seq;
        setState(this.section, "loading");
        try {
            const filled = await this.bar.sync(params);
            if (seq !== this.seq)
                return;
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
            const sel = { type, selector: this.bar.selector(params), start, end };
            const step = Math.max(10, Math.round((end - start) / 1000 / 120));
            const [fg, points] = await Promise.all([api.flamegraph(sel), api.series(sel, step)]);
            if (seq !== this.seq)
                return;
            const unit = this.bar.unit(type);
            drawSeries(byId("series"), points, start, end, unit);
            const data = flameData(fg, unit);
            this.search.value = params.get("search") ?? "";
            this.graph.setSearch(this.search.value);
            this.graph.set(data);
            this.topFunctions(data);
            byId("flame-title").textContent = `${sel.selector} · ${type} · ${fmtTime(start)} – ${fmtTime(end)}`;
            setState(this.section, "ready", data.root.total === 0 ? "No samples match this selection." : undefined);
        }
        catch (e) {
            if (seq === this.seq)
                setState(this.section, "error", errorText(e));
        }
    }
    topFunctions(data) {
        const table = byId("top-functions");
        clear(table);
        const total = data.root.total || 1;
        const rows = functionTotals(data)
            .sort((a, b) => b.self - a.self || b.total - a.total)
            .slice(0, 30);
        table.append(h("thead", {}, h("tr", {}, h("th", {}, "Function"), h("th", {}, "Self"), h("th", {}, "Self %"), h("th", {}, "Total"), h("th", {}, "Total %"))), h("tbody", {}, rows.map((r) => h("tr", { "data-function": r.name }, h("td", {}, h("a", {
            href: "#",
            title: "Highlight in the flame graph",
            onclick: (ev) => {
                ev.preventDefault();
                this.search.value = r.name;
                this.search.dispatchEvent(new Event("input"));
            },
        }, r.name)), h("td", { class: "num" }, fmtValue(r.self, data.unit)), h("td", { class: "num" }, fmtPct(r.self / total)), h("td", { class: "num" }, fmtValue(r.total, data.unit)), h("td", { class: "num" }, fmtPct(r.total / total))))));
    }
}
/** Baseline against comparison: two ranges, or two label selections, or both. */
class DiffView {
    constructor(bar) {
        this.bar = bar;
        this.section = byId("view-diff");
        this.lq = byId("diff-left-query");
        this.lfrom = byId("diff-left-from");
        this.luntil = byId("diff-left-until");
        this.rq = byId("diff-right-query");
        this.rfrom = byId("diff-right-from");
        this.runtil = byId("diff-right-until");
        this.search = byId("diff-search");
        this.label = byId("diff-label");
        this.valueA = byId("diff-value-a");
        this.valueB = byId("diff-value-b");
        this.seq = 0;
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
            }
            catch (e) {
                setState(this.section, "error", errorText(e));
            }
        });
        byId("diff-by-label").addEventListener("click", () => {
            // The query bar's range for both, one label value against another.
            const p = currentRoute().params;
            const name = this.label.value;
            if (!name)
                return;
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
            if (this.search.value)
                p.set("search", this.search.value);
            else
                p.delete("search");
            history.replaceState(null, "", routeHash("diff", p));
            this.section.dataset.route = location.hash;
        });
        byId("diff-reset-zoom").addEventListener("click", () => this.graph.zoomTo(null));
    }
    async show(params) {
        const seq = ++this.seq;
        setState(this.section, "loading");
        try {
            const filled = await this.bar.sync(params);
            if (seq !== this.seq)
                return;
            // Defaults: the query bar's selection, its range against the period before it.
            const { start, end } = this.bar.range(filled);
            const sel = this.bar.selector(filled);
            const defaults = [
                ["lq", sel],
                ["rq", sel],
                ["lfrom", String(start - (end - start))],
                ["luntil", String(start)],
                ["rfrom", filled.get("from") || "now-1h"],
                ["runtil", filled.get("until") || "now"],
            ];
            for (const [k, v] of defaults)
                if (!filled.get(k))
                    filled.set(k, v);
            if (filled.toString() !== params.toString()) {
                navigate("diff", filled, true);
                return;
            }
            const type = params.get("type");
            this.lq.value = params.get("lq");
            this.lfrom.value = params.get("lfrom");
            this.luntil.value = params.get("luntil");
            this.rq.value = params.get("rq");
            this.rfrom.value = params.get("rfrom");
            this.runtil.value = params.get("runtil");
            await this.loadLabels(params);
            if (!type) {
                this.graph.set(null);
                setState(this.section, "ready", "No profiles in this range: push some, or pick a longer range.");
                return;
            }
            const now = Date.now();
            const left = {
                type,
                selector: this.lq.value,
                start: parseTime(this.lfrom.value, now),
                end: parseTime(this.luntil.value, now),
            };
            const right = {
                type,
                selector: this.rq.value,
                start: parseTime(this.rfrom.value, now),
                end: parseTime(this.runtil.value, now),
            };
            const fg = await api.diff(left, right);
            if (seq !== this.seq)
                return;
            const data = diffData(fg, this.bar.unit(type));
            this.search.value = params.get("search") ?? "";
            this.graph.setSearch(this.search.value);
            this.graph.set(data);
            byId("diff-title").textContent =
                `baseline ${left.selector} ${fmtTime(left.start)} – ${fmtTime(left.end)}  vs  ` +
                    `comparison ${right.selector} ${fmtTime(right.start)} – ${fmtTime(right.end)}`;
            const empty = !data.diff || data.diff.leftTicks === 0 || data.diff.rightTicks === 0;
            setState(this.section, "ready", empty ? "One side has no samples: widths show the other side only." : undefined);
        }
        catch (e) {
            if (seq === this.seq)
                setState(this.section, "error", errorText(e));
        }
    }
    async loadLabels(params) {
        const { start, end } = this.bar.range(params);
        const names = await api.labelNames([this.bar.selector(params)], start, end);
        setOptions(this.label, [["", "label…"], ...names.filter((n) => !n.startsWith("__")).map((n) => [n, n])], this.label.value || (names.includes("version") ? "version" : ""));
        await this.loadLabelValues();
    }
    async loadLabelValues() {
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
        const options = values.map((v) => [v, v]);
        setOptions(this.valueA, options, values[0]);
        setOptions(this.valueB, options, values[values.length - 1]);
    }
}
/** The diff route of an anomaly: its baseline against its evaluated windows. */
function anomalyDiffParams(a) {
    const link = new URLSearchParams(a.svg_url.includes("?") ? a.svg_url.slice(a.svg_url.indexOf("?") + 1) : "");
    const selectorIn = (query) => {
        if (!query)
            return null;
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
    constructor(bar) {
        this.bar = bar;
        this.section = byId("view-anomalies");
        this.kind = byId("anomaly-kind");
        this.since = byId("anomaly-since");
        this.all = byId("anomaly-all");
        this.seq = 0;
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
        const update = () => this.bar.apply({ kind: this.kind.value, since: this.since.value, all: this.all.checked ? "1" : null });
        this.kind.addEventListener("change", update);
        this.since.addEventListener("change", update);
        this.all.addEventListener("change", update);
    }
    async show(params) {
        const seq = ++this.seq;
        setState(this.section, "loading");
        try {
            const filled = await this.bar.sync(params);
            if (seq !== this.seq)
                return;
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
            if (seq !== this.seq)
                return;
            this.render(list);
            setState(this.section, "ready", list.length ? undefined : "No anomalies in this range.");
        }
        catch (e) {
            if (seq === this.seq)
                setState(this.section, "error", errorText(e));
        }
    }
    render(list) {
        const table = byId("anomalies");
        clear(table);
        table.append(h("thead", {}, h("tr", {}, ["Detected", "Service", "Function", "Kind", "Severity", "Share", "Change", "Windows", "Version", "Diff"].map((c) => h("th", {}, c)))));
        const body = h("tbody");
        for (const a of list) {
            const labels = Object.entries(a.labels ?? {})
                .map(([k, v]) => `${k}=${v}`)
                .join(", ");
            const versions = a.version_before && a.version_after && a.version_before !== a.version_after
                ? `${a.version_before} → ${a.version_after}`
                : (a.version_after ?? a.version_before ?? "");
            body.append(h("tr", {
                class: `anomaly kind-${a.kind}`,
                "data-anomaly-id": a.anomaly_id,
                "data-function": a.function,
                "data-kind": a.kind,
            }, h("td", { title: `windows ${fmtTime(a.window_start_ms)} – ${fmtTime(a.window_end_ms)}` }, fmtTime(a.detected_at_ms)), h("td", {}, a.service_name, labels ? h("div", { class: "muted" }, labels) : null), h("td", { class: "function" }, a.function, h("div", { class: "muted" }, `${a.metric} · ${a.baseline} baseline`)), h("td", {}, h("span", { class: `badge ${a.kind}` }, a.kind)), h("td", {}, h("span", { class: `badge sev-${a.severity}` }, a.severity)), h("td", { class: "num" }, `${fmtPct(a.baseline_share)} → ${fmtPct(a.current_share)}`), h("td", { class: "num" }, fmtPp(a.delta)), h("td", { class: "num" }, String(a.windows)), h("td", {}, versions), h("td", {}, h("a", { class: "diff-link", href: routeHash("diff", anomalyDiffParams(a)) }, "diff"), " · ", h("a", { class: "svg-link", href: a.svg_url.replace(/^\//, ""), target: "_blank", rel: "noopener" }, "svg"))));
        }
        table.append(body);
    }
}
/** The SQL console: `POST /api/v1/sql`, rows as a table, errors as messages. */
class SqlView {
    constructor() {
        this.section = byId("view-sql");
        this.query = byId("sql-query");
        this.seq = 0;
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
    show() {
        // The console's state belongs to its last query, which survives leaving the view.
        if (!this.section.dataset.state)
            setState(this.section, "ready");
        else
            this.section.dataset.route = location.hash;
    }
    async run() {
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
            if (seq !== this.seq)
                return;
            clear(table);
            const shown = rows.slice(0, 1000);
            const columns = [];
            for (const r of shown)
                for (const k of Object.keys(r))
                    if (!columns.includes(k))
                        columns.push(k);
            table.append(h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))), h("tbody", {}, shown.map((r) => h("tr", {}, columns.map((c) => {
                const v = r[c];
                if (v === null || v === undefined)
                    return h("td", { class: "null" }, "NULL");
                const text = typeof v === "object" ? JSON.stringify(v) : String(v);
                return h("td", { class: typeof v === "number" ? "num" : undefined }, text);
            })))));
            const ms = Math.round(performance.now() - started);
            status.textContent =
                `${fmtInt(rows.length)} row${rows.length === 1 ? "" : "s"}` +
                    (rows.length > shown.length ? ` (first ${shown.length} shown)` : "") +
                    ` in ${ms} ms`;
            setState(this.section, "ready");
        }
        catch (e) {
            if (seq !== this.seq)
                return;
            clear(table);
            status.textContent = "";
            error.textContent = errorText(e);
            error.hidden = false;
            setState(this.section, "error");
        }
    }
}
// Starts the UI: the tenant settings, the views, and routing on the URL's hash.
class App {
    start() {
        this.bar = new QueryBar();
        this.flame = new FlameView(this.bar);
        this.diff = new DiffView(this.bar);
        this.anomalies = new AnomaliesView(this.bar);
        this.sql = new SqlView();
        const tenant = byId("tenant");
        const token = byId("token");
        tenant.value = auth.tenant;
        token.value = auth.token;
        byId("tenant-form").addEventListener("submit", (ev) => {
            ev.preventDefault();
            auth.save(tenant.value, token.value);
            this.show();
        });
        // Nav links keep the selection (type, service, filters, range) across views.
        for (const a of document.querySelectorAll("nav a[data-view]")) {
            a.addEventListener("click", (ev) => {
                ev.preventDefault();
                const keep = new URLSearchParams();
                const p = currentRoute().params;
                for (const k of ["type", "service", "m", "from", "until"])
                    for (const v of p.getAll(k))
                        keep.append(k, v);
                navigate(a.dataset.view, keep);
            });
        }
        window.addEventListener("hashchange", () => this.show());
        this.show();
    }
    show() {
        const { view, params } = currentRoute();
        for (const v of VIEWS) {
            byId(`view-${v}`).hidden = v !== view;
            document.querySelector(`nav a[data-view="${v}"]`)?.classList.toggle("active", v === view);
        }
        byId("query-form").hidden = view === "sql";
        switch (view) {
            case "flame":
                void this.flame.show(params);
                break;
            case "diff":
                void this.diff.show(params);
                break;
            case "anomalies":
                void this.anomalies.show(params);
                break;
            case "sql":
                this.sql.show();
                break;
        }
    }
}
const app = new App();
document.addEventListener("DOMContentLoaded", () => app.start());
