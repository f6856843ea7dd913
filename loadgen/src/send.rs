//! The three ways to push a profile: Connect (`push.v1` over HTTP), gRPC, legacy `/ingest`.
//!
//! Requests are prepared once per payload ([`Prepared`]), so a send only clones reference
//! counted bytes (and, for gRPC, the few label strings).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::ValueEnum;
use prost::Message;
use prost::bytes::Bytes;
use stackdrift_proto::push::v1::PushRequest;
use stackdrift_proto::push::v1::pusher_service_client::PusherServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::generate::Payload;

/// How pushes reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// `POST /push.v1.PusherService/Push`, `application/proto` (Connect unary).
    Connect,
    /// `push.v1.PusherService/Push` over gRPC (tonic).
    Grpc,
    /// `POST /ingest?name=…&format=pprof` (Pyroscope's legacy API) with the gzipped pprof.
    Ingest,
}

impl Protocol {
    /// The name used on the command line and in the `RESULT` line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Grpc => "grpc",
            Self::Ingest => "ingest",
        }
    }
}

/// One payload, ready to send with a given protocol.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Connect: the encoded `PushRequest`; ingest: the gzipped pprof. Empty for gRPC.
    body: Bytes,
    /// gRPC: the request message.
    request: Option<PushRequest>,
    /// Ingest: the `name` query parameter (`service.cpu{k=v,…}`).
    name: String,
    /// Request bytes on the wire (body, or the encoded message for gRPC).
    pub(crate) bytes: usize,
    /// pprof `sample` entries in the payload.
    pub(crate) samples: usize,
}

/// A `push.v1` request carrying `payload` as one series (`__name__` = `process_cpu`).
pub(crate) fn push_request(payload: &Payload) -> PushRequest {
    let labels = std::iter::once(("__name__", "process_cpu"))
        .chain(payload.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    PushRequest::one_profile(labels, payload.gz.clone(), "")
}

/// Prepares `payload` for `protocol`.
pub(crate) fn prepare(protocol: Protocol, payload: &Payload) -> Prepared {
    match protocol {
        Protocol::Connect => {
            let body = Bytes::from(push_request(payload).encode_to_vec());
            Prepared {
                bytes: body.len(),
                body,
                request: None,
                name: String::new(),
                samples: payload.samples,
            }
        }
        Protocol::Grpc => {
            let request = push_request(payload);
            Prepared {
                bytes: request.encoded_len(),
                body: Bytes::new(),
                request: Some(request),
                name: String::new(),
                samples: payload.samples,
            }
        }
        Protocol::Ingest => {
            let extra: Vec<String> = payload
                .labels
                .iter()
                .filter(|(k, _)| k != "service_name")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Prepared {
                bytes: payload.gz.len(),
                body: payload.gz.clone(),
                request: None,
                name: format!("{}.cpu{{{}}}", payload.service, extra.join(",")),
                samples: payload.samples,
            }
        }
    }
}

/// What became of one push.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// 2xx (gRPC: OK).
    Accepted,
    /// The server answered with a refusal: the status (`429`, `grpc ResourceExhausted`, …)
    /// and the start of its message.
    Refused(String, String),
    /// No answer: connection or protocol error.
    Error(String),
}

impl Outcome {
    /// A refusal a client should retry later (429, 503 and their gRPC codes), as SDKs do.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Refused(status, _) if ["429", "503", "grpc ResourceExhausted", "grpc Unavailable"].contains(&status.as_str()))
    }
}

/// Target and credentials shared by all clients.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Base URL, without a trailing slash.
    pub(crate) url: String,
    /// `X-Scope-OrgID`.
    pub(crate) tenant: Option<String>,
    /// Bearer token.
    pub(crate) token: Option<String>,
}

/// One client: sends pushes one at a time.
#[derive(Debug)]
pub(crate) enum Sender {
    /// Connect or ingest over a (shared, pooled) HTTP client.
    Http {
        /// Which of the two HTTP protocols.
        protocol: Protocol,
        /// The HTTP client.
        http: reqwest::Client,
        /// Where to.
        target: Target,
    },
    /// gRPC over this client's own HTTP/2 connection.
    Grpc {
        /// The tonic client.
        client: PusherServiceClient<Channel>,
        /// Where to.
        target: Target,
    },
}

impl Sender {
    /// A client for `protocol`; gRPC clients open their own connection now.
    pub(crate) async fn new(
        protocol: Protocol,
        http: &reqwest::Client,
        target: &Target,
    ) -> anyhow::Result<Self> {
        Ok(match protocol {
            Protocol::Connect | Protocol::Ingest => Self::Http {
                protocol,
                http: http.clone(),
                target: target.clone(),
            },
            Protocol::Grpc => {
                let channel = Channel::from_shared(target.url.clone())
                    .context("gRPC URL")?
                    .connect()
                    .await
                    .with_context(|| format!("gRPC connect to {}", target.url))?;
                Self::Grpc {
                    client: PusherServiceClient::new(channel).max_encoding_message_size(usize::MAX),
                    target: target.clone(),
                }
            }
        })
    }

    /// Sends one push and waits for the answer.
    pub(crate) async fn send(&mut self, p: &Prepared) -> Outcome {
        match self {
            Self::Http {
                protocol,
                http,
                target,
            } => {
                let req = if *protocol == Protocol::Connect {
                    http.post(format!("{}/push.v1.PusherService/Push", target.url))
                        .header("content-type", "application/proto")
                } else {
                    let until = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let (from, until) = (until.saturating_sub(10).to_string(), until.to_string());
                    http.post(format!("{}/ingest", target.url))
                        .query(&[
                            ("name", p.name.as_str()),
                            ("from", &from),
                            ("until", &until),
                            ("format", "pprof"),
                        ])
                        .header("content-type", "binary/octet-stream")
                };
                let mut req = req.body(p.body.clone());
                if let Some(t) = &target.tenant {
                    req = req.header("x-scope-orgid", t);
                }
                if let Some(t) = &target.token {
                    req = req.bearer_auth(t);
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        // Read the body in full so the connection goes back to the pool.
                        let body = resp.bytes().await;
                        if status.is_success() {
                            match body {
                                Ok(_) => Outcome::Accepted,
                                Err(e) => Outcome::Error(format!("reading the answer: {e}")),
                            }
                        } else {
                            let msg = body
                                .map(|b| String::from_utf8_lossy(&b).chars().take(200).collect())
                                .unwrap_or_default();
                            Outcome::Refused(status.as_u16().to_string(), msg)
                        }
                    }
                    Err(e) => Outcome::Error(error_chain(&e)),
                }
            }
            Self::Grpc { client, target } => {
                let Some(message) = &p.request else {
                    return Outcome::Error("payload not prepared for gRPC".into());
                };
                let mut req = tonic::Request::new(message.clone());
                if let Some(t) = &target.tenant {
                    match MetadataValue::try_from(t.as_str()) {
                        Ok(v) => {
                            req.metadata_mut().insert("x-scope-orgid", v);
                        }
                        Err(e) => return Outcome::Error(format!("tenant header: {e}")),
                    }
                }
                if let Some(t) = &target.token {
                    match MetadataValue::try_from(format!("Bearer {t}")) {
                        Ok(v) => {
                            req.metadata_mut().insert("authorization", v);
                        }
                        Err(e) => return Outcome::Error(format!("token header: {e}")),
                    }
                }
                match client.push(req).await {
                    Ok(_) => Outcome::Accepted,
                    // A status with a source error is the transport failing, not an answer.
                    Err(status) if std::error::Error::source(&status).is_some() => {
                        Outcome::Error(error_chain(&status))
                    }
                    Err(status) => Outcome::Refused(
                        format!("grpc {:?}", status.code()),
                        status.message().chars().take(200).collect(),
                    ),
                }
            }
        }
    }
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
