//! gRPC streams over a Pingora HTTP/2 stream: framing, concurrent reading and writing,
//! and Envoy's mapping of what the server (or the transport) did to gRPC events.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::{Reason, SendStream};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v2::client::Http2Session;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use wasmbridge_host::grpc::{
    CANCELLED, DEADLINE_EXCEEDED, INTERNAL, RESERVED_METADATA, UNAVAILABLE, UNKNOWN, frame,
    http_status_error, next_message, status_of, timeout_header as grpc_timeout,
};
use wasmbridge_host::{GrpcInbound, GrpcOutbound, GrpcRequest};

use super::{Protocol, Shared, Target, pairs};

/// How the exchange ended.
enum Outcome {
    /// The call ended with this status and message.
    Closed(u32, String),
    /// The plugin cancelled (or nobody listens any more); the stream was reset.
    Cancelled,
}

/// How the writing half ended.
enum WriterEnd {
    /// Half-closed and the plugin will send nothing more.
    Done,
    /// The plugin cancelled, or dropped its sender before half-closing; reset sent.
    Cancelled,
    /// Writing failed; the reading half will tell what happened to the stream.
    Failed(String),
}

/// The whole life of one gRPC stream: its events go to `inbound`, `Close` last.
pub(super) async fn run(
    shared: Arc<Shared>,
    target: Target,
    authority: String,
    request: GrpcRequest,
    mut outbound: UnboundedReceiver<GrpcOutbound>,
    inbound: UnboundedSender<GrpcInbound>,
) {
    let call = exchange(
        &shared,
        &target,
        &authority,
        &request,
        &mut outbound,
        &inbound,
    );
    let outcome = match request.timeout {
        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Outcome::Closed(DEADLINE_EXCEEDED, "deadline exceeded".to_string())
        }),
        None => call.await,
    };
    let (status, message) = match outcome {
        Outcome::Closed(status, message) => (status, message),
        Outcome::Cancelled => (CANCELLED, "cancelled".to_string()),
    };
    // The host may have dropped its receiver; then nobody wants the close either.
    let _ = inbound.send(GrpcInbound::Close { status, message });
}

async fn exchange(
    shared: &Shared,
    target: &Target,
    authority: &str,
    request: &GrpcRequest,
    outbound: &mut UnboundedReceiver<GrpcOutbound>,
    inbound: &UnboundedSender<GrpcInbound>,
) -> Outcome {
    let peer = match target.peer(Protocol::Http2).await {
        Ok(peer) => peer,
        Err(reason) => return Outcome::Closed(UNAVAILABLE, reason),
    };
    // A pooled connection may turn out to be gone when the stream opens; one more try
    // on a fresh one (nothing of the plugin's has been sent yet).
    let mut tries = 2;
    let mut h2 = loop {
        tries -= 1;
        let (session, reused) = match shared.connector.get_http_session(&peer).await {
            Ok(got) => got,
            Err(e) => return Outcome::Closed(UNAVAILABLE, e.to_string()),
        };
        let HttpSession::H2(mut h2) = session else {
            return Outcome::Closed(UNAVAILABLE, "the upstream did not speak HTTP/2".into());
        };
        let header = match request_header(authority, request) {
            Ok(header) => header,
            Err(reason) => return Outcome::Closed(INTERNAL, reason),
        };
        match h2.write_request_header(header, false) {
            Ok(()) => break h2,
            Err(e) if reused && tries > 0 => {
                tracing::debug!(peer = %peer, error = %e, "gRPC stream failed to open on a pooled connection; retrying once");
            }
            Err(e) => return Outcome::Closed(UNAVAILABLE, e.to_string()),
        }
    };
    // The deadline bounds the call; a stream may idle longer than the cluster's per-read
    // timeout.
    h2.read_timeout = None;
    h2.write_timeout = None;
    let Some(send) = h2.take_request_body_writer() else {
        return Outcome::Closed(INTERNAL, "no HTTP/2 request body writer".into());
    };
    let outcome = duplex(&mut h2, send, outbound, inbound).await;
    if matches!(outcome, Outcome::Closed(..)) && h2.response_finished() {
        shared
            .connector
            .release_http_session(HttpSession::H2(h2), &peer, peer.options.idle_timeout)
            .await;
    }
    outcome
}

/// Writes the plugin's messages while reading the server's, until the server ends the
/// call, the plugin cancels, or the host stops listening.
async fn duplex(
    h2: &mut Http2Session,
    send: SendStream<Bytes>,
    outbound: &mut UnboundedReceiver<GrpcOutbound>,
    inbound: &UnboundedSender<GrpcInbound>,
) -> Outcome {
    let writer = write_messages(send, outbound);
    let reader = read_response(h2, inbound);
    tokio::pin!(writer, reader);
    let mut writing = true;
    loop {
        tokio::select! {
            end = &mut writer, if writing => match end {
                WriterEnd::Cancelled => return Outcome::Cancelled,
                WriterEnd::Done => writing = false,
                WriterEnd::Failed(reason) => {
                    tracing::debug!(%reason, "gRPC request stream broke; reading what the server says");
                    writing = false;
                }
            },
            (status, message) = &mut reader => return Outcome::Closed(status, message),
            () = inbound.closed() => return Outcome::Cancelled,
        }
    }
}

/// Sends the plugin's messages (framed) and half-close; watches for a cancel even while
/// a message waits for flow-control credit.
async fn write_messages(
    mut send: SendStream<Bytes>,
    outbound: &mut UnboundedReceiver<GrpcOutbound>,
) -> WriterEnd {
    let mut queued = VecDeque::new();
    let mut open = true;
    let mut half_closed = false;
    loop {
        let next = match queued.pop_front() {
            Some(next) => Some(next),
            None if open => outbound.recv().await,
            None => None,
        };
        let (data, end_stream) = match next {
            Some(GrpcOutbound::Cancel) => {
                send.send_reset(Reason::CANCEL);
                return WriterEnd::Cancelled;
            }
            None if half_closed => return WriterEnd::Done,
            None => {
                // Nobody can half-close or cancel any more: a stream the plugin lost.
                send.send_reset(Reason::CANCEL);
                return WriterEnd::Cancelled;
            }
            Some(_) if half_closed => {
                tracing::debug!("gRPC message after the half-close ignored");
                continue;
            }
            Some(GrpcOutbound::Close) => (Bytes::new(), true),
            Some(GrpcOutbound::Message { data, end_stream }) => (frame(&data), end_stream),
        };
        half_closed = end_stream;
        let written = {
            let write = pingora::protocols::http::v2::write_body(&mut send, data, end_stream, None);
            tokio::pin!(write);
            loop {
                tokio::select! {
                    written = &mut write => break Some(written),
                    next = outbound.recv(), if open => match next {
                        Some(GrpcOutbound::Cancel) => break None,
                        Some(other) => queued.push_back(other),
                        None => open = false,
                    },
                }
            }
        };
        match written {
            None => {
                send.send_reset(Reason::CANCEL);
                return WriterEnd::Cancelled;
            }
            Some(Err(e)) => return WriterEnd::Failed(e.to_string()),
            Some(Ok(())) => {}
        }
    }
}

/// Reads the response and reports it to `inbound`; returns the call's status.
async fn read_response(
    h2: &mut Http2Session,
    inbound: &UnboundedSender<GrpcInbound>,
) -> (u32, String) {
    // The receiver may be gone; `duplex` notices that and cancels.
    let deliver = |event| {
        let _ = inbound.send(event);
    };
    if let Err(e) = h2.read_response_header().await {
        // No response: Envoy answers its own 503, which maps to UNAVAILABLE.
        return (UNAVAILABLE, e.to_string());
    }
    let Some(response) = h2.response_header() else {
        return (INTERNAL, "no response header".into());
    };
    let http_status = response.status;
    let headers = response.headers.clone();

    if h2.response_finished() {
        // Trailers-only: no initial metadata; the headers are the trailers.
        deliver(GrpcInbound::InitialMetadata(Vec::new()));
        if http_status != StatusCode::OK && !headers.contains_key("grpc-status") {
            return http_status_error(http_status);
        }
        deliver(GrpcInbound::TrailingMetadata(pairs(
            &headers,
            &["content-type", "grpc-status", "grpc-message"],
        )));
        return status_of(&headers);
    }
    deliver(GrpcInbound::InitialMetadata(pairs(
        &headers,
        &["content-type"],
    )));
    if http_status != StatusCode::OK {
        return http_status_error(http_status);
    }

    let mut buffer = BytesMut::new();
    loop {
        match h2.read_response_body().await {
            Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return (INTERNAL, e.to_string()),
        }
        loop {
            match next_message(&mut buffer) {
                Ok(Some(message)) => deliver(GrpcInbound::Message(message)),
                Ok(None) => break,
                Err(reason) => return (INTERNAL, reason),
            }
        }
    }
    if !buffer.is_empty() {
        return (
            INTERNAL,
            format!("the stream ended inside a message ({} bytes)", buffer.len()),
        );
    }
    match h2.read_trailers().await {
        Ok(Some(trailers)) => {
            deliver(GrpcInbound::TrailingMetadata(pairs(
                &trailers,
                &["grpc-status", "grpc-message"],
            )));
            status_of(&trailers)
        }
        Ok(None) => (UNKNOWN, "the stream ended without trailers".into()),
        Err(e) => (INTERNAL, e.to_string()),
    }
}

/// `POST /{service}/{method}` with the gRPC headers and the plugin's initial metadata.
fn request_header(authority: &str, request: &GrpcRequest) -> Result<Box<RequestHeader>, String> {
    let path = format!("/{}/{}", request.service, request.method);
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path.as_str())
        .build()
        .map_err(|e| format!("invalid gRPC target `{authority}{path}`: {e}"))?;
    let mut req = RequestHeader::build_no_case(
        Method::POST,
        path.as_bytes(),
        Some(request.initial_metadata.len() + 3),
    )
    .map_err(|e| e.to_string())?;
    req.set_uri(uri);
    let insert = |req: &mut RequestHeader, name: HeaderName, value: HeaderValue| {
        req.append_header(name, value).map_err(|e| e.to_string())
    };
    insert(
        &mut req,
        CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    )?;
    insert(&mut req, TE, HeaderValue::from_static("trailers"))?;
    if let Some(timeout) = request.timeout {
        let value = HeaderValue::from_str(&grpc_timeout(timeout)).map_err(|e| e.to_string())?;
        insert(&mut req, HeaderName::from_static("grpc-timeout"), value)?;
    }
    for (name, value) in &request.initial_metadata {
        if name.starts_with(b":") {
            continue;
        }
        let name = HeaderName::from_bytes(name).map_err(|_| {
            format!(
                "invalid initial metadata name `{}`",
                String::from_utf8_lossy(name)
            )
        })?;
        if RESERVED_METADATA.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(value.clone())
            .map_err(|_| format!("invalid initial metadata value for `{name}`"))?;
        insert(&mut req, name, value)?;
    }
    Ok(Box::new(req))
}
