//! Webhook notifications: every anomaly the detector reports is posted to the configured sinks.
//!
//! Three payload formats:
//!
//! * `json`: one JSON object describing the anomaly (for custom receivers, Slack relays, ...);
//! * `alertmanager`: the body of Alertmanager's `POST /api/v2/alerts` (one alert, no `endsAt`,
//!   so Alertmanager resolves it after its `resolve_timeout`);
//! * `grafana`: a Grafana annotation, posted to `{url}/api/annotations`.
//!
//! Each sink is tried on its own (concurrently with the others) and retried with exponential
//! backoff on connection errors, timeouts, 408, 429 (honoring `Retry-After`) and 5xx. Any other
//! non-2xx answer is permanent. The bearer token of a sink is sent as `Authorization: Bearer`
//! and never logged (the `Debug` output of [`Sink`] redacts it).

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use stackdrift_storage::Anomaly;
use tracing::{debug, error, warn};

/// The payload format of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per anomaly.
    #[default]
    Json,
    /// Alertmanager v2 `POST /api/v2/alerts` body (the URL is the full endpoint).
    Alertmanager,
    /// Grafana annotation (the URL is Grafana's base URL; posts to `{url}/api/annotations`).
    Grafana,
}

impl Format {
    /// The name used in sink strings and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Alertmanager => "alertmanager",
            Format::Grafana => "grafana",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One notification target.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// Where to post (for Grafana, the base URL).
    pub url: String,
    /// Payload format (default `json`).
    #[serde(default)]
    pub format: Format,
    /// Sent as `Authorization: Bearer <token>` when set.
    #[serde(default)]
    pub bearer_token: Option<String>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("url", &redact_url_str(&self.url))
            .field("format", &self.format)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A sink string or sink URL that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkParseError(String);

impl Sink {
    /// Parses a sink from the command line: `json=URL`, `alertmanager=URL`, `grafana=URL`, or a
    /// plain `URL` (json). No bearer token (set [`Sink::bearer_token`] separately).
    pub fn parse(s: &str) -> Result<Sink, SinkParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SinkParseError(
                "empty notification sink (expected [json|alertmanager|grafana=]URL)".into(),
            ));
        }
        // A `name=` prefix is a format only if the name cannot be part of a URL's scheme/host
        // (a plain URL may hold `=` in its query).
        let (format, url) = match s.split_once('=') {
            Some((name, rest)) if !name.contains([':', '/', '?', '#']) => {
                let format = match name.trim().to_ascii_lowercase().as_str() {
                    "json" => Format::Json,
                    "alertmanager" => Format::Alertmanager,
                    "grafana" => Format::Grafana,
                    other => {
                        return Err(SinkParseError(format!(
                            "notification sink {s:?}: unknown format {other:?} \
                             (expected json, alertmanager or grafana)"
                        )));
                    }
                };
                (format, rest.trim())
            }
            _ => (Format::Json, s),
        };
        let sink = Sink {
            url: url.to_string(),
            format,
            bearer_token: None,
        };
        sink.endpoint()?;
        Ok(sink)
    }

    /// Sets the bearer token.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Sink {
        self.bearer_token = Some(token.into());
        self
    }

    /// The URL the payload is posted to (for Grafana, `{url}/api/annotations`).
    pub fn endpoint(&self) -> Result<Url, SinkParseError> {
        let bad = |why: String| {
            SinkParseError(format!(
                "notification sink {}={}: {why}",
                self.format,
                redact_url_str(&self.url)
            ))
        };
        let mut url = Url::parse(self.url.trim()).map_err(|e| bad(format!("invalid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "unsupported scheme {:?} (expected http or https)",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("URL has no host".into()));
        }
        if self.format == Format::Grafana {
            let path = url.path().trim_end_matches('/');
            if !path.ends_with("/api/annotations") {
                let path = format!("{path}/api/annotations");
                url.set_path(&path);
            }
        }
        Ok(url)
    }

    /// `format=url` with credentials and query values hidden, for logs and errors.
    pub fn display_name(&self) -> String {
        format!("{}={}", self.format, redact_url_str(&self.url))
    }
}

impl FromStr for Sink {
    type Err = SinkParseError;

    fn from_str(s: &str) -> Result<Sink, SinkParseError> {
        Sink::parse(s)
    }
}

/// How each sink is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per sink and anomaly, the first included (at least 1).
    pub attempts: u32,
    /// Wait after the first failed try; doubled after each further one.
    pub first_backoff: Duration,
    /// Cap on any wait, `Retry-After` included.
    pub max_backoff: Duration,
    /// Timeout of one request (connect to end of response body).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `failed` (1-based), before jitter and `Retry-After`.
    fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failed.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// The wait after failed try `failed`: the backoff plus up to 20 % jitter, or the server's
    /// `Retry-After` if longer; never more than `max_backoff`.
    fn delay(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.backoff(failed);
        let delay = match retry_after {
            Some(ra) => ra.max(base),
            None => base + jitter(base / 5),
        };
        delay.min(self.max_backoff)
    }
}

/// A uniformly random duration in `[0, max]` (std's randomly keyed hasher as the source).
fn jitter(max: Duration) -> Duration {
    let nanos = max.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let r = RandomState::new().build_hasher().finish();
    Duration::from_nanos(r % (nanos + 1))
}

/// One sink that did not accept a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkFailure {
    /// The sink ([`Sink::display_name`]).
    pub sink: String,
    /// Tries made.
    pub attempts: u32,
    /// Whether the last failure was permanent (a 4xx other than 408/429, an unusable request).
    pub permanent: bool,
    /// The last error.
    pub error: String,
}

impl fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tries = if self.attempts == 1 { "try" } else { "tries" };
        write!(
            f,
            "{}: {} ({} {tries}",
            self.sink, self.error, self.attempts
        )?;
        if self.permanent {
            f.write_str(", not retried")?;
        }
        f.write_str(")")
    }
}

/// Errors of the notifier.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A configured sink is not usable.
    #[error(transparent)]
    InvalidSink(#[from] SinkParseError),
    /// The HTTP client could not be built.
    #[error("notifications: cannot build the HTTP client: {0}")]
    Client(String),
    /// Some sinks did not accept the notification.
    #[error("{}", failed_message(.failures, *.total))]
    Failed {
        /// The sinks that failed, in configuration order.
        failures: Vec<SinkFailure>,
        /// How many sinks there are.
        total: usize,
    },
}

fn failed_message(failures: &[SinkFailure], total: usize) -> String {
    let list = failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "notification failed for {} of {total} sinks: {list}",
        failures.len()
    )
}

#[derive(Debug)]
struct Target {
    sink: Sink,
    endpoint: Url,
    name: String,
}

/// Posts anomalies to webhook sinks.
#[derive(Debug)]
pub struct Notifier {
    targets: Vec<Target>,
    client: reqwest::Client,
    public_url: String,
    retry: RetryPolicy,
}

/// Result of one try.
enum Outcome {
    Accepted,
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

impl Notifier {
    /// A notifier for `sinks`. `public_url` (e.g. `http://127.0.0.1:4040`) prefixes the
    /// relative `query_url`/`svg_url` of anomalies in the payloads.
    pub fn new(
        sinks: Vec<Sink>,
        public_url: impl Into<String>,
        retry: RetryPolicy,
    ) -> Result<Notifier, NotifyError> {
        let targets = sinks
            .into_iter()
            .map(|sink| {
                Ok(Target {
                    endpoint: sink.endpoint()?,
                    name: sink.display_name(),
                    sink,
                })
            })
            .collect::<Result<Vec<_>, SinkParseError>>()?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("stackdrift-detector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(error_chain(&e)))?;
        Ok(Notifier {
            targets,
            client,
            public_url: public_url.into().trim_end_matches('/').to_string(),
            retry,
        })
    }

    /// The sinks, in configuration order.
    pub fn sinks(&self) -> impl Iterator<Item = &Sink> {
        self.targets.iter().map(|t| &t.sink)
    }

    /// Whether there is no sink (then [`Notifier::notify`] does nothing).
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Sends `anomaly` to every sink (concurrently), retrying each as the policy says. Succeeds
    /// only if every sink accepted it (2xx); otherwise the error names the sinks that did not.
    pub async fn notify(&self, anomaly: &Anomaly) -> Result<(), NotifyError> {
        if self.targets.is_empty() {
            return Ok(());
        }
        let links = Links {
            diff_url: self.absolute(&anomaly.svg_url),
            query_url: self.absolute(&anomaly.query_url),
        };
        let results = futures::future::join_all(self.targets.iter().map(|target| {
            let body = payload(target.sink.format, anomaly, &links);
            self.deliver(target, body, &anomaly.anomaly_id)
        }))
        .await;
        let failures: Vec<SinkFailure> = results.into_iter().filter_map(Result::err).collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NotifyError::Failed {
                failures,
                total: self.targets.len(),
            })
        }
    }

    fn absolute(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") || path.is_empty() {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}{path}", self.public_url)
        } else {
            format!("{}/{path}", self.public_url)
        }
    }

    /// Tries one sink until it accepts, fails permanently or runs out of tries.
    async fn deliver(
        &self,
        target: &Target,
        body: Value,
        anomaly_id: &str,
    ) -> Result<(), SinkFailure> {
        let attempts = self.retry.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, permanent, retry_after) = match self.send_once(target, &body).await {
                Outcome::Accepted => {
                    debug!(sink = %target.name, anomaly_id, attempt, "notification delivered");
                    return Ok(());
                }
                Outcome::Permanent(error) => (error, true, None),
                Outcome::Retry { error, retry_after } => (error, false, retry_after),
            };
            if permanent || attempt >= attempts {
                error!(
                    sink = %target.name,
                    anomaly_id,
                    attempt,
                    error = %error,
                    "notification failed{}",
                    if permanent { " (not retried)" } else { "; giving up" }
                );
                return Err(SinkFailure {
                    sink: target.name.clone(),
                    attempts: attempt,
                    permanent,
                    error,
                });
            }
            let delay = self.retry.delay(attempt, retry_after);
            warn!(
                sink = %target.name,
                anomaly_id,
                attempt,
                attempts,
                error = %error,
                retry_in_ms = delay.as_millis() as u64,
                "notification failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(&self, target: &Target, body: &Value) -> Outcome {
        let mut request = self
            .client
            .post(target.endpoint.clone())
            .timeout(self.retry.timeout)
            .json(body);
        if let Some(token) = &target.sink.bearer_token {
            request = request.bearer_auth(token);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let permanent = e.is_builder();
                let error = error_chain(&e.without_url());
                return if permanent {
                    Outcome::Permanent(error)
                } else {
                    Outcome::Retry {
                        error,
                        retry_after: None,
                    }
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        // Read the body: a short excerpt for the error, and the connection stays reusable.
        let text = response.text().await;
        if status.is_success() {
            return Outcome::Accepted;
        }
        let mut error = format!("HTTP {status}");
        if let Ok(text) = text {
            let excerpt = one_line_excerpt(&text, 200);
            if !excerpt.is_empty() {
                error.push_str(": ");
                error.push_str(&excerpt);
            }
        }
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Outcome::Retry { error, retry_after }
        } else {
            Outcome::Permanent(error)
        }
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (when.with_timezone(&Utc) - Utc::now()).num_milliseconds();
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// The error and its sources, `: `-joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

fn one_line_excerpt(text: &str, max_chars: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// A URL with its password and query values hidden; unparsable input is shown as given
/// minus anything after `?`.
fn redact_url_str(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.to_string()
        }
        Err(_) => match url.split_once('?') {
            Some((head, _)) => format!("{head}?***"),
            None => url.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads

struct Links {
    diff_url: String,
    query_url: String,
}

fn payload(format: Format, a: &Anomaly, links: &Links) -> Value {
    match format {
        Format::Json => json_payload(a, links),
        Format::Alertmanager => alertmanager_payload(a, links),
        Format::Grafana => grafana_payload(a, links),
    }
}

fn json_payload(a: &Anomaly, links: &Links) -> Value {
    json!({
        "anomaly_id": a.anomaly_id,
        "tenant": a.tenant,
        "service": a.service_name,
        "profile_type": a.profile_type,
        "labels": Value::Object(labels_object(a)),
        "kind": a.kind,
        "severity": a.severity,
        "function": a.function,
        "metric": a.metric,
        "baseline": a.baseline,
        "baseline_share": a.baseline_share,
        "current_share": a.current_share,
        "delta": a.delta,
        "score": a.score,
        "p_value": a.p_value,
        "window": {
            "start": rfc3339(a.window_start_us),
            "end": rfc3339(a.window_end_us),
        },
        "baseline_window": {
            "start": rfc3339(a.baseline_start_us),
            "end": rfc3339(a.baseline_end_us),
        },
        "windows": a.windows,
        "version_before": a.version_before,
        "version_after": a.version_after,
        "example_stack": a.example_stack,
        "diff_url": links.diff_url,
        "query_url": links.query_url,
        "summary": summary(a),
    })
}

fn alertmanager_payload(a: &Anomaly, links: &Links) -> Value {
    let mut labels = Map::new();
    // Grouping labels first, so the fixed ones win on a name clash.
    for (name, value) in labels_object(a) {
        let value = match value {
            Value::String(s) => s,
            Value::Null => continue,
            other => other.to_string(),
        };
        if !value.is_empty() {
            labels.insert(alertmanager_label_name(&name), Value::String(value));
        }
    }
    for (name, value) in [
        ("alertname", "StackdriftAnomaly"),
        ("service", a.service_name.as_str()),
        ("function", a.function.as_str()),
        ("kind", a.kind.as_str()),
        ("severity", a.severity.as_str()),
        ("profile_type", a.profile_type.as_str()),
        ("tenant", a.tenant.as_str()),
    ] {
        labels.insert(name.to_string(), Value::String(value.to_string()));
    }
    json!([{
        "labels": labels,
        "annotations": {
            "summary": summary(a),
            "description": description(a),
            "diff_url": links.diff_url,
            "query_url": links.query_url,
            "anomaly_id": a.anomaly_id,
        },
        "startsAt": rfc3339(a.window_start_us),
        "generatorURL": links.diff_url,
    }])
}

fn grafana_payload(a: &Anomaly, links: &Links) -> Value {
    let mut text = stackdrift_model::html::escape(&summary(a));
    if !links.diff_url.is_empty() {
        text.push_str(&format!(
            " <a href=\"{}\">diff flame graph</a>",
            stackdrift_model::html::escape(&links.diff_url)
        ));
    }
    json!({
        "time": a.window_start_us.div_euclid(1000),
        "timeEnd": a.window_end_us.div_euclid(1000),
        "tags": ["stackdrift", a.service_name, a.kind, a.severity],
        "text": text,
    })
}

/// Alertmanager (classic) label names match `[a-zA-Z_][a-zA-Z0-9_]*`.
fn alertmanager_label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The grouping labels as a JSON object (empty if the stored text is not one).
fn labels_object(a: &Anomaly) -> Map<String, Value> {
    match serde_json::from_str::<Value>(&a.labels) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// `{a="x", b="y"}`, or empty for no labels.
fn labels_selector(a: &Anomaly) -> String {
    let labels = labels_object(a);
    if labels.is_empty() {
        return String::new();
    }
    let inner = labels
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s:?}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("{{{inner}}}")
}

fn rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What the profile type measures, for prose: `process_cpu:cpu:nanoseconds:...` → `CPU`.
fn measure(profile_type: &str) -> String {
    let mut parts = profile_type.split(':');
    let family = parts.next().unwrap_or_default();
    let sample = parts.next().unwrap_or(family);
    match sample {
        "cpu" | "samples" if family.contains("cpu") || sample == "cpu" => "CPU".into(),
        "wall" => "wall time".into(),
        "alloc_space" => "allocated bytes".into(),
        "alloc_objects" => "allocations".into(),
        "inuse_space" => "in-use memory".into(),
        "inuse_objects" => "in-use objects".into(),
        "contentions" => "lock contentions".into(),
        "delay" => "lock wait time".into(),
        "goroutine" | "goroutines" => "goroutines".into(),
        "" => profile_type.to_string(),
        other => other.replace('_', " "),
    }
}

/// A share as a percentage: one decimal, two below 1 %.
fn pct(share: f64) -> String {
    let p = share * 100.0;
    if p != 0.0 && p.abs() < 1.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A share difference in percentage points, signed.
fn pp(delta: f64) -> String {
    let p = delta * 100.0;
    let sign = if p < 0.0 { "-" } else { "+" };
    if p != 0.0 && p.abs() < 1.0 {
        format!("{sign}{:.2} pp", p.abs())
    } else {
        format!("{sign}{:.1} pp", p.abs())
    }
}

/// One line: `checkout: json.encode +6.1 pp of CPU (12.0% → 18.1%) since version 1.4.2`.
fn summary(a: &Anomaly) -> String {
    let scope = if a.metric == "total" {
        " incl. callees"
    } else {
        ""
    };
    let mut s = format!(
        "{}: {} {} of {}{scope} ({} → {})",
        a.service_name,
        a.function,
        pp(a.delta),
        measure(&a.profile_type),
        pct(a.baseline_share),
        pct(a.current_share),
    );
    if let Some(after) = &a.version_after
        && a.version_before.as_ref() != Some(after)
    {
        s.push_str(&format!(" since version {after}"));
    }
    s
}

/// A few sentences for humans (Alertmanager's `description`).
fn description(a: &Anomaly) -> String {
    let direction = if a.delta < 0.0 { "fell" } else { "rose" };
    let metric = if a.metric == "total" {
        "total (incl. callees)"
    } else {
        "self"
    };
    let labels = labels_selector(a);
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!(" {labels}")
    };
    let mut s = format!(
        "{kind} in {service}{labels} (tenant {tenant}): the {metric} share of {measure} in \
         {function} {direction} from {before} to {after} ({delta}, z = {score:.2}, \
         p = {p:.2e}) over {windows} window{plural} ({ws} to {we}), against the {baseline} \
         baseline ({bs} to {be}).",
        kind = capitalize(&a.kind),
        service = a.service_name,
        tenant = a.tenant,
        measure = measure(&a.profile_type),
        function = a.function,
        before = pct(a.baseline_share),
        after = pct(a.current_share),
        delta = pp(a.delta),
        score = a.score,
        p = a.p_value,
        windows = a.windows,
        plural = if a.windows == 1 { "" } else { "s" },
        ws = rfc3339(a.window_start_us),
        we = rfc3339(a.window_end_us),
        baseline = a.baseline,
        bs = rfc3339(a.baseline_start_us),
        be = rfc3339(a.baseline_end_us),
    );
    match (&a.version_before, &a.version_after) {
        (Some(b), Some(n)) if b != n => s.push_str(&format!(" Version {b} → {n}.")),
        (_, Some(n)) => s.push_str(&format!(" Version {n}.")),
        (Some(b), None) => s.push_str(&format!(" Version before: {b}.")),
        (None, None) => {}
    }
    if !a.example_stack.is_empty() {
        s.push_str(&format!(" Example stack: {}", a.example_stack));
    }
    s
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    use super::*;

    /// What the test sink answers, in order; 200 once the script is used up.
    #[derive(Debug, Clone)]
    enum Reply {
        Status(u16),
        RetryAfter(u16, &'static str),
        Sleep(Duration),
    }

    #[derive(Debug, Clone)]
    struct Recorded {
        path: String,
        headers: HeaderMap,
        body: Value,
        at: Instant,
    }

    #[derive(Debug, Default)]
    struct Recorder {
        requests: Vec<Recorded>,
        script: VecDeque<Reply>,
    }

    type Shared = Arc<Mutex<Recorder>>;

    async fn record(
        State(state): State<Shared>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let reply = {
            let mut s = state.lock().unwrap();
            s.requests.push(Recorded {
                path: uri.path().to_string(),
                headers,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                at: Instant::now(),
            });
            s.script.pop_front()
        };
        match reply {
            None => (StatusCode::OK, "ok").into_response(),
            Some(Reply::Status(code)) => {
                (StatusCode::from_u16(code).unwrap(), "scripted\nfailure <b>").into_response()
            }
            Some(Reply::RetryAfter(code, after)) => (
                StatusCode::from_u16(code).unwrap(),
                [("retry-after", after)],
                "slow down",
            )
                .into_response(),
            Some(Reply::Sleep(d)) => {
                tokio::time::sleep(d).await;
                (StatusCode::OK, "late").into_response()
            }
        }
    }

    async fn sink_server(script: Vec<Reply>) -> (SocketAddr, Shared) {
        let state: Shared = Arc::new(Mutex::new(Recorder {
            requests: Vec::new(),
            script: script.into(),
        }));
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (addr, state)
    }

    fn requests(state: &Shared) -> Vec<Recorded> {
        state.lock().unwrap().requests.clone()
    }

    fn fast_retry(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
        }
    }

    fn anomaly() -> Anomaly {
        Anomaly {
            anomaly_id: "a1b2c3".into(),
            tenant: "acme".into(),
            service_name: "checkout".into(),
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            labels: r#"{"region":"eu-west","k8s.pod":"p-1"}"#.into(),
            kind: "regression".into(),
            baseline: "rolling".into(),
            metric: "self".into(),
            function: "json.encode".into(),
            baseline_share: 0.12,
            current_share: 0.181,
            delta: 0.061,
            score: 8.3,
            p_value: 1.2e-9,
            severity: "critical".into(),
            window_start_us: 1_700_000_000_000_000,
            window_end_us: 1_700_000_180_000_000,
            baseline_start_us: 1_699_996_400_000_000,
            baseline_end_us: 1_700_000_000_000_000,
            windows: 3,
            version_before: Some("1.4.1".into()),
            version_after: Some("1.4.2".into()),
            example_stack: "main;handler;json.encode".into(),
            query_url: "/api/v1/query?q=1".into(),
            svg_url: "/api/v1/diff.svg?from=1&to=2".into(),
        }
    }

    fn sink(format: Format, url: String) -> Sink {
        Sink {
            url,
            format,
            bearer_token: None,
        }
    }

    #[test]
    fn parse_sinks() {
        let s = Sink::parse("alertmanager=http://host:9093/api/v2/alerts").unwrap();
        assert_eq!(s.format, Format::Alertmanager);
        assert_eq!(s.url, "http://host:9093/api/v2/alerts");
        assert!(s.bearer_token.is_none());

        let s = Sink::parse("grafana=https://grafana.example/sub/").unwrap();
        assert_eq!(s.format, Format::Grafana);
        assert_eq!(
            s.endpoint().unwrap().as_str(),
            "https://grafana.example/sub/api/annotations"
        );
        let s = Sink::parse("grafana=https://g.example/api/annotations").unwrap();
        assert_eq!(
            s.endpoint().unwrap().as_str(),
            "https://g.example/api/annotations"
        );

        let s = Sink::parse("json=http://h/hook?a=b").unwrap();
        assert_eq!(
            (s.format, s.url.as_str()),
            (Format::Json, "http://h/hook?a=b")
        );
        // A plain URL (with `=` in its query) is json.
        let s: Sink = "http://h/hook?token=x".parse().unwrap();
        assert_eq!(
            (s.format, s.url.as_str()),
            (Format::Json, "http://h/hook?token=x")
        );
        assert_eq!(s.display_name(), "json=http://h/hook?***");

        for bad in [
            "",
            "slack=http://h/",
            "json=",
            "json=not a url",
            "ftp://h/x",
            "alertmanager=http://",
        ] {
            let e = Sink::parse(bad).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.is_empty());
        }
        let e = Sink::parse("slack=http://h/").unwrap_err().to_string();
        assert!(e.contains("unknown format \"slack\""), "{e}");
    }

    #[test]
    fn deserialize_and_debug_redacts_token() {
        let s: Sink = serde_json::from_value(json!({
            "url": "http://u:pw@h/x",
            "format": "grafana",
            "bearer_token": "s3cret",
        }))
        .unwrap();
        assert_eq!(s.format, Format::Grafana);
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("pw"), "{dbg}");
        let s: Sink = serde_json::from_value(json!({"url": "http://h/x"})).unwrap();
        assert_eq!(s.format, Format::Json);
        assert!(
            serde_json::from_value::<Sink>(json!({"url": "http://h", "fromat": "json"})).is_err()
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(6), Duration::from_millis(6400));
        assert_eq!(p.backoff(7), Duration::from_secs(10));
        assert_eq!(p.backoff(100), Duration::from_secs(10));
        for failed in 1..10 {
            let d = p.delay(failed, None);
            assert!(d >= p.backoff(failed) && d <= p.max_backoff, "{d:?}");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn summary_line() {
        let a = anomaly();
        assert_eq!(
            summary(&a),
            "checkout: json.encode +6.1 pp of CPU (12.0% → 18.1%) since version 1.4.2"
        );
        let mut b = a.clone();
        b.delta = -0.004;
        b.baseline_share = 0.009;
        b.current_share = 0.005;
        b.version_after = b.version_before.clone();
        b.metric = "total".into();
        b.profile_type = "memory:alloc_space:bytes:space:bytes".into();
        assert_eq!(
            summary(&b),
            "checkout: json.encode -0.40 pp of allocated bytes incl. callees (0.90% → 0.50%)"
        );
    }

    #[tokio::test]
    async fn payloads_of_each_format() {
        let (addr, state) = sink_server(vec![]).await;
        let base = format!("http://{addr}");
        let sinks = vec![
            sink(Format::Json, format!("{base}/hook")).with_bearer_token("tok-json"),
            sink(Format::Alertmanager, format!("{base}/api/v2/alerts")).with_bearer_token("tok-am"),
            sink(Format::Grafana, format!("{base}/grafana")).with_bearer_token("tok-graf"),
        ];
        let n = Notifier::new(sinks, "http://127.0.0.1:4040/", fast_retry(2)).unwrap();
        n.notify(&anomaly()).await.unwrap();

        let reqs = requests(&state);
        assert_eq!(reqs.len(), 3);
        let by_path = |p: &str| reqs.iter().find(|r| r.path == p).unwrap().clone();
        let diff_url = "http://127.0.0.1:4040/api/v1/diff.svg?from=1&to=2";
        let summary = "checkout: json.encode +6.1 pp of CPU (12.0% → 18.1%) since version 1.4.2";

        // json
        let r = by_path("/hook");
        assert_eq!(r.headers["authorization"], "Bearer tok-json");
        assert_eq!(r.headers["content-type"], "application/json");
        let b = &r.body;
        for (k, v) in [
            ("anomaly_id", json!("a1b2c3")),
            ("tenant", json!("acme")),
            ("service", json!("checkout")),
            (
                "profile_type",
                json!("process_cpu:cpu:nanoseconds:cpu:nanoseconds"),
            ),
            ("labels", json!({"region": "eu-west", "k8s.pod": "p-1"})),
            ("kind", json!("regression")),
            ("severity", json!("critical")),
            ("function", json!("json.encode")),
            ("metric", json!("self")),
            ("baseline", json!("rolling")),
            ("baseline_share", json!(0.12)),
            ("current_share", json!(0.181)),
            ("delta", json!(0.061)),
            ("score", json!(8.3)),
            ("p_value", json!(1.2e-9)),
            (
                "window",
                json!({"start": "2023-11-14T22:13:20Z", "end": "2023-11-14T22:16:20Z"}),
            ),
            (
                "baseline_window",
                json!({"start": "2023-11-14T21:13:20Z", "end": "2023-11-14T22:13:20Z"}),
            ),
            ("version_before", json!("1.4.1")),
            ("version_after", json!("1.4.2")),
            ("example_stack", json!("main;handler;json.encode")),
            ("diff_url", json!(diff_url)),
            ("query_url", json!("http://127.0.0.1:4040/api/v1/query?q=1")),
            ("summary", json!(summary)),
        ] {
            assert_eq!(b[k], v, "json field {k}");
        }

        // alertmanager
        let r = by_path("/api/v2/alerts");
        assert_eq!(r.headers["authorization"], "Bearer tok-am");
        let alerts = r.body.as_array().expect("an array of alerts");
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(
            alert["labels"],
            json!({
                "alertname": "StackdriftAnomaly",
                "service": "checkout",
                "function": "json.encode",
                "kind": "regression",
                "severity": "critical",
                "profile_type": "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                "tenant": "acme",
                "region": "eu-west",
                "k8s_pod": "p-1",
            })
        );
        assert_eq!(alert["annotations"]["summary"], summary);
        assert_eq!(alert["annotations"]["diff_url"], diff_url);
        let desc = alert["annotations"]["description"].as_str().unwrap();
        assert!(desc.contains("rose from 12.0% to 18.1%"), "{desc}");
        assert!(desc.contains("1.4.1 → 1.4.2"), "{desc}");
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(alert["generatorURL"], diff_url);
        assert!(alert.get("endsAt").is_none());

        // grafana
        let r = by_path("/grafana/api/annotations");
        assert_eq!(r.headers["authorization"], "Bearer tok-graf");
        let b = &r.body;
        assert_eq!(b["time"], json!(1_700_000_000_000i64));
        assert_eq!(b["timeEnd"], json!(1_700_000_180_000i64));
        assert_eq!(
            b["tags"],
            json!(["stackdrift", "checkout", "regression", "critical"])
        );
        let text = b["text"].as_str().unwrap();
        assert!(text.starts_with(summary), "{text}");
        assert!(
            text.contains("<a href=\"http://127.0.0.1:4040/api/v1/diff.svg?from=1&amp;to=2\">"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_bearer_header_without_token() {
        let (addr, state) = sink_server(vec![]).await;
        let n = Notifier::new(
            vec![sink(Format::Json, format!("http://{addr}/x"))],
            "",
            fast_retry(1),
        )
        .unwrap();
        n.notify(&anomaly()).await.unwrap();
        let reqs = requests(&state);
        assert!(reqs[0].headers.get("authorization").is_none());
        // No public URL: the links stay relative.
        assert_eq!(reqs[0].body["diff_url"], "/api/v1/diff.svg?from=1&to=2");
    }

    #[tokio::test]
    async fn retries_5xx_until_accepted() {
        let (addr, state) = sink_server(vec![Reply::Status(503), Reply::Status(503)]).await;
        let n = Notifier::new(
            vec![sink(Format::Json, format!("http://{addr}/hook"))],
            "http://x",
            fast_retry(5),
        )
        .unwrap();
        n.notify(&anomaly()).await.unwrap();
        let reqs = requests(&state);
        assert_eq!(reqs.len(), 3);
        assert!(reqs.iter().all(|r| r.body == reqs[0].body));
    }

    #[tokio::test]
    async fn client_error_is_not_retried() {
        let (bad_addr, bad) = sink_server(vec![Reply::Status(400)]).await;
        let (ok_addr, ok) = sink_server(vec![]).await;
        let n = Notifier::new(
            vec![
                sink(
                    Format::Alertmanager,
                    format!("http://{bad_addr}/api/v2/alerts"),
                )
                .with_bearer_token("never-shown"),
                sink(Format::Json, format!("http://{ok_addr}/hook")),
            ],
            "http://x",
            fast_retry(5),
        )
        .unwrap();
        let err = n.notify(&anomaly()).await.unwrap_err();
        assert_eq!(requests(&bad).len(), 1);
        assert_eq!(requests(&ok).len(), 1);
        let NotifyError::Failed { failures, total } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*total, 2);
        assert_eq!(failures.len(), 1);
        assert_eq!(
            failures[0].sink,
            format!("alertmanager=http://{bad_addr}/api/v2/alerts")
        );
        assert_eq!(failures[0].attempts, 1);
        assert!(failures[0].permanent);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("http://{bad_addr}/api/v2/alerts")),
            "{msg}"
        );
        assert!(msg.contains("400"), "{msg}");
        assert!(msg.contains("scripted failure <b>"), "{msg}");
        assert!(!msg.contains('\n') && !msg.contains("never-shown"), "{msg}");
    }

    #[tokio::test]
    async fn dead_port_fails_after_all_attempts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let n = Notifier::new(
            vec![sink(Format::Json, format!("http://{addr}/hook"))],
            "http://x",
            fast_retry(3),
        )
        .unwrap();
        let start = Instant::now();
        let err = n.notify(&anomaly()).await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let NotifyError::Failed { failures, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].attempts, 3);
        assert!(!failures[0].permanent);
        assert!(
            err.to_string()
                .contains(&format!("json=http://{addr}/hook")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn timeout_is_retried() {
        let (addr, state) = sink_server(vec![Reply::Sleep(Duration::from_millis(500))]).await;
        let policy = RetryPolicy {
            timeout: Duration::from_millis(100),
            ..fast_retry(2)
        };
        let n = Notifier::new(
            vec![sink(Format::Json, format!("http://{addr}/hook"))],
            "http://x",
            policy,
        )
        .unwrap();
        n.notify(&anomaly()).await.unwrap();
        assert_eq!(requests(&state).len(), 2);
    }

    #[tokio::test]
    async fn retry_after_is_honored_and_capped() {
        let policy = RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(150),
            timeout: Duration::from_secs(2),
        };

        // Retry-After: 1 s, far above the 2 ms backoff: waited, but capped at 150 ms.
        let (addr, state) = sink_server(vec![
            Reply::RetryAfter(429, "1"),
            Reply::RetryAfter(503, "1"),
        ])
        .await;
        let n = Notifier::new(
            vec![sink(Format::Json, format!("http://{addr}/hook"))],
            "http://x",
            policy,
        )
        .unwrap();
        let start = Instant::now();
        n.notify(&anomaly()).await.unwrap();
        let reqs = requests(&state);
        assert_eq!(reqs.len(), 3);
        for pair in reqs.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(150),
                "{gap:?}: Retry-After not honored"
            );
            assert!(
                gap < Duration::from_millis(900),
                "{gap:?}: Retry-After not capped"
            );
        }
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn retry_after_header_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
