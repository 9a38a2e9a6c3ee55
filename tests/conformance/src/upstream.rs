//! A loopback upstream that answers a case's reply (with its trailers, if any) and records
//! each complete request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::task::JoinHandle;
use wasmbridge_e2e::{header_pairs, serve};

use crate::Seen;
use crate::case::ReplySpec;

/// The running upstream; stops on drop.
pub struct Recording {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recording {
    /// Starts on an ephemeral loopback port (HTTP/1.1 and h2c).
    pub async fn start(reply: ReplySpec) -> std::io::Result<Recording> {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let reply = Arc::new(reply);
        let log = seen.clone();
        let (addr, task) = serve(move |req| answer(req, reply.clone(), log.clone())).await?;
        Ok(Recording { addr, seen, task })
    }

    /// The first request received, if any, that is not a plugin's callout (cases send
    /// callouts to paths under `/callout`).
    pub fn first(&self) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|seen| !seen.path.starts_with("/callout"))
            .cloned()
    }
}

async fn answer(
    req: Request<Incoming>,
    reply: Arc<ReplySpec>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = req.into_parts();
    // A request whose body never completed (the proxy aborted it) was not received.
    let Ok(collected) = body.collect().await else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"incomplete request")).boxed());
        *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return Ok(r);
    };
    let trailers = collected.trailers().map(header_pairs).unwrap_or_default();
    let body = collected.to_bytes();
    let mut headers = header_pairs(&parts.headers);
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
            trailers,
        });
    let mut builder = Response::builder().status(reply.status);
    for (k, v) in &reply.headers.0 {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = Full::new(Bytes::from(reply.body.clone()));
    let body = if reply.trailers.0.is_empty() {
        Some(body.boxed())
    } else {
        trailer_map(&reply.trailers.0).map(|map| {
            body.with_trailers(std::future::ready(Some(Ok(map))))
                .boxed()
        })
    };
    let response = body
        .and_then(|body| builder.body(body).ok())
        .unwrap_or_else(|| {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad reply in case")).boxed());
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        });
    Ok(response)
}

/// A case's trailers as a header map; `None` when one is not valid HTTP.
fn trailer_map(pairs: &[(String, String)]) -> Option<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).ok()?,
            http::HeaderValue::from_str(v).ok()?,
        );
    }
    Some(map)
}
