//! `push.v1.PusherService` over gRPC (HTTP/2, `application/grpc`), as Grafana Alloy sends it.

use std::sync::Arc;

use prost::Message;
use stackdrift_model::tenant::TENANT_HEADER;
use stackdrift_proto::push::v1::pusher_service_server::{PusherService, PusherServiceServer};
use stackdrift_proto::push::v1::{PushRequest, PushResponse};
use tonic::{Request, Response, Status};

use crate::inflight::InflightPermit;
use crate::push::Ingester;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcPusher {
    ingester: Arc<Ingester>,
}

impl GrpcPusher {
    /// A tonic server for `ingester`, accepting gzip-compressed requests.
    pub fn server(ingester: Arc<Ingester>) -> PusherServiceServer<Self> {
        let limit = ingester.limits().max_body_bytes();
        PusherServiceServer::new(Self { ingester })
            .max_decoding_message_size(limit)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    }
}

#[tonic::async_trait]
impl PusherService for GrpcPusher {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let (tenant, request, size, _permit) = admit(&self.ingester, request)?;
        self.ingester.push(&tenant, request, size).await?;
        Ok(Response::new(PushResponse {}))
    }
}

/// Admits a gRPC request by its metadata (as [`Ingester::admit`]); returns the tenant, the
/// message, its encoded size and the in-flight reservation (hold it until answering). A
/// refusal is counted and becomes the gRPC status.
pub fn admit<T: Message>(
    ingester: &Ingester,
    request: Request<T>,
) -> Result<(String, T, usize, InflightPermit), Status> {
    let md = request.metadata();
    let authorization = md.get("authorization").map(|v| v.as_bytes());
    let org_id = md.get(TENANT_HEADER).map(|v| v.as_bytes());
    let size = request.get_ref().encoded_len();
    match ingester.admit(authorization, org_id, size) {
        Ok((tenant, permit)) => Ok((tenant, request.into_inner(), size, permit)),
        Err(e) => {
            ingester.reject(&e);
            Err(Status::from(e))
        }
    }
}
