// Small helpers shared by the whole UI: DOM building, number, time and unit formatting.
//
// The UI is compiled by tsc into one classic script (ui/tsconfig.json: outFile, no
// modules), so the files share one scope; their order is the `files` list there.

type Attrs = { [name: string]: string | number | boolean | undefined | EventListener };
type Child = Node | string | null | undefined | false;

/** Creates an element: attributes starting with `on` become listeners, `class` the class. */
function h(tag: string, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") {
      e.addEventListener(k.slice(2), v);
    } else if (v === true) {
      e.setAttribute(k, "");
    } else {
      e.setAttribute(k, String(v));
    }
  }
  appendAll(e, children);
  return e;
}

function appendAll(e: Element, children: (Child | Child[])[]): void {
  for (const c of children) {
    if (Array.isArray(c)) {
      appendAll(e, c);
    } else if (c !== null && c !== undefined && c !== false) {
      e.append(c);
    }
  }
}

/** The element with this ID (it must exist). */
function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`no element #${id}`);
  return e as T;
}

function clear(e: Element): void {
  while (e.firstChild) e.removeChild(e.firstChild);
}

/** Options of a <select>; keeps the current value when it is still offered. */
function setOptions(sel: HTMLSelectElement, options: [string, string][], wanted?: string): void {
  const want = wanted ?? sel.value;
  clear(sel);
  for (const [value, label] of options) {
    sel.append(h("option", { value }, label));
  }
  if (options.some(([v]) => v === want)) sel.value = want;
}

/** 1234567 → "1,234,567". */
function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** A share (0–1) as a percentage. */
function fmtPct(x: number): string {
  if (!isFinite(x)) return "–";
  const p = x * 100;
  const digits = Math.abs(p) >= 10 ? 1 : 2;
  return `${p.toFixed(digits)}%`;
}

/** A signed change in percentage points. */
function fmtPp(x: number): string {
  const p = x * 100;
  return `${p >= 0 ? "+" : ""}${p.toFixed(2)} pp`;
}

/** A value in the profile's sample unit (`nanoseconds`, `bytes`, `count`, …). */
function fmtValue(v: number, unit: string): string {
  const scaled = (steps: [number, string][]): string => {
    let [div, name] = steps[0];
    for (const [d, n] of steps) {
      if (Math.abs(v) >= d) [div, name] = [d, n];
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
      if (Math.abs(v) < 1e4) return fmtInt(v);
      return scaled([[1, ""], [1e3, "k"], [1e6, "M"], [1e9, "G"]]).replace(" ", "");
    }
  }
}

/** Unix ms as local `YYYY-MM-DD HH:MM:SS`. */
function fmtTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
  );
}

const UNIT_MS: { [u: string]: number } = {
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
function parseTime(text: string, nowMs: number): number {
  const s = text.trim();
  const rel = /^now(?:\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$/.exec(s);
  if (rel) {
    if (!rel[1]) return nowMs;
    const delta = parseFloat(rel[2]) * UNIT_MS[rel[3]];
    return Math.round(rel[1] === "-" ? nowMs - delta : nowMs + delta);
  }
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n < 1e11) return n * 1e3;
    if (n < 1e14) return n;
    if (n < 1e17) return Math.floor(n / 1e3);
    return Math.floor(n / 1e6);
  }
  const t = Date.parse(s.includes(" ") && !s.includes("T") ? s.replace(" ", "T") : s);
  if (isNaN(t)) throw new Error(`cannot read the time "${text}" (try now-1h, a date or Unix ms)`);
  return t;
}

/** A stable hash of a string (FNV-1a 32), for colours. */
function hashString(s: string): number {
  let x = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 0x01000193) >>> 0;
  }
  return x;
}

/** A label value quoted for a Prometheus selector. */
function quoteLabel(v: string): string {
  return `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

/** `{a="x", b="y"}` from matchers; `{}` when there are none. */
function selectorOf(matchers: [string, string][]): string {
  return `{${matchers.map(([n, v]) => `${n}=${quoteLabel(v)}`).join(", ")}}`;
}

/** The message of anything thrown. */
function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
