//! `querier.v1.QuerierService` over gRPC, on the same port as everything else (requests with
//! `content-type: application/grpc` are routed here). Methods this server does not know, such
//! as `SelectMergeSpanProfile` and `SelectHeatmap`, get tonic's `UNIMPLEMENTED`.

use std::sync::Arc;
use std::time::Instant;

use stackdrift_model::tenant::TENANT_HEADER;
use stackdrift_proto::pprof::Profile;
use stackdrift_proto::querier::v1 as q;
use stackdrift_proto::querier::v1::querier_service_server::{QuerierService, QuerierServiceServer};
use stackdrift_proto::types::v1 as types;
use tonic::{Request, Response, Status};

use crate::api;
use crate::error::QueryError;
use crate::query::Querier;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcQuerier(Arc<Querier>);

impl GrpcQuerier {
    /// The tonic server for `querier`.
    pub fn server(querier: Arc<Querier>) -> QuerierServiceServer<Self> {
        QuerierServiceServer::new(Self(querier))
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(256 << 20)
    }

    /// Resolves the tenant, runs `f`, counts the call.
    async fn run<Req, Resp, Fut>(
        &self,
        api: &str,
        request: Request<Req>,
        f: impl FnOnce(Arc<Querier>, String, Req) -> Fut,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: std::future::Future<Output = Result<Resp, QueryError>>,
    {
        let started = Instant::now();
        let md = request.metadata();
        let tenant = self.0.tenant(
            md.get("authorization").map(|v| v.as_bytes()),
            md.get(TENANT_HEADER).map(|v| v.as_bytes()),
        )?;
        let result = f(self.0.clone(), tenant.clone(), request.into_inner()).await;
        self.0.observe(api, &tenant, started, result.as_ref().err());
        Ok(Response::new(result?))
    }
}

#[tonic::async_trait]
impl QuerierService for GrpcQuerier {
    async fn profile_types(
        &self,
        request: Request<q::ProfileTypesRequest>,
    ) -> Result<Response<q::ProfileTypesResponse>, Status> {
        self.run("ProfileTypes", request, |qr, t, r| async move {
            api::profile_types(&qr, &t, r).await
        })
        .await
    }

    async fn label_values(
        &self,
        request: Request<types::LabelValuesRequest>,
    ) -> Result<Response<types::LabelValuesResponse>, Status> {
        self.run("LabelValues", request, |qr, t, r| async move {
            api::label_values(&qr, &t, r).await
        })
        .await
    }

    async fn label_names(
        &self,
        request: Request<types::LabelNamesRequest>,
    ) -> Result<Response<types::LabelNamesResponse>, Status> {
        self.run("LabelNames", request, |qr, t, r| async move {
            api::label_names(&qr, &t, r).await
        })
        .await
    }

    async fn series(
        &self,
        request: Request<q::SeriesRequest>,
    ) -> Result<Response<q::SeriesResponse>, Status> {
        self.run("Series", request, |qr, t, r| async move {
            api::series(&qr, &t, r).await
        })
        .await
    }

    async fn select_merge_stacktraces(
        &self,
        request: Request<q::SelectMergeStacktracesRequest>,
    ) -> Result<Response<q::SelectMergeStacktracesResponse>, Status> {
        self.run("SelectMergeStacktraces", request, |qr, t, r| async move {
            api::select_merge_stacktraces(&qr, &t, r).await
        })
        .await
    }

    async fn select_merge_profile(
        &self,
        request: Request<q::SelectMergeProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        self.run("SelectMergeProfile", request, |qr, t, r| async move {
            api::select_merge_profile(&qr, &t, r).await
        })
        .await
    }

    async fn select_series(
        &self,
        request: Request<q::SelectSeriesRequest>,
    ) -> Result<Response<q::SelectSeriesResponse>, Status> {
        self.run("SelectSeries", request, |qr, t, r| async move {
            api::select_series(&qr, &t, r).await
        })
        .await
    }

    async fn diff(
        &self,
        request: Request<q::DiffRequest>,
    ) -> Result<Response<q::DiffResponse>, Status> {
        self.run("Diff", request, |qr, t, r| async move {
            api::diff(&qr, &t, r).await
        })
        .await
    }
}
