//! Exports for tools people already use: `GET /api/v1/pprof` (one merged, gzipped pprof that
//! `go tool pprof` opens), `GET /api/v1/flamegraph.svg` and `GET /api/v1/diff.svg` (rendered
//! with `inferno`).
//!
//! Parameters (query string):
//! * `query`: `PROFILE_TYPE{selector}`, as Pyroscope's render API takes it, e.g.
//!   `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="checkout"}`; or
//!   `profile_type` plus an optional `selector`.
//! * `from`, `until`: Unix seconds, milliseconds or nanoseconds (told apart by size), `now`, or
//!   `now-<n><s|m|h|d>`; default the last hour.
//! * SVGs: `max_nodes` (default 8,192; dropped subtrees become `other`), `title`.
//! * `diff.svg`: the baseline is `left_query` (or `query`) over `left_from`/`left_until`, the
//!   comparison `right_query` (or `query`) over `right_from`/`right_until` (default: `from`,
//!   `until`). Each side is normalized by its own total before comparing.
//!
//! Memory: a merge holds one entry per distinct stack in the range (DataFusion sums the rows
//! first), so a long range costs no more than the stacks it contains.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use prost::Message;
use stackdrift_model::tenant::TENANT_HEADER;

use crate::error::QueryError;
use crate::flamegraph::{self, FlameTree};
use crate::profiles::{self, Selection};
use crate::query::Querier;
use crate::sql::error_response;

/// Default `max_nodes` of the SVG exports.
pub const SVG_MAX_NODES: usize = 8_192;

/// Routes of the exports.
pub fn routes(querier: Arc<Querier>) -> Router {
    Router::new()
        .route("/api/v1/pprof", get(pprof))
        .route("/api/v1/flamegraph.svg", get(flamegraph_svg))
        .route("/api/v1/diff.svg", get(diff_svg))
        .with_state(querier)
}

type Params = HashMap<String, String>;

/// The current time, Unix ms.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses a time parameter into Unix ms.
pub fn parse_time(value: &str, now_ms: i64) -> Result<i64, QueryError> {
    let v = value.trim();
    let bad = || {
        QueryError::BadRequest(format!(
            "time {value:?}: use Unix seconds, ms or ns, `now` or `now-<n><s|m|h|d>`"
        ))
    };
    if v == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = v.strip_prefix("now-") {
        let (num, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
        let n: i64 = num.parse().map_err(|_| bad())?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        return Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)));
    }
    let n: i64 = v.parse().map_err(|_| bad())?;
    // Seconds until the year 5138, then ms, µs, ns.
    Ok(match n.unsigned_abs() {
        0..100_000_000_000 => n.saturating_mul(1000),
        100_000_000_000..100_000_000_000_000 => n,
        100_000_000_000_000..100_000_000_000_000_000 => n / 1000,
        _ => n / 1_000_000,
    })
}

/// Splits `TYPE{selector}` (the selector part is optional).
pub fn split_query(query: &str) -> (&str, &str) {
    match query.find('{') {
        Some(i) => (query[..i].trim(), &query[i..]),
        None => (query.trim(), ""),
    }
}

/// The selection one side of an export reads. `prefix` is "" or "left_"/"right_".
fn selection(params: &Params, prefix: &str, now: i64) -> Result<Selection, QueryError> {
    let get = |name: &str| {
        params
            .get(&format!("{prefix}{name}"))
            .or_else(|| params.get(name))
            .map(String::as_str)
    };
    let (profile_type, selector) = match get("query") {
        Some(q) => split_query(q),
        None => (
            get("profile_type").unwrap_or(""),
            get("selector").unwrap_or(""),
        ),
    };
    if profile_type.is_empty() {
        return Err(QueryError::BadRequest(
            "missing profile type: pass query=TYPE{selector} or profile_type=TYPE".into(),
        ));
    }
    let from = get("from").map_or(Ok(now - 3_600_000), |v| parse_time(v, now))?;
    let until = get("until").map_or(Ok(now), |v| parse_time(v, now))?;
    let selectors: Vec<&str> = if selector.trim().is_empty() {
        vec![]
    } else {
        vec![selector]
    };
    Selection::parse(Some(profile_type), &selectors, from, until)
}

/// The tenant of a request, from its `Authorization` and `X-Scope-OrgID` headers.
pub(crate) fn tenant(querier: &Querier, headers: &HeaderMap) -> Result<String, QueryError> {
    querier.tenant(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
    )
}

fn max_nodes(params: &Params) -> Result<Option<usize>, QueryError> {
    match params.get("max_nodes") {
        None => Ok(Some(SVG_MAX_NODES)),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(QueryError::BadRequest(format!(
                "max_nodes {v:?} is not a non-negative integer"
            ))),
        },
    }
}

async fn pprof(
    State(querier): State<Arc<Querier>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let started = std::time::Instant::now();
    let result = async {
        let tenant = tenant(&querier, &headers)?;
        let sel = selection(&params, "", now_ms())?;
        let p = profiles::merged_pprof(&querier, &tenant, &sel).await;
        querier.observe("pprof", &tenant, started, p.as_ref().err());
        let bytes = stackdrift_model::encode::gzip(&p?.encode_to_vec());
        Ok::<_, QueryError>(bytes)
    }
    .await;
    match result {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile.pb.gz\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

/// Folded lines (`root;…;leaf value`) of a tree cut to `max_nodes`.
fn folded(tree: &FlameTree, max_nodes: Option<usize>) -> Result<Vec<(String, i64)>, QueryError> {
    let fg = tree.to_flamegraph(max_nodes);
    let stacks = flamegraph::decode(&fg).map_err(QueryError::Internal)?;
    Ok(stacks
        .into_iter()
        .filter(|(stack, _)| !stack.is_empty())
        .map(|(stack, v)| {
            // `;` separates frames and a space ends the stack in the folded format.
            let names: Vec<String> = stack
                .iter()
                .map(|n| n.replace(';', ":").replace(' ', "\u{a0}"))
                .collect();
            (names.join(";"), v)
        })
        .collect())
}

fn render(
    lines: &[String],
    title: &str,
    count_name: &str,
    differential: bool,
) -> Result<Vec<u8>, QueryError> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_owned();
    opts.count_name = count_name.to_owned();
    if differential {
        opts.subtitle = Some("red: larger share in the comparison, blue: smaller".into());
    }
    let mut out = Vec::new();
    if lines.is_empty() {
        // inferno refuses empty input; an empty graph is a valid answer.
        let empty = ["(no data) 1".to_owned()];
        inferno::flamegraph::from_lines(&mut opts, empty.iter().map(String::as_str), &mut out)
    } else {
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out)
    }
    .map_err(|e| QueryError::Internal(format!("rendering the SVG: {e}")))?;
    Ok(out)
}

fn svg_response(result: Result<Vec<u8>, QueryError>) -> Response {
    match result {
        Ok(svg) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "image/svg+xml")],
            svg,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

/// What the values count, for the SVG's tooltips.
fn unit_of(sel: &Selection) -> String {
    sel.profile_type
        .as_deref()
        .and_then(|t| t.split(':').nth(2))
        .unwrap_or("samples")
        .to_owned()
}

async fn flamegraph_svg(
    State(querier): State<Arc<Querier>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let started = std::time::Instant::now();
    svg_response(
        async {
            let tenant = tenant(&querier, &headers)?;
            let sel = selection(&params, "", now_ms())?;
            let tree = profiles::flame_tree(&querier, &tenant, &sel).await;
            querier.observe("flamegraph_svg", &tenant, started, tree.as_ref().err());
            let lines: Vec<String> = folded(&tree?, max_nodes(&params)?)?
                .into_iter()
                .map(|(s, v)| format!("{s} {v}"))
                .collect();
            let title = params
                .get("title")
                .cloned()
                .unwrap_or_else(|| params.get("query").cloned().unwrap_or_default());
            render(&lines, &title, &unit_of(&sel), false)
        }
        .await,
    )
}

/// Parts per million of each side's total: both sides sum to 1,000,000.
const SHARE_SCALE: f64 = 1_000_000.0;

async fn diff_svg(
    State(querier): State<Arc<Querier>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let started = std::time::Instant::now();
    svg_response(
        async {
            let tenant = tenant(&querier, &headers)?;
            let now = now_ms();
            let left = selection(&params, "left_", now)?;
            let right = selection(&params, "right_", now)?;
            let l = profiles::flame_tree(&querier, &tenant, &left).await;
            let r = match &l {
                Ok(_) => profiles::flame_tree(&querier, &tenant, &right).await,
                Err(_) => Ok(FlameTree::new()),
            };
            let err = l.as_ref().err().or(r.as_ref().err());
            querier.observe("diff_svg", &tenant, started, err);
            let (l, r) = (l?, r?);
            let max = max_nodes(&params)?;
            let share = |v: i64, total: i64| -> i64 {
                if total == 0 {
                    0
                } else {
                    (v as f64 * SHARE_SCALE / total as f64).round() as i64
                }
            };
            let mut both: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
            for (s, v) in folded(&l, max)? {
                both.entry(s).or_default().0 += share(v, l.total());
            }
            for (s, v) in folded(&r, max)? {
                both.entry(s).or_default().1 += share(v, r.total());
            }
            let lines: Vec<String> = both
                .into_iter()
                .map(|(s, (a, b))| format!("{s} {a} {b}"))
                .collect();
            let title = params
                .get("title")
                .cloned()
                .unwrap_or_else(|| "baseline vs comparison (shares of each total)".into());
            render(&lines, &title, "ppm", true)
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_unit() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("now-15m", now).unwrap(), now - 900_000);
        assert_eq!(parse_time("now-2d", now).unwrap(), now - 172_800_000);
        assert_eq!(parse_time("1700000000", now).unwrap(), now);
        assert_eq!(parse_time("1700000000000", now).unwrap(), now);
        assert_eq!(parse_time("1700000000000000", now).unwrap(), now);
        assert_eq!(parse_time("1700000000000000000", now).unwrap(), now);
        for bad in ["", "yesterday", "now-", "now-5y", "now-m", "1.5"] {
            assert!(parse_time(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn queries_split_into_type_and_selector() {
        assert_eq!(
            split_query(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="a"}"#),
            (
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                r#"{service_name="a"}"#
            )
        );
        assert_eq!(split_query("memory:a:b:c:d"), ("memory:a:b:c:d", ""));
    }

    #[test]
    fn folded_lines_escape_separators_and_keep_totals() {
        let mut t = FlameTree::new();
        t.add(["leaf;x", "main"].into_iter(), 3);
        t.add(["a b", "main"].into_iter(), 4);
        let lines = folded(&t, None).unwrap();
        assert_eq!(
            lines,
            vec![
                ("main;a\u{a0}b".to_owned(), 4),
                ("main;leaf:x".to_owned(), 3)
            ]
        );
        let svg = render(
            &lines
                .iter()
                .map(|(s, v)| format!("{s} {v}"))
                .collect::<Vec<_>>(),
            "t",
            "nanoseconds",
            false,
        )
        .unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..80]);
        assert!(svg.contains("leaf:x"));
    }
}
