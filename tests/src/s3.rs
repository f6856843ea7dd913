//! An S3 server in this process (`s3s-fs` over a temp dir), listening on 127.0.0.1:0.
//!
//! `s3s-fs` implements create-if-absent as check-then-rename, so two concurrent conditional
//! PUTs of one key could both succeed. Real S3 and MinIO make them atomic; here every
//! conditional PUT (`If-None-Match` / `If-Match`) is serialized through one lock so Delta's
//! commit protocol sees the same guarantee.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use stackdrift_storage::StorageConfig;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

pub const ACCESS_KEY: &str = "stackdrift-test";
pub const SECRET_KEY: &str = "stackdrift-test-secret";
pub const BUCKET: &str = "profiles";

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Starts a server with one bucket, [`BUCKET`].
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conditional = Arc::new(Mutex::new(()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                let conditional = conditional.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<Incoming>| {
                        let service = service.clone();
                        let conditional = conditional.clone();
                        async move {
                            let is_conditional = req.method() == http::Method::PUT
                                && (req.headers().contains_key(http::header::IF_NONE_MATCH)
                                    || req.headers().contains_key(http::header::IF_MATCH));
                            let _guard = if is_conditional {
                                Some(conditional.lock().await)
                            } else {
                                None
                            };
                            let resp = hyper::service::Service::call(&service, req).await;
                            Ok::<_, Infallible>(resp.unwrap_or_else(|e| {
                                let mut r = http::Response::new(s3s::Body::from(format!("{e:?}")));
                                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                                r
                            }))
                        }
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, root, task }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Object-store options for this server.
    pub fn options(&self) -> HashMap<String, String> {
        HashMap::from([
            ("aws_endpoint".to_owned(), self.endpoint()),
            ("aws_region".to_owned(), "us-east-1".to_owned()),
            ("aws_access_key_id".to_owned(), ACCESS_KEY.to_owned()),
            ("aws_secret_access_key".to_owned(), SECRET_KEY.to_owned()),
            ("aws_allow_http".to_owned(), "true".to_owned()),
            (
                "aws_virtual_hosted_style_request".to_owned(),
                "false".to_owned(),
            ),
        ])
    }

    /// Storage config for tables under `s3://BUCKET/prefix`.
    pub fn storage(&self, prefix: &str) -> StorageConfig {
        StorageConfig {
            url: format!("s3://{BUCKET}/{prefix}"),
            options: self.options(),
        }
    }

    /// Number of files stored under `prefix` on the server's disk.
    pub fn file_count(&self, prefix: &str) -> usize {
        fn walk(p: &std::path::Path) -> usize {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let path = e.path();
                            if path.is_dir() { walk(&path) } else { 1 }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.root.path().join(BUCKET).join(prefix))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
