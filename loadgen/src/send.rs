//! The three ways to push a profile: Connect (`push.v1` over HTTP), gRPC, legacy `/ingest`.
//!
//! Requests are prepared once per payload ([`Prepared`]), so a send only clones reference
//! counted bytes.
//!
//! gRPC is spoken with hyper's HTTP/2 client directly, one connection per client, rather
//! than through a tonic `Channel`: the request's gRPC frame (the 5-byte prefix and the encoded
//! message) is built once per payload, and a send goes straight to the connection, with no
//! per-push message clone, encode or buffer task in between. The load generator shares the
//! machine with the server it measures, so what its client costs is taken from the server;
//! with tonic's client that was about twice the CPU per push of the Connect client. The bytes
//! on the wire are the same gRPC either way.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::ValueEnum;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use prost::bytes::{BufMut, Bytes};
use stackdrift_proto::push::v1::PushRequest;

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
    /// Connect: the encoded `PushRequest`; gRPC: the same behind the 5-byte gRPC message
    /// prefix (uncompressed, big-endian length); ingest: the gzipped pprof.
    body: Bytes,
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
                name: String::new(),
                samples: payload.samples,
            }
        }
        Protocol::Grpc => {
            let request = push_request(payload);
            let len = request.encoded_len();
            let mut frame = Vec::with_capacity(5 + len);
            frame.put_u8(0);
            frame.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
            request.encode_raw(&mut frame);
            Prepared {
                bytes: len,
                body: Bytes::from(frame),
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
        /// The connection; `None` after it failed, until the next send reconnects.
        conn: Option<http2::SendRequest<Full<Bytes>>>,
        /// `…/push.v1.PusherService/Push`.
        uri: http::Uri,
        /// Where to.
        target: Target,
    },
}

/// Opens an HTTP/2 connection (prior knowledge, no TLS) to `uri`'s host and port, with
/// TCP_NODELAY as tonic sets it; the connection runs on its own task.
async fn grpc_connect(uri: &http::Uri) -> anyhow::Result<http2::SendRequest<Full<Bytes>>> {
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("gRPC needs an http:// URL (the load generator speaks no TLS): {uri}");
    }
    let authority = uri.authority().context("gRPC URL without a host")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, authority.port_u16().unwrap_or(80)))
        .await
        .with_context(|| format!("gRPC connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP/2 handshake with {authority}"))?;
    tokio::spawn(async move {
        // Its error reaches the sender as the next request's error.
        let _ = conn.await;
    });
    Ok(send)
}

/// The answer to a gRPC request: accepted when `grpc-status` (in the trailers, or in the
/// headers of a trailers-only answer) is 0.
async fn grpc_outcome(resp: http::Response<hyper::body::Incoming>) -> Outcome {
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        return Outcome::Refused(parts.status.as_u16().to_string(), String::new());
    }
    let status = |headers: &http::HeaderMap| {
        let code = headers.get("grpc-status")?;
        Some(if code.as_bytes() == b"0" {
            Outcome::Accepted
        } else {
            let status = tonic::Status::from_header_map(headers)?;
            Outcome::Refused(
                format!("grpc {:?}", status.code()),
                status.message().chars().take(200).collect(),
            )
        })
    };
    if let Some(outcome) = status(&parts.headers) {
        return outcome;
    }
    match body.collect().await {
        Ok(collected) => collected
            .trailers()
            .and_then(status)
            .unwrap_or_else(|| Outcome::Error("gRPC answer without grpc-status".into())),
        Err(e) => Outcome::Error(format!("reading the gRPC answer: {}", error_chain(&e))),
    }
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
                let uri: http::Uri = format!("{}/push.v1.PusherService/Push", target.url)
                    .parse()
                    .context("gRPC URL")?;
                Self::Grpc {
                    conn: Some(grpc_connect(&uri).await?),
                    uri,
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
            Self::Grpc { conn, uri, target } => {
                let mut req = http::Request::post(uri.clone())
                    .header(CONTENT_TYPE, "application/grpc")
                    .header("te", "trailers");
                if let Some(t) = &target.tenant {
                    match HeaderValue::try_from(t.as_str()) {
                        Ok(v) => req = req.header("x-scope-orgid", v),
                        Err(e) => return Outcome::Error(format!("tenant header: {e}")),
                    }
                }
                if let Some(t) = &target.token {
                    match HeaderValue::try_from(format!("Bearer {t}")) {
                        Ok(v) => req = req.header(AUTHORIZATION, v),
                        Err(e) => return Outcome::Error(format!("token header: {e}")),
                    }
                }
                let req = match req.body(Full::new(p.body.clone())) {
                    Ok(r) => r,
                    Err(e) => return Outcome::Error(format!("gRPC request: {e}")),
                };
                // A failed connection is replaced on the next send, as tonic's channel does.
                let send = match conn {
                    Some(send) if !send.is_closed() => send,
                    _ => match grpc_connect(uri).await {
                        Ok(send) => conn.insert(send),
                        Err(e) => {
                            *conn = None;
                            return Outcome::Error(format!("{e:#}"));
                        }
                    },
                };
                let answer = match send.ready().await {
                    Ok(()) => send.send_request(req).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(resp) => grpc_outcome(resp).await,
                    Err(e) => {
                        *conn = None;
                        Outcome::Error(error_chain(&e))
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{GenConfig, Generator};

    #[test]
    fn grpc_body_is_one_uncompressed_message_frame_of_the_connect_body() {
        let cfg = GenConfig {
            services: 2,
            ..GenConfig::default()
        };
        let pool = Generator::new(cfg).pool(3, 1_700_000_000_000_000_000);
        for payload in &pool {
            let grpc = prepare(Protocol::Grpc, payload);
            let connect = prepare(Protocol::Connect, payload);
            let frame = &grpc.body[..];
            // Flag 0 (not compressed), then the message length, big-endian.
            assert_eq!(frame[0], 0);
            let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 5);
            assert_eq!(grpc.bytes, len);
            // The message is the push Connect sends, and it decodes to the payload.
            assert_eq!(&frame[5..], &connect.body[..]);
            let decoded = PushRequest::decode(&frame[5..]).unwrap();
            assert_eq!(decoded, push_request(payload));
            assert_eq!(decoded.series[0].samples[0].raw_profile, payload.gz);
        }
    }
}
