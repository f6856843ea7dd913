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
    /// The accept loop; it owns every connection's task, so aborting it ends them all.
    task: Option<tokio::task::JoinHandle<()>>,
    /// Whether `task` is the never-answering listener of [`S3Server::stall`].
    stalled: bool,
}

impl S3Server {
    /// Starts a server with one bucket, [`BUCKET`].
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket dir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = Some(serve(listener, root.path()));
        Self {
            addr,
            root,
            task,
            stalled: false,
        }
    }

    /// Stops the server as an outage would: the port is closed and every open connection is
    /// cut, in-flight requests included. The data stays on disk.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Makes the server hang as an overloaded or partitioned store does: open connections are
    /// cut, and new ones are accepted but never answered. [`S3Server::restart`] ends it.
    pub async fn stall(&mut self) {
        self.stop().await;
        let listener = self.rebind().await;
        self.stalled = true;
        self.task = Some(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        }));
    }

    /// Serves the same data on the same address again after [`S3Server::stop`] or
    /// [`S3Server::stall`].
    pub async fn restart(&mut self) {
        if self.stalled {
            self.stop().await;
            self.stalled = false;
        }
        assert!(self.task.is_none(), "the server is running");
        let listener = self.rebind().await;
        self.task = Some(serve(listener, self.root.path()));
    }

    async fn rebind(&self) -> TcpListener {
        let mut tries = 0;
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => return l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("rebinding {}: {e}; retrying", self.addr);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        }
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
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves the bucket under `root` on `listener` until the returned task is aborted.
fn serve(listener: TcpListener, root: &std::path::Path) -> tokio::task::JoinHandle<()> {
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs");
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let conditional = Arc::new(Mutex::new(()));
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            // Finished connections are reaped as new ones arrive.
            while connections.try_join_next().is_some() {}
            let service = service.clone();
            let conditional = conditional.clone();
            connections.spawn(async move {
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
    })
}
