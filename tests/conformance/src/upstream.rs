//! A loopback upstream that answers a case's reply and records what it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::Seen;
use crate::case::ReplySpec;

/// The running upstream; stops on drop.
pub struct Recording {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recording {
    /// Starts on an ephemeral loopback port (HTTP/1.1 and h2c).
    pub async fn start(reply: ReplySpec) -> std::io::Result<Recording> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let reply = Arc::new(reply);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let reply = reply.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, reply.clone(), log.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Recording { addr, seen, task })
    }

    /// The first request received, if any.
    pub fn first(&self) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first()
            .cloned()
    }
}

async fn answer(
    req: Request<Incoming>,
    reply: Arc<ReplySpec>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if parts.version == hyper::Version::HTTP_2
        && let Some(host) = parts.uri.authority()
        && !headers.iter().any(|(k, _)| k == "host")
    {
        headers.insert(0, ("host".into(), host.to_string()));
    }
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            headers,
            body: body.to_vec(),
        });
    let mut builder = Response::builder().status(reply.status);
    for (k, v) in &reply.headers.0 {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let response = builder
        .body(Full::new(Bytes::from(reply.body.clone())))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad reply in case")));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        });
    Ok(response)
}
