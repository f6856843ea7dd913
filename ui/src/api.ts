// The server's APIs as the UI calls them: Connect JSON for `querier.v1.QuerierService`,
// `GET /api/v1/anomalies` and `POST /api/v1/sql`. Every request carries the tenant
// (`X-Scope-OrgID`) and the bearer token when the user set them (kept in localStorage).

const TENANT_KEY = "stackdrift.tenant";
const TOKEN_KEY = "stackdrift.token";

/** Tenant and token, as stored in localStorage (empty when unset). */
const auth = {
  get tenant(): string {
    return localStorage.getItem(TENANT_KEY) ?? "";
  },
  get token(): string {
    return localStorage.getItem(TOKEN_KEY) ?? "";
  },
  save(tenant: string, token: string): void {
    const put = (k: string, v: string) => (v ? localStorage.setItem(k, v) : localStorage.removeItem(k));
    put(TENANT_KEY, tenant.trim());
    put(TOKEN_KEY, token.trim());
  },
};

class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

function authHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  if (auth.tenant) headers["X-Scope-OrgID"] = auth.tenant;
  if (auth.token) headers["Authorization"] = `Bearer ${auth.token}`;
  return headers;
}

/** Fetches and parses JSON; errors become an ApiError with the server's message. */
async function fetchJson<T>(url: string, init: RequestInit): Promise<T> {
  const headers = { ...authHeaders(), ...((init.headers as Record<string, string>) ?? {}) };
  const resp = await fetch(url, { ...init, headers });
  const text = await resp.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = undefined;
  }
  if (!resp.ok) {
    const b = body as { message?: string; error?: string } | undefined;
    const msg = b?.message ?? b?.error ?? (text.trim() || resp.statusText);
    const hint = resp.status === 401 ? " (set the tenant token at the top right)" : "";
    throw new ApiError(`${resp.status}: ${msg}${hint}`, resp.status);
  }
  if (body === undefined) throw new ApiError(`${url}: the answer is not JSON`, resp.status);
  return body as T;
}

/** One Connect unary call with a JSON body. */
function connect<T>(method: string, request: object): Promise<T> {
  return fetchJson<T>(`querier.v1.QuerierService/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
}

interface ProfileType {
  ID: string;
  name?: string;
  sampleType?: string;
  sampleUnit?: string;
  periodType?: string;
  periodUnit?: string;
}

/** A flame graph as Connect JSON sends it (int64 as strings, zero fields left out). */
interface WireFlameGraph {
  names?: string[];
  levels?: { values?: (string | number)[] }[];
  total?: string | number;
  maxSelf?: string | number;
  leftTicks?: string | number;
  rightTicks?: string | number;
}

/** What a flame graph selects: profile type, label selector, time range (Unix ms). */
interface ProfileQuery {
  type: string;
  selector: string;
  start: number;
  end: number;
}

const MAX_NODES = 4096;

function stacktracesRequest(s: ProfileQuery): object {
  return {
    profileTypeID: s.type,
    labelSelector: s.selector,
    start: String(s.start),
    end: String(s.end),
    maxNodes: String(MAX_NODES),
  };
}

const api = {
  async profileTypes(start: number, end: number): Promise<ProfileType[]> {
    const r = await connect<{ profileTypes?: ProfileType[] }>("ProfileTypes", {
      start: String(start),
      end: String(end),
    });
    return r.profileTypes ?? [];
  },

  async labelNames(matchers: string[], start: number, end: number): Promise<string[]> {
    const r = await connect<{ names?: string[] }>("LabelNames", {
      matchers,
      start: String(start),
      end: String(end),
    });
    return r.names ?? [];
  },

  async labelValues(name: string, matchers: string[], start: number, end: number): Promise<string[]> {
    const r = await connect<{ names?: string[] }>("LabelValues", {
      name,
      matchers,
      start: String(start),
      end: String(end),
    });
    return r.names ?? [];
  },

  async flamegraph(s: ProfileQuery): Promise<WireFlameGraph> {
    const r = await connect<{ flamegraph?: WireFlameGraph }>("SelectMergeStacktraces", stacktracesRequest(s));
    return r.flamegraph ?? {};
  },

  async diff(left: ProfileQuery, right: ProfileQuery): Promise<WireFlameGraph> {
    const r = await connect<{ flamegraph?: WireFlameGraph }>("Diff", {
      left: stacktracesRequest(left),
      right: stacktracesRequest(right),
    });
    return r.flamegraph ?? {};
  },

  /** The selection's total per step (seconds), one series. */
  async series(s: ProfileQuery, stepSecs: number): Promise<[number, number][]> {
    const r = await connect<{ series?: { points?: { value?: number; timestamp?: string | number }[] }[] }>(
      "SelectSeries",
      {
        profileTypeID: s.type,
        labelSelector: s.selector,
        start: String(s.start),
        end: String(s.end),
        step: stepSecs,
      },
    );
    const points = r.series?.[0]?.points ?? [];
    return points.map((p) => [Number(p.timestamp ?? 0), Number(p.value ?? 0)]);
  },

  async anomalies(params: Record<string, string>): Promise<Anomaly[]> {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== ""));
    const r = await fetchJson<{ anomalies?: Anomaly[] }>(`api/v1/anomalies?${q}`, { method: "GET" });
    return r.anomalies ?? [];
  },

  async sql(query: string): Promise<Record<string, unknown>[]> {
    return fetchJson<Record<string, unknown>[]>("api/v1/sql?format=json", {
      method: "POST",
      headers: { "Content-Type": "text/plain" },
      body: query,
    });
  },
};

/** One row of `GET /api/v1/anomalies` (the fields the UI uses). */
interface Anomaly {
  anomaly_id: string;
  service_name: string;
  profile_type: string;
  labels?: Record<string, string>;
  kind: string;
  baseline: string;
  metric: string;
  function: string;
  baseline_share: number;
  current_share: number;
  delta: number;
  severity: string;
  detected_at_ms: number;
  window_start_ms: number;
  window_end_ms: number;
  baseline_start_ms: number;
  baseline_end_ms: number;
  windows: number;
  version_before?: string | null;
  version_after?: string | null;
  svg_url: string;
  query_url?: string;
}
