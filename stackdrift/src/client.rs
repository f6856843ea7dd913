//! The client commands, for terminals and scripts: `stackdrift push | sql | flamegraph | diff |
//! anomalies`, each talking to a running stackdrift over its public HTTP APIs (the same ones
//! SDKs, Grafana and curl use), so they work against any deployment the caller can reach.
//!
//! * `push FILES… --service S [--label k=v]…`: pprof files (raw or gzipped) over `push.v1`
//!   (Connect, `application/proto`), a few at a time, with a progress bar on a terminal.
//! * `sql "SELECT …" [--format table|csv|json]`: `POST /api/v1/sql`; the table is printed from
//!   the Arrow IPC answer, so columns keep their order and types.
//! * `flamegraph --service S [-o out.svg|out.pb.gz]`: the SVG or pprof export, or without `-o`
//!   the heaviest functions as a table.
//! * `diff --service S --baseline-from … --baseline-to … [-o diff.svg]`: the diff SVG, or the
//!   functions whose share of the total changed most.
//! * `anomalies [--service S]`: what the detector found, newest first.
//!
//! Every command takes `--url` (default `http://127.0.0.1:4040`), `--tenant` (`X-Scope-OrgID`)
//! and `--token` (Bearer), also as `STACKDRIFT_URL`, `STACKDRIFT_TENANT`, `STACKDRIFT_TOKEN`.
//! A refused request prints the server's status and message and exits with status 1.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use prost::Message;
use serde_json::Value;
use stackdrift_model::tenant::TENANT_HEADER;
use stackdrift_proto::push::v1::PushRequest;
use stackdrift_proto::querier::v1 as q;
use stackdrift_querier::export::parse_time;

/// The first arguments that select a client command instead of a role.
pub(crate) const COMMANDS: [&str; 5] = ["push", "sql", "flamegraph", "diff", "anomalies"];

/// Profile type of CPU profiles from Go, Python and most SDKs: the default of `flamegraph` and
/// `diff`.
const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// stackdrift's client commands: push profiles to, and read from, a running stackdrift.
#[derive(Debug, Parser)]
#[command(name = "stackdrift", version, max_term_width = 100)]
pub(crate) struct ClientCli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: Connection,
}

/// Where the server is and who we are.
#[derive(Debug, Args)]
struct Connection {
    /// Base URL of stackdrift (an ingester for `push`, a querier for the rest, or `all`).
    #[arg(
        long,
        global = true,
        env = "STACKDRIFT_URL",
        default_value = "http://127.0.0.1:4040"
    )]
    url: String,
    /// Tenant (`X-Scope-OrgID`); absent: the server's `anonymous` tenant.
    #[arg(long, global = true, env = "STACKDRIFT_TENANT")]
    tenant: Option<String>,
    /// Token, sent as `Authorization: Bearer …` (when the server has a tokens file).
    #[arg(long, global = true, env = "STACKDRIFT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds to wait for each answer.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Push pprof files (raw or gzipped) as one service's profiles.
    Push(PushArgs),
    /// Run a SQL query and print the rows.
    Sql(SqlArgs),
    /// Merged flame graph of a service over a range: SVG or pprof file, or a table of the
    /// heaviest functions.
    Flamegraph(FlameArgs),
    /// Compare a baseline range or selection with another: diff SVG, or a table of the
    /// functions whose share changed most.
    Diff(DiffArgs),
    /// List the anomalies the detector found.
    Anomalies(AnomalyArgs),
}

#[derive(Debug, Args)]
struct PushArgs {
    /// pprof files, raw or gzipped.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The `service_name` label.
    #[arg(long)]
    service: String,
    /// More labels, `name=value` (repeatable), e.g. `--label env=prod --label version=1.2`.
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Profile family (`__name__`), e.g. `process_cpu`, `memory`.
    #[arg(long, default_value = "process_cpu")]
    name: String,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SqlFormat {
    /// An aligned table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of row objects.
    Json,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// The query; `-` reads it from standard input.
    query: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    format: SqlFormat,
}

/// What a profile query selects.
#[derive(Debug, Args)]
struct Select {
    /// Service (`service_name`).
    #[arg(long)]
    service: Option<String>,
    /// More label matchers in Prometheus syntax, e.g. `region="eu",version!~"1\..*"`.
    #[arg(long, value_name = "MATCHERS")]
    selector: Option<String>,
    /// Profile type ID.
    #[arg(long = "type", default_value = CPU_TYPE, value_name = "PROFILE_TYPE")]
    profile_type: String,
}

impl Select {
    /// `{service_name="…",…}`: the label selector.
    fn selector(&self, extra: Option<&str>) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.service {
            parts.push(format!("service_name=\"{}\"", escape(s)));
        }
        for m in [self.selector.as_deref(), extra].into_iter().flatten() {
            let m = m
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .trim();
            if !m.is_empty() {
                parts.push(m.to_owned());
            }
        }
        format!("{{{}}}", parts.join(","))
    }
}

#[derive(Debug, Args)]
struct FlameArgs {
    #[command(flatten)]
    select: Select,
    /// Start: Unix seconds/ms, `now` or `now-<n><s|m|h|d>`.
    #[arg(long, default_value = "now-1h")]
    from: String,
    /// End, as `--from`.
    #[arg(long, default_value = "now")]
    to: String,
    /// Write the flame graph here: `.svg` for an SVG, `.pb.gz`/`.pprof`/`.pb` for pprof.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Rows of the table printed without `-o`.
    #[arg(long, default_value_t = 20)]
    top: usize,
}

#[derive(Debug, Args)]
struct DiffArgs {
    #[command(flatten)]
    select: Select,
    /// Start of the baseline (default: `--from`).
    #[arg(long)]
    baseline_from: Option<String>,
    /// End of the baseline (default: `--to`).
    #[arg(long)]
    baseline_to: Option<String>,
    /// Matchers only the baseline adds, e.g. `version="1.1"`.
    #[arg(long, value_name = "MATCHERS")]
    baseline_selector: Option<String>,
    /// Matchers only the comparison adds, e.g. `version="1.2"`.
    #[arg(long, value_name = "MATCHERS")]
    comparison_selector: Option<String>,
    /// Start of the comparison.
    #[arg(long, default_value = "now-1h")]
    from: String,
    /// End of the comparison.
    #[arg(long, default_value = "now")]
    to: String,
    /// Write the diff flame graph SVG here.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Rows of the table printed without `-o`.
    #[arg(long, default_value_t = 20)]
    top: usize,
}

#[derive(Debug, Args)]
struct AnomalyArgs {
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Kinds, comma-separated: regression, improvement, shift.
    #[arg(long)]
    kind: Option<String>,
    /// Severities, comma-separated: critical, warning, info.
    #[arg(long)]
    severity: Option<String>,
    /// Detected at or after (default: the last 24 hours).
    #[arg(long, default_value = "now-24h")]
    from: String,
    /// Detected at or before.
    #[arg(long, default_value = "now")]
    to: String,
    /// Most anomalies listed.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected NAME=VALUE")),
    }
}

/// Escapes a label value for a `"…"` matcher.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Runs a client command; the error is printed by the caller.
pub(crate) fn main(args: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let cli = ClientCli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let api = Api::new(&cli.conn)?;
        match cli.command {
            Command::Push(a) => push(&api, a).await,
            Command::Sql(a) => sql(&api, a).await,
            Command::Flamegraph(a) => flamegraph(&api, a).await,
            Command::Diff(a) => diff(&api, a).await,
            Command::Anomalies(a) => anomalies(&api, a).await,
        }
    })
}

/// The server, with the headers every request carries.
struct Api {
    http: reqwest::Client,
    base: String,
    headers: reqwest::header::HeaderMap,
}

impl Api {
    fn new(c: &Connection) -> anyhow::Result<Self> {
        use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
        let mut headers = HeaderMap::new();
        if let Some(t) = c.tenant.as_deref().filter(|t| !t.is_empty()) {
            headers.insert(
                TENANT_HEADER,
                HeaderValue::from_str(t).context("--tenant is not a valid header value")?,
            );
        }
        if let Some(t) = c.token.as_deref().filter(|t| !t.is_empty()) {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                .context("--token is not a valid header value")?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let base = c.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url {base:?}: expected http://HOST:PORT or https://…");
        }
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(c.timeout.max(1)))
                .build()?,
            base,
            headers,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .headers(self.headers.clone())
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .headers(self.headers.clone())
    }

    /// Sends, and turns anything but 2xx into an error holding the server's message.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach stackdrift at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        bail!("{status}: {}", server_message(&body))
    }

    /// A Connect unary call in `application/proto`.
    async fn connect<Req: Message, Resp: Message + Default>(
        &self,
        method: &str,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let resp = self
            .send(
                self.post(&format!("/{method}"))
                    .header("content-type", "application/proto")
                    .body(req.encode_to_vec()),
            )
            .await?;
        let bytes = resp.bytes().await?;
        Resp::decode(bytes).with_context(|| format!("decoding the answer of {method}"))
    }
}

/// The message of an error body: `{"error": …}` (HTTP APIs), `{"message": …}` (Connect), or
/// the text itself.
fn server_message(body: &str) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(v) => v
            .get("error")
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_owned()),
        Err(_) => body.to_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        "(no message)".to_owned()
    } else {
        text.to_owned()
    }
}

/// A progress line on standard error, drawn only on a terminal.
struct Progress {
    total: usize,
    done: usize,
    failed: usize,
    bytes: u64,
    draw: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            failed: 0,
            bytes: 0,
            draw: std::io::stderr().is_terminal(),
        }
    }

    fn step(&mut self, ok: bool, bytes: u64) {
        self.done += 1;
        self.failed += usize::from(!ok);
        self.bytes += bytes;
        if self.draw {
            const WIDTH: usize = 30;
            let filled = WIDTH * self.done / self.total.max(1);
            eprint!(
                "\r[{}{}] {}/{} files, {:.1} MiB{}",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                self.done,
                self.total,
                self.bytes as f64 / 1_048_576.0,
                if self.failed > 0 {
                    format!(", {} failed", self.failed)
                } else {
                    String::new()
                }
            );
        }
    }

    /// Clears the line so an error message starts at column 0.
    fn clear(&self) {
        if self.draw {
            eprint!("\r{}\r", " ".repeat(72));
        }
    }
}

async fn push(api: &Api, a: PushArgs) -> anyhow::Result<()> {
    if a.service.trim().is_empty() {
        bail!("--service must not be empty");
    }
    let mut labels: Vec<(String, String)> = vec![
        ("__name__".to_owned(), a.name.clone()),
        ("service_name".to_owned(), a.service.clone()),
    ];
    let mut seen: HashSet<String> = labels.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in &a.labels {
        if !seen.insert(k.clone()) {
            bail!("label {k:?} given twice (or clashes with --service / --name)");
        }
        labels.push((k.clone(), v.clone()));
    }
    let labels = &labels;
    let mut progress = Progress::new(a.files.len());
    let mut errors = Vec::new();
    let mut results = futures::stream::iter(a.files.iter().enumerate())
        .map(|(i, path)| async move {
            let result = async {
                let bytes = std::fs::read(path).context("reading")?;
                let size = bytes.len() as u64;
                let req = PushRequest::one_profile(
                    labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    bytes,
                    format!("cli-{}-{i}", std::process::id()),
                );
                api.send(
                    api.post("/push.v1.PusherService/Push")
                        .header("content-type", "application/proto")
                        .body(req.encode_to_vec()),
                )
                .await?;
                anyhow::Ok(size)
            }
            .await;
            (path, result)
        })
        .buffer_unordered(a.concurrency.max(1));
    while let Some((path, result)) = results.next().await {
        match result {
            Ok(size) => progress.step(true, size),
            Err(e) => {
                progress.step(false, 0);
                errors.push(format!("{}: {e:#}", path.display()));
            }
        }
    }
    progress.clear();
    let pushed = a.files.len() - errors.len();
    eprintln!(
        "pushed {pushed} of {} files ({:.1} MiB) as service {:?}",
        a.files.len(),
        progress.bytes as f64 / 1_048_576.0,
        a.service
    );
    for e in &errors {
        eprintln!("{e}");
    }
    if !errors.is_empty() {
        bail!(
            "{} of {} files were not pushed",
            errors.len(),
            a.files.len()
        );
    }
    Ok(())
}

async fn sql(api: &Api, a: SqlArgs) -> anyhow::Result<()> {
    let query = if a.query == "-" {
        let mut q = String::new();
        std::io::stdin()
            .read_to_string(&mut q)
            .context("reading the query from standard input")?;
        q
    } else {
        a.query
    };
    let format = match a.format {
        SqlFormat::Table => "arrow",
        SqlFormat::Csv => "csv",
        SqlFormat::Json => "json",
    };
    let resp = api
        .send(
            api.post(&format!("/api/v1/sql?format={format}"))
                .json(&serde_json::json!({ "query": query })),
        )
        .await?;
    let body = resp.bytes().await?;
    let mut out = std::io::stdout().lock();
    if a.format != SqlFormat::Table {
        out.write_all(&body)?;
        if !body.ends_with(b"\n") {
            writeln!(out)?;
        }
        return Ok(());
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .context("decoding the Arrow answer")?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .context("decoding the Arrow answer")?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    writeln!(
        out,
        "{}",
        arrow::util::pretty::pretty_format_batches_with_schema(schema, &batches)?
    )?;
    writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
    Ok(())
}

/// Per-function (self, total) of a merged flame graph, and its total.
async fn function_weights(
    api: &Api,
    select: &Select,
    extra: Option<&str>,
    from: &str,
    to: &str,
) -> anyhow::Result<(BTreeMap<String, (i64, i64)>, i64)> {
    let now = now_ms();
    let start = parse_time(from, now).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let end = parse_time(to, now).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if end <= start {
        bail!("the range is empty: {from} .. {to}");
    }
    let resp: q::SelectMergeStacktracesResponse = api
        .connect(
            "querier.v1.QuerierService/SelectMergeStacktraces",
            &q::SelectMergeStacktracesRequest {
                profile_type_id: select.profile_type.clone(),
                label_selector: select.selector(extra),
                start,
                end,
                max_nodes: None,
                format: 0,
            },
        )
        .await?;
    let Some(fg) = resp.flamegraph else {
        return Ok((BTreeMap::new(), 0));
    };
    let stacks = stackdrift_querier::flamegraph::decode(&fg).map_err(anyhow::Error::msg)?;
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut total = 0;
    for (stack, v) in stacks {
        total += v;
        if let Some(leaf) = stack.last() {
            out.entry(leaf.clone()).or_default().0 += v;
        }
        // Recursion counts once toward a function's total.
        let mut seen = HashSet::new();
        for f in &stack {
            if seen.insert(f.as_str()) {
                out.entry(f.clone()).or_default().1 += v;
            }
        }
    }
    Ok((out, total))
}

/// Writes an export to `path`.
async fn save(api: &Api, url: &str, path: &Path) -> anyhow::Result<()> {
    let body = api.send(api.get(url)).await?.bytes().await?;
    std::fs::write(path, &body).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {} ({} bytes)", path.display(), body.len());
    Ok(())
}

fn percent(part: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * part as f64 / total as f64
    }
}

async fn flamegraph(api: &Api, a: FlameArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.output {
        let name = path.to_string_lossy();
        let endpoint = if name.ends_with(".svg") {
            "/api/v1/flamegraph.svg"
        } else if [".pb.gz", ".pprof", ".pb"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            "/api/v1/pprof"
        } else {
            bail!("-o {name}: end the name with .svg (SVG) or .pb.gz (pprof)");
        };
        let query = format!("{}{}", a.select.profile_type, a.select.selector(None));
        let url = format!(
            "{endpoint}?query={}&from={}&until={}",
            encode(&query),
            encode(&a.from),
            encode(&a.to)
        );
        return save(api, &url, path).await;
    }
    let (weights, total) = function_weights(api, &a.select, None, &a.from, &a.to).await?;
    if total == 0 {
        println!("no samples in the range");
        return Ok(());
    }
    let mut rows: Vec<(&String, &(i64, i64))> = weights.iter().collect();
    rows.sort_by(|x, y| y.1.0.cmp(&x.1.0).then(y.1.1.cmp(&x.1.1)).then(x.0.cmp(y.0)));
    let table: Vec<[String; 5]> = rows
        .iter()
        .take(a.top)
        .map(|(f, (s, t))| {
            [
                f.to_string(),
                s.to_string(),
                format!("{:.2}%", percent(*s, total)),
                t.to_string(),
                format!("{:.2}%", percent(*t, total)),
            ]
        })
        .collect();
    print_table(&["function", "self", "self %", "total", "total %"], &table);
    println!("total {total} over {} functions", weights.len());
    Ok(())
}

async fn diff(api: &Api, a: DiffArgs) -> anyhow::Result<()> {
    let base_from = a.baseline_from.clone().unwrap_or_else(|| a.from.clone());
    let base_to = a.baseline_to.clone().unwrap_or_else(|| a.to.clone());
    if base_from == a.from
        && base_to == a.to
        && a.baseline_selector.is_none()
        && a.comparison_selector.is_none()
    {
        bail!(
            "nothing to compare: give --baseline-from/--baseline-to, or --baseline-selector / \
             --comparison-selector"
        );
    }
    if let Some(path) = &a.output {
        let side = |extra: Option<&str>| {
            encode(&format!(
                "{}{}",
                a.select.profile_type,
                a.select.selector(extra)
            ))
        };
        let url = format!(
            "/api/v1/diff.svg?left_query={}&left_from={}&left_until={}&right_query={}\
             &right_from={}&right_until={}",
            side(a.baseline_selector.as_deref()),
            encode(&base_from),
            encode(&base_to),
            side(a.comparison_selector.as_deref()),
            encode(&a.from),
            encode(&a.to)
        );
        return save(api, &url, path).await;
    }
    let (before, before_total) = function_weights(
        api,
        &a.select,
        a.baseline_selector.as_deref(),
        &base_from,
        &base_to,
    )
    .await?;
    let (after, after_total) = function_weights(
        api,
        &a.select,
        a.comparison_selector.as_deref(),
        &a.from,
        &a.to,
    )
    .await?;
    if before_total == 0 || after_total == 0 {
        bail!(
            "one side has no samples (baseline {before_total}, comparison {after_total}): \
             check the ranges and selectors"
        );
    }
    let share = |m: &BTreeMap<String, (i64, i64)>, f: &str, total: i64| {
        percent(m.get(f).map_or(0, |w| w.0), total)
    };
    let mut rows: Vec<(String, f64, f64)> = before
        .keys()
        .chain(after.keys())
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|f| {
            (
                f.clone(),
                share(&before, f, before_total),
                share(&after, f, after_total),
            )
        })
        .filter(|(_, b, c)| b != c)
        .collect();
    rows.sort_by(|x, y| {
        (y.2 - y.1)
            .abs()
            .total_cmp(&(x.2 - x.1).abs())
            .then(x.0.cmp(&y.0))
    });
    let table: Vec<[String; 4]> = rows
        .iter()
        .take(a.top)
        .map(|(f, b, c)| {
            [
                f.clone(),
                format!("{b:.2}%"),
                format!("{c:.2}%"),
                format!("{:+.2} pp", c - b),
            ]
        })
        .collect();
    print_table(
        &["function", "baseline self", "comparison self", "change"],
        &table,
    );
    println!("baseline total {before_total}, comparison total {after_total}");
    Ok(())
}

async fn anomalies(api: &Api, a: AnomalyArgs) -> anyhow::Result<()> {
    let mut url = format!(
        "/api/v1/anomalies?from={}&until={}&limit={}",
        encode(&a.from),
        encode(&a.to),
        a.limit
    );
    for (k, v) in [
        ("service", &a.service),
        ("kind", &a.kind),
        ("severity", &a.severity),
    ] {
        if let Some(v) = v {
            url.push_str(&format!("&{k}={}", encode(v)));
        }
    }
    let body: Value = api.send(api.get(&url)).await?.json().await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let list = body["anomalies"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no anomalies in the range");
        return Ok(());
    }
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    let table: Vec<[String; 7]> = list
        .iter()
        .map(|x| {
            [
                x["detected_at_ms"]
                    .as_i64()
                    .map(format_ms)
                    .unwrap_or_default(),
                text(x, "severity"),
                text(x, "kind"),
                text(x, "service_name"),
                text(x, "function"),
                format!(
                    "{:.2}% → {:.2}%",
                    x["baseline_share"].as_f64().unwrap_or(0.0) * 100.0,
                    x["current_share"].as_f64().unwrap_or(0.0) * 100.0
                ),
                absolute(&api.base, &text(x, "svg_url")),
            ]
        })
        .collect();
    print_table(
        &[
            "detected at (UTC)",
            "severity",
            "kind",
            "service",
            "function",
            "share",
            "diff",
        ],
        &table,
    );
    Ok(())
}

/// A link from the server made absolute against `--url` when it is a path.
fn absolute(base: &str, link: &str) -> String {
    if link.starts_with('/') {
        format!("{base}{link}")
    } else {
        link.to_owned()
    }
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS`.
fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Percent-encodes a query parameter value.
fn encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Prints rows under a header, columns padded to their widest cell (by characters).
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        parts.join("  ").trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(header.to_vec()));
    let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "{}", line(dashes.iter().map(String::as_str).collect()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_combine_service_and_matchers() {
        let s = Select {
            service: Some("shop \"x\"".into()),
            selector: Some("{region=\"eu\"}".into()),
            profile_type: CPU_TYPE.into(),
        };
        assert_eq!(
            s.selector(Some("version=\"2\"")),
            r#"{service_name="shop \"x\"",region="eu",version="2"}"#
        );
        let none = Select {
            service: None,
            selector: None,
            profile_type: CPU_TYPE.into(),
        };
        assert_eq!(none.selector(None), "{}");
    }

    #[test]
    fn labels_need_a_name_and_an_equals_sign() {
        assert_eq!(
            parse_label("env=prod").unwrap(),
            ("env".into(), "prod".into())
        );
        assert_eq!(parse_label("k=a=b").unwrap(), ("k".into(), "a=b".into()));
        assert!(parse_label("env").is_err());
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn server_messages_are_unwrapped() {
        assert_eq!(server_message(r#"{"error":"bad query"}"#), "bad query");
        assert_eq!(
            server_message(r#"{"code":"invalid_argument","message":"no service"}"#),
            "no service"
        );
        assert_eq!(server_message("plain text\n"), "plain text");
        assert_eq!(server_message(""), "(no message)");
    }
}
