//! Command line, environment and config file.
//!
//! Every setting is a flag with an `STACKDRIFT_*` environment variable. A TOML file
//! (`--config`) may hold the same settings under the flag's long name (`storage-url` or
//! `storage_url`). Precedence: flag, then environment, then file, then the built-in default.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, ValueEnum};

/// stackdrift: a continuous-profiling backend with anomaly detection.
#[derive(Debug, Parser)]
#[command(
    name = "stackdrift",
    version,
    about,
    max_term_width = 100,
    args_override_self = true,
    after_help = "Client commands, against a running stackdrift (see `stackdrift COMMAND --help`):\n  \
                  push FILES… --service S   push pprof files\n  \
                  sql \"SELECT …\"            run a SQL query\n  \
                  flamegraph --service S    flame graph as SVG, pprof or a table\n  \
                  diff --service S …        compare two ranges or label selections\n  \
                  anomalies                 list what the detector found"
)]
pub(crate) struct Cli {
    /// Role to run: every role in one process (`all`) or one of them.
    #[arg(value_enum, default_value_t = Role::All, env = "STACKDRIFT_ROLE")]
    pub(crate) role: Role,

    /// TOML file with settings (keys are the long flag names).
    #[arg(long, env = "STACKDRIFT_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) settings: Settings,
}

/// The roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Every role in one process.
    All,
    /// Accepts profile pushes.
    Ingester,
    /// Answers queries.
    Querier,
    /// Compacts the tables.
    Compactor,
    /// Detects anomalies.
    Detector,
}

impl Role {
    pub(crate) fn runs(self, role: Role) -> bool {
        self == Role::All || self == role
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingester => "ingester",
            Role::Querier => "querier",
            Role::Compactor => "compactor",
            Role::Detector => "detector",
        }
    }
}

/// Settings shared by every role.
#[derive(Debug, Clone, Args)]
pub(crate) struct Settings {
    /// Address for HTTP and gRPC (one port: gRPC is told apart by its content type).
    #[arg(long, env = "STACKDRIFT_LISTEN", default_value = "0.0.0.0:4040")]
    pub(crate) listen: SocketAddr,

    /// TLS certificate chain (PEM) for the HTTP and gRPC port; with --tls-key, the port
    /// speaks only TLS (ALPN h2 and http/1.1).
    #[arg(
        long,
        env = "STACKDRIFT_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(
        long,
        env = "STACKDRIFT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// Where the tables live: a directory, file:///…, s3://bucket/prefix, gs://…, az://…
    #[arg(long, env = "STACKDRIFT_STORAGE_URL", default_value = "./data")]
    pub(crate) storage_url: String,

    /// S3 endpoint, for S3-compatible servers (MinIO, Ceph, a local test server).
    #[arg(long, env = "STACKDRIFT_S3_ENDPOINT")]
    pub(crate) s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(long, env = "STACKDRIFT_S3_REGION")]
    pub(crate) s3_region: Option<String>,

    /// S3 access key ID (else the usual AWS environment variables and credential chain).
    #[arg(long, env = "STACKDRIFT_S3_ACCESS_KEY_ID")]
    pub(crate) s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "STACKDRIFT_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub(crate) s3_secret_access_key: Option<String>,

    /// Allow plain HTTP to the S3 endpoint (local servers only).
    #[arg(long, env = "STACKDRIFT_S3_ALLOW_HTTP")]
    pub(crate) s3_allow_http: bool,

    /// Path-style S3 requests (`endpoint/bucket/key`), as most S3-compatible servers want.
    #[arg(long, env = "STACKDRIFT_S3_PATH_STYLE")]
    pub(crate) s3_path_style: bool,

    /// Any other object-store option, KEY=VALUE (repeatable), passed to delta-rs as is.
    #[arg(
        long = "storage-option",
        env = "STACKDRIFT_STORAGE_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub(crate) storage_options: Vec<String>,

    /// Ingest: a batch is committed at the latest this many milliseconds after its first push.
    #[arg(long, env = "STACKDRIFT_FLUSH_INTERVAL_MS", default_value_t = 500)]
    pub(crate) flush_interval_ms: u64,

    /// Ingest: a batch is committed as soon as it holds this many sample rows.
    #[arg(long, env = "STACKDRIFT_FLUSH_MAX_ROWS", default_value_t = 500_000)]
    pub(crate) flush_max_rows: usize,

    /// Ingest: at most this many batches are encoded and committed at once; the next batch
    /// gathers pushes meanwhile. 1 flushes strictly one batch after another.
    #[arg(long, env = "STACKDRIFT_FLUSH_CONCURRENCY", default_value_t = 2)]
    pub(crate) flush_concurrency: usize,

    /// Ingest: largest request body accepted, in bytes, as received.
    #[arg(long, env = "STACKDRIFT_MAX_BODY_BYTES", default_value_t = 256 << 20)]
    pub(crate) max_body_bytes: usize,

    /// Ingest: largest request body after its Content-Encoding is undone, in bytes
    /// (decompression stops there: the most memory a gzip bomb can cost).
    #[arg(long, env = "STACKDRIFT_MAX_DECOMPRESSED_BYTES", default_value_t = 64 << 20)]
    pub(crate) max_decompressed_bytes: usize,

    /// Ingest: largest profile after decompression, in bytes.
    #[arg(long, env = "STACKDRIFT_MAX_PROFILE_BYTES", default_value_t = 4 << 20)]
    pub(crate) max_profile_bytes: usize,

    /// Ingest: most samples in one profile.
    #[arg(long, env = "STACKDRIFT_MAX_SAMPLES", default_value_t = 16_000)]
    pub(crate) max_samples: usize,

    /// Ingest: deeper stacks are truncated to this many frames (leaf side kept).
    #[arg(long, env = "STACKDRIFT_MAX_STACK_DEPTH", default_value_t = 1000)]
    pub(crate) max_stack_depth: usize,

    /// Ingest: profiles older than this many seconds are rejected; 0 accepts any age
    /// (backfills).
    #[arg(long, env = "STACKDRIFT_MAX_PROFILE_AGE_SECS", default_value_t = 3600)]
    pub(crate) max_profile_age_secs: u64,

    /// Ingest: profiles dated more than this many seconds ahead are rejected.
    #[arg(long, env = "STACKDRIFT_MAX_FUTURE_SECS", default_value_t = 600)]
    pub(crate) max_future_secs: u64,

    /// Ingest: label names per series.
    #[arg(long, env = "STACKDRIFT_MAX_LABEL_NAMES", default_value_t = 30)]
    pub(crate) max_label_names: usize,

    /// Ingest: bytes in a label name.
    #[arg(long, env = "STACKDRIFT_MAX_LABEL_NAME_LENGTH", default_value_t = 1024)]
    pub(crate) max_label_name_length: usize,

    /// Ingest: bytes in a label value.
    #[arg(
        long,
        env = "STACKDRIFT_MAX_LABEL_VALUE_LENGTH",
        default_value_t = 2048
    )]
    pub(crate) max_label_value_length: usize,

    /// Ingest: sustained request bytes per second per tenant (as received); 0 = unlimited.
    #[arg(long, env = "STACKDRIFT_INGESTION_RATE_BYTES", default_value_t = 4 << 20)]
    pub(crate) ingestion_rate_bytes: u64,

    /// Ingest: bytes a tenant may send at once above its sustained rate.
    #[arg(long, env = "STACKDRIFT_INGESTION_BURST_BYTES", default_value_t = 2 << 20)]
    pub(crate) ingestion_burst_bytes: u64,

    /// Ingest: memory all pushes in flight may hold, in MiB (estimated as 16 × their body
    /// sizes); a push that does not fit is refused with 429 and `Retry-After`. 0 = unlimited.
    #[arg(long, env = "STACKDRIFT_MAX_INFLIGHT_MIB", default_value_t = 1024)]
    pub(crate) max_inflight_mib: usize,

    /// Ingest: TOML file of per-tenant overrides of the ingest limits
    /// (`[tenants.NAME]` tables; keys as these flags, with `_`).
    #[arg(long, env = "STACKDRIFT_TENANT_LIMITS_FILE", value_name = "FILE")]
    pub(crate) tenant_limits_file: Option<PathBuf>,

    /// TOML file mapping each tenant to its token(s) (`acme = "TOKEN"`); when set, every push
    /// and query must carry `Authorization: Bearer TOKEN` (or Basic with the token as
    /// password) and acts only for that token's tenant.
    #[arg(long, env = "STACKDRIFT_AUTH_FILE", value_name = "FILE")]
    pub(crate) auth_file: Option<PathBuf>,

    /// Query: wall-clock limit per query, in seconds.
    #[arg(long, env = "STACKDRIFT_QUERY_TIMEOUT_SECS", default_value_t = 60)]
    pub(crate) query_timeout_secs: u64,

    /// Query: memory limit per query, in MiB.
    #[arg(long, env = "STACKDRIFT_QUERY_MEMORY_MIB", default_value_t = 1024)]
    pub(crate) query_memory_mib: usize,

    /// Query: frames of stacks kept in memory across flame graph queries (about 8 bytes
    /// each, plus each distinct function name once); 0 turns the cache off.
    #[arg(long, env = "STACKDRIFT_QUERY_FRAME_CACHE", default_value_t = 8 << 20)]
    pub(crate) query_frame_cache: usize,

    /// Query: queries (SQL, Flight SQL, profile queries, exports) that run at once; with
    /// --query-memory-mib this bounds the memory queries take.
    #[arg(long, env = "STACKDRIFT_MAX_CONCURRENT_QUERIES", default_value_t = 4)]
    pub(crate) max_concurrent_queries: usize,

    /// Query: queries that may wait for a slot (the wait counts against the timeout); any
    /// more get 429 with Retry-After (gRPC RESOURCE_EXHAUSTED).
    #[arg(long, env = "STACKDRIFT_MAX_QUEUED_QUERIES", default_value_t = 64)]
    pub(crate) max_queued_queries: usize,

    /// Compactor: seconds between compaction passes.
    #[arg(
        long,
        env = "STACKDRIFT_COMPACTION_INTERVAL_SECS",
        default_value_t = 600
    )]
    pub(crate) compaction_interval_secs: u64,

    /// Compactor: files are merged per time window of this length (e.g. 1h); a window is
    /// merged into one sorted set of files once it has closed.
    #[arg(long, env = "STACKDRIFT_COMPACTION_WINDOW", default_value = "1h")]
    pub(crate) compaction_window: String,

    /// Compactor: a window counts as closed (and is merged for good) this long after it
    /// ends; later pushes into it are merged again on the next pass.
    #[arg(long, env = "STACKDRIFT_COMPACTION_SETTLE", default_value = "5m")]
    pub(crate) compaction_settle: String,

    /// Compactor: downsampling tiers, AGE=BUCKET comma-separated: once a whole UTC day is
    /// older than AGE its rows are summed into BUCKET-wide buckets. `off` keeps raw rows.
    #[arg(long, env = "STACKDRIFT_DOWNSAMPLE", default_value = stackdrift_compactor::DEFAULT_TIERS)]
    pub(crate) downsample: String,

    /// Compactor: how long data is kept when no retention rule matches (`off`: forever).
    #[arg(long, env = "STACKDRIFT_RETENTION", default_value = "30d")]
    pub(crate) retention: String,

    /// Compactor: TOML file of retention rules (`[[rule]]` with `tenant`, `service`,
    /// `profile_type` globs and `keep`; the first matching rule decides; `default` overrides
    /// --retention).
    #[arg(long, env = "STACKDRIFT_RETENTION_FILE", value_name = "FILE")]
    pub(crate) retention_file: Option<PathBuf>,

    /// Compactor: files dropped from the tables are deleted from storage this long after
    /// (queries already reading them keep working until then).
    #[arg(long, env = "STACKDRIFT_VACUUM_GRACE", default_value = "1h")]
    pub(crate) vacuum_grace: String,

    /// Compactor: run one pass, print what it did, and exit (`stackdrift compactor --once`).
    #[arg(long)]
    pub(crate) once: bool,

    /// Compactor: with --once, print what a pass would do without changing anything.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Detector: evaluation window (e.g. 1m): each function's share of each window's weight
    /// is tested.
    #[arg(long, env = "STACKDRIFT_DETECTOR_WINDOW", default_value = "1m")]
    pub(crate) detector_window: String,

    /// Detector: a window is evaluated this long after it ends (late pushes, ingest batching).
    #[arg(long, env = "STACKDRIFT_DETECTOR_SETTLE", default_value = "1m")]
    pub(crate) detector_settle: String,

    /// Detector: labels that split a service into separately tested series, comma-separated
    /// (e.g. `region,env`).
    #[arg(
        long,
        env = "STACKDRIFT_DETECTOR_GROUP_BY",
        default_value = "",
        value_name = "LABELS"
    )]
    pub(crate) detector_group_by: String,

    /// Detector: rolling baseline length, in windows.
    #[arg(
        long,
        env = "STACKDRIFT_DETECTOR_BASELINE_WINDOWS",
        default_value_t = 60
    )]
    pub(crate) detector_baseline_windows: i64,

    /// Detector: windows a change must hold before it is reported.
    #[arg(long, env = "STACKDRIFT_DETECTOR_PERSISTENCE", default_value_t = 2)]
    pub(crate) detector_persistence: i64,

    /// Detector: false discovery rate (Benjamini–Hochberg) over one series' tests per window.
    #[arg(long, env = "STACKDRIFT_DETECTOR_FDR", default_value_t = 2e-5)]
    pub(crate) detector_fdr: f64,

    /// Detector: smallest reported change of a function's share, in percentage points.
    #[arg(long, env = "STACKDRIFT_DETECTOR_MIN_EFFECT_PP", default_value_t = 0.2)]
    pub(crate) detector_min_effect_pp: f64,

    /// Detector: smallest reported change relative to the baseline share, in percent.
    #[arg(
        long,
        env = "STACKDRIFT_DETECTOR_MIN_RELATIVE_PCT",
        default_value_t = 10.0
    )]
    pub(crate) detector_min_relative_pct: f64,

    /// Detector: webhook to notify, repeatable: `URL` or `json=URL` (plain JSON),
    /// `alertmanager=URL` (Alertmanager v2 alerts API), `grafana=URL` (Grafana annotations).
    #[arg(
        long = "webhook",
        env = "STACKDRIFT_WEBHOOKS",
        value_delimiter = ' ',
        value_name = "SINK"
    )]
    pub(crate) webhooks: Vec<String>,

    /// Detector: on first start (no progress stored yet), also evaluate this much past data
    /// (e.g. `6h`); later starts resume where the detector stopped.
    #[arg(long, env = "STACKDRIFT_DETECTOR_BACKFILL", default_value = "0s")]
    pub(crate) detector_backfill: String,

    /// Detector: poll interval of live mode (how often newly closed windows are looked for).
    #[arg(long, env = "STACKDRIFT_DETECTOR_POLL", default_value = "10s")]
    pub(crate) detector_poll: String,

    /// Detector: bearer token sent to `json=` and `alertmanager=` webhooks.
    #[arg(long, env = "STACKDRIFT_WEBHOOK_TOKEN", hide_env_values = true)]
    pub(crate) webhook_token: Option<String>,

    /// Detector: Grafana service-account token for `grafana=` webhooks (annotations API).
    #[arg(long, env = "STACKDRIFT_GRAFANA_TOKEN", hide_env_values = true)]
    pub(crate) grafana_token: Option<String>,

    /// Detector: notify improvements as well as regressions.
    #[arg(long, env = "STACKDRIFT_NOTIFY_IMPROVEMENTS")]
    pub(crate) notify_improvements: bool,

    /// Address users reach the querier at; prefixes the diff links of anomalies.
    #[arg(
        long,
        env = "STACKDRIFT_PUBLIC_URL",
        default_value = "http://127.0.0.1:4040"
    )]
    pub(crate) public_url: String,

    /// Detector: replay from this time (RFC 3339, Unix s/ms, `now-6h`), print the anomalies
    /// found, store them and exit (`stackdrift detector --from now-1d --to now`).
    #[arg(long)]
    pub(crate) from: Option<String>,

    /// Detector: end of the replay (default: now).
    #[arg(long)]
    pub(crate) to: Option<String>,

    /// Log filter (`info`, `debug`, `stackdrift_ingester=debug,info`, …); `RUST_LOG` wins.
    #[arg(long, env = "STACKDRIFT_LOG_LEVEL", default_value = "info")]
    pub(crate) log_level: String,

    /// Log format.
    #[arg(long, env = "STACKDRIFT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Push this process's own CPU profile (service `stackdrift-<role>`) every
    /// --self-profile-interval to --self-profile-url.
    #[arg(long, env = "STACKDRIFT_SELF_PROFILE")]
    pub(crate) self_profile: bool,

    /// Self-profiling: length of each CPU profile, and so the push interval (e.g. 10s).
    #[arg(long, env = "STACKDRIFT_SELF_PROFILE_INTERVAL", default_value = "10s")]
    pub(crate) self_profile_interval: String,

    /// Self-profiling: ingester to push to (default: this process, when it runs the
    /// ingester).
    #[arg(long, env = "STACKDRIFT_SELF_PROFILE_URL", value_name = "URL")]
    pub(crate) self_profile_url: Option<String>,

    /// Self-profiling: tenant to push as (`X-Scope-OrgID`; default the server's anonymous).
    #[arg(long, env = "STACKDRIFT_SELF_PROFILE_TENANT")]
    pub(crate) self_profile_tenant: Option<String>,

    /// Self-profiling: token for the push, when the ingester has a tokens file.
    #[arg(long, env = "STACKDRIFT_SELF_PROFILE_TOKEN", hide_env_values = true)]
    pub(crate) self_profile_token: Option<String>,

    /// Seconds to wait for in-flight requests and buffered data on shutdown.
    #[arg(long, env = "STACKDRIFT_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub(crate) shutdown_timeout_secs: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// Object-store options from the S3 flags and `--storage-option`.
    pub(crate) fn storage_options(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut o = HashMap::new();
        let mut put = |k: &str, v: Option<&String>| {
            if let Some(v) = v {
                o.insert(k.to_owned(), v.clone());
            }
        };
        put("aws_endpoint", self.s3_endpoint.as_ref());
        put("aws_region", self.s3_region.as_ref());
        put("aws_access_key_id", self.s3_access_key_id.as_ref());
        put("aws_secret_access_key", self.s3_secret_access_key.as_ref());
        if self.s3_allow_http {
            o.insert("aws_allow_http".into(), "true".into());
        }
        if self.s3_path_style {
            o.insert("aws_virtual_hosted_style_request".into(), "false".into());
        }
        for kv in &self.storage_options {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--storage-option {kv:?}: expected KEY=VALUE");
            };
            o.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(o)
    }
}

/// Parses the command line, layering the config file (if any) under flags and environment.
pub(crate) fn parse() -> anyhow::Result<Cli> {
    parse_from(std::env::args_os().collect(), |k| {
        std::env::var_os(k).is_some()
    })
}

/// [`parse`] with explicit arguments and environment lookup (for tests).
pub(crate) fn parse_from(
    args: Vec<OsString>,
    env_is_set: impl Fn(&str) -> bool,
) -> anyhow::Result<Cli> {
    let cli = Cli::try_parse_from(&args)?;
    let Some(path) = cli.config.clone() else {
        return Ok(cli);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let file_args =
        file_args(&text, &env_is_set).with_context(|| format!("config file {}", path.display()))?;
    // Program name, then the file's settings, then the real arguments: clap keeps the last
    // value given for a flag, so the command line wins over the file.
    let mut merged = Vec::with_capacity(args.len() + file_args.len());
    merged.extend(args.first().cloned());
    merged.extend(file_args);
    merged.extend(args.into_iter().skip(1));
    Ok(Cli::try_parse_from(merged)?)
}

/// Turns a TOML table into `--flag=value` arguments, skipping settings whose environment
/// variable is set (the environment wins over the file).
fn file_args(text: &str, env_is_set: &impl Fn(&str) -> bool) -> anyhow::Result<Vec<OsString>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let cmd = Cli::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
        else {
            bail!("unknown setting {key:?}");
        };
        if flag == "config" {
            bail!("a config file cannot name another config file");
        }
        if let Some(env) = arg.get_env().and_then(|e| e.to_str())
            && env_is_set(env)
        {
            continue;
        }
        let values: Vec<String> = match value {
            toml::Value::String(s) => vec![s],
            toml::Value::Integer(i) => vec![i.to_string()],
            toml::Value::Float(f) => vec![f.to_string()],
            toml::Value::Boolean(b) => {
                if b {
                    out.push(OsString::from(format!("--{flag}")));
                }
                continue;
            }
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    other => Ok(other.to_string()),
                })
                .collect::<anyhow::Result<_>>()?,
            toml::Value::Table(t) if flag == "storage-option" || flag == "storage-options" => t
                .into_iter()
                .map(|(k, v)| match v {
                    toml::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect(),
            other => bail!("setting {key:?}: unsupported value {other}"),
        };
        for v in values {
            out.push(OsString::from(format!("--{flag}={v}")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn defaults() {
        let cli = parse_from(args(&["stackdrift"]), |_| false).unwrap();
        assert_eq!(cli.role, Role::All);
        assert_eq!(cli.settings.listen.port(), 4040);
        assert_eq!(cli.settings.storage_url, "./data");
    }

    #[test]
    fn file_is_layered_under_flags_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stackdrift.toml");
        std::fs::write(
            &path,
            "storage_url = \"s3://b/p\"\nlisten = \"127.0.0.1:5000\"\n\
             s3_allow_http = true\nflush-interval-ms = 100\n\
             [storage-option]\naws_region = \"eu-west-1\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        // File only.
        let cli = parse_from(args(&["stackdrift", "querier", "--config", p]), |_| false).unwrap();
        assert_eq!(cli.role, Role::Querier);
        assert_eq!(cli.settings.storage_url, "s3://b/p");
        assert_eq!(cli.settings.listen.port(), 5000);
        assert_eq!(cli.settings.flush_interval_ms, 100);
        let o = cli.settings.storage_options().unwrap();
        assert_eq!(o["aws_allow_http"], "true");
        assert_eq!(o["aws_region"], "eu-west-1");
        // A flag beats the file.
        let cli = parse_from(
            args(&["stackdrift", "--config", p, "--listen", "127.0.0.1:6000"]),
            |_| false,
        )
        .unwrap();
        assert_eq!(cli.settings.listen.port(), 6000);
        assert_eq!(cli.settings.storage_url, "s3://b/p");
        // A set environment variable beats the file (the file's value is not applied).
        let cli = parse_from(args(&["stackdrift", "--config", p]), |k| {
            k == "STACKDRIFT_LISTEN"
        })
        .unwrap();
        assert_eq!(cli.settings.listen.port(), 4040);
    }

    #[test]
    fn example_config_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/stackdrift.example.toml"
        );
        let cli = parse_from(args(&["stackdrift", "ingester", "--config", path]), |_| {
            false
        })
        .unwrap();
        assert_eq!(cli.settings.storage_url, "s3://profiles/stackdrift");
        assert_eq!(cli.settings.max_profile_age_secs, 21600);
        assert_eq!(cli.settings.log_format, LogFormat::Json);
        let o = cli.settings.storage_options().unwrap();
        assert_eq!(o["aws_region"], "eu-west-1");
        assert_eq!(o["aws_conditional_put"], "etag");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let e = parse_from(
            args(&["stackdrift", "--config", path.to_str().unwrap()]),
            |_| false,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown setting \"no_such_setting\""),
            "{e:#}"
        );
        assert!(
            Settings::storage_options(
                &parse_from(args(&["stackdrift", "--storage-option", "novalue"]), |_| {
                    false
                })
                .unwrap()
                .settings
            )
            .is_err()
        );
    }
}
