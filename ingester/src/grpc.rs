//! `push.v1.PusherService` over gRPC (HTTP/2, `application/grpc`), as Grafana Alloy sends it.

use std::sync::Arc;

use prost::Message;
use stackdrift_model::tenant::{TENANT_HEADER, tenant_from_header};
use stackdrift_proto::push::v1::pusher_service_server::{PusherService, PusherServiceServer};
use stackdrift_proto::push::v1::{PushRequest, PushResponse};
use tonic::{Request, Response, Status};

use crate::error::IngestError;
use crate::push::Ingester;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcPusher {
    ingester: Arc<Ingester>,
}

impl GrpcPusher {
    /// A tonic server for `ingester`, accepting gzip-compressed requests.
    pub fn server(ingester: Arc<Ingester>) -> PusherServiceServer<Self> {
        let limit = ingester.limits().max_body_bytes;
        PusherServiceServer::new(Self { ingester })
            .max_decoding_message_size(limit)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    }
}

#[tonic::async_trait]
impl PusherService for GrpcPusher {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let tenant =
            tenant_from_header(request.metadata().get(TENANT_HEADER).map(|v| v.as_bytes()))
                .map_err(|m| {
                    let e = IngestError::BadRequest(m);
                    self.ingester.reject(&e);
                    Status::from(e)
                })?;
        let request = request.into_inner();
        let size = request.encoded_len();
        self.ingester.push(&tenant, &request, size).await?;
        Ok(Response::new(PushResponse {}))
    }
}
