//! `querier.v1.QuerierService`, the API Grafana's Pyroscope datasource speaks, as typed
//! request → response functions shared by the Connect ([`crate::connect`]) and gRPC
//! ([`crate::grpc`]) front ends.

use stackdrift_proto::pprof::Profile;
use stackdrift_proto::querier::v1 as q;
use stackdrift_proto::types::v1 as types;

use crate::error::QueryError;
use crate::flamegraph;
use crate::profiles::{self, Aggregation, Selection};
use crate::query::Querier;

/// `max_nodes` when a request sets none (Grafana sends its own, 16,384 by default).
pub const DEFAULT_MAX_NODES: usize = 16_384;

fn selectors(one: &str) -> Vec<&str> {
    if one.trim().is_empty() {
        vec![]
    } else {
        vec![one]
    }
}

fn max_nodes(n: Option<i64>) -> Option<usize> {
    match n {
        Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(_) => None,
        None => Some(DEFAULT_MAX_NODES),
    }
}

/// `ProfileTypes` (Grafana's health check calls it too).
pub async fn profile_types(
    qr: &Querier,
    tenant: &str,
    req: q::ProfileTypesRequest,
) -> Result<q::ProfileTypesResponse, QueryError> {
    let sel = Selection::parse(None, &[], req.start, req.end)?;
    Ok(q::ProfileTypesResponse {
        profile_types: profiles::profile_types(qr, tenant, &sel).await?,
    })
}

/// `LabelNames`.
pub async fn label_names(
    qr: &Querier,
    tenant: &str,
    req: types::LabelNamesRequest,
) -> Result<types::LabelNamesResponse, QueryError> {
    let m: Vec<&str> = req.matchers.iter().map(String::as_str).collect();
    let sel = Selection::parse(None, &m, req.start, req.end)?;
    Ok(types::LabelNamesResponse {
        names: profiles::label_names(qr, tenant, &sel).await?,
    })
}

/// `LabelValues`.
pub async fn label_values(
    qr: &Querier,
    tenant: &str,
    req: types::LabelValuesRequest,
) -> Result<types::LabelValuesResponse, QueryError> {
    let m: Vec<&str> = req.matchers.iter().map(String::as_str).collect();
    let sel = Selection::parse(None, &m, req.start, req.end)?;
    Ok(types::LabelValuesResponse {
        names: profiles::label_values(qr, tenant, &sel, &req.name).await?,
    })
}

/// `Series`.
pub async fn series(
    qr: &Querier,
    tenant: &str,
    req: q::SeriesRequest,
) -> Result<q::SeriesResponse, QueryError> {
    let m: Vec<&str> = req.matchers.iter().map(String::as_str).collect();
    let sel = Selection::parse(None, &m, req.start, req.end)?;
    Ok(q::SeriesResponse {
        labels_set: profiles::series(qr, tenant, &sel, &req.label_names).await?,
    })
}

fn stacktraces_selection(req: &q::SelectMergeStacktracesRequest) -> Result<Selection, QueryError> {
    Selection::parse(
        Some(&req.profile_type_id),
        &selectors(&req.label_selector),
        req.start,
        req.end,
    )
}

/// `SelectMergeStacktraces`: the merged flame graph, level-encoded.
pub async fn select_merge_stacktraces(
    qr: &Querier,
    tenant: &str,
    req: q::SelectMergeStacktracesRequest,
) -> Result<q::SelectMergeStacktracesResponse, QueryError> {
    if req.format == q::ProfileFormat::Tree as i32 || req.format == q::ProfileFormat::Dot as i32 {
        return Err(QueryError::Unimplemented(
            "SelectMergeStacktraces in TREE or DOT format".into(),
        ));
    }
    let sel = stacktraces_selection(&req)?;
    let tree = profiles::flame_tree(qr, tenant, &sel).await?;
    Ok(q::SelectMergeStacktracesResponse {
        flamegraph: Some(tree.to_flamegraph(max_nodes(req.max_nodes))),
        tree: Vec::new(),
    })
}

/// `SelectMergeProfile`: the merged profile as pprof.
pub async fn select_merge_profile(
    qr: &Querier,
    tenant: &str,
    req: q::SelectMergeProfileRequest,
) -> Result<Profile, QueryError> {
    let sel = Selection::parse(
        Some(&req.profile_type_id),
        &selectors(&req.label_selector),
        req.start,
        req.end,
    )?;
    profiles::merged_pprof(qr, tenant, &sel).await
}

/// `SelectSeries`.
pub async fn select_series(
    qr: &Querier,
    tenant: &str,
    req: q::SelectSeriesRequest,
) -> Result<q::SelectSeriesResponse, QueryError> {
    let sel = Selection::parse(
        Some(&req.profile_type_id),
        &selectors(&req.label_selector),
        req.start,
        req.end,
    )?;
    let aggregation = match req.aggregation {
        None | Some(0) => Aggregation::Sum,
        Some(1) => Aggregation::Average,
        Some(other) => {
            return Err(QueryError::BadRequest(format!(
                "unknown aggregation {other}: use 0 (sum) or 1 (average)"
            )));
        }
    };
    let limit = usize::try_from(req.limit.unwrap_or(0).max(0)).unwrap_or(usize::MAX);
    Ok(q::SelectSeriesResponse {
        series: profiles::select_series(
            qr,
            tenant,
            &sel,
            &req.group_by,
            req.step,
            aggregation,
            limit,
        )
        .await?,
    })
}

/// `Diff`: left (baseline) against right (comparison).
pub async fn diff(
    qr: &Querier,
    tenant: &str,
    req: q::DiffRequest,
) -> Result<q::DiffResponse, QueryError> {
    let (Some(left), Some(right)) = (req.left, req.right) else {
        return Err(QueryError::BadRequest(
            "Diff needs both `left` and `right`".into(),
        ));
    };
    let max = max_nodes(left.max_nodes.or(right.max_nodes));
    let (l, r) = (
        stacktraces_selection(&left)?,
        stacktraces_selection(&right)?,
    );
    let left_tree = profiles::flame_tree(qr, tenant, &l).await?;
    let right_tree = profiles::flame_tree(qr, tenant, &r).await?;
    Ok(q::DiffResponse {
        flamegraph: Some(flamegraph::diff(&left_tree, &right_tree, max)),
    })
}
