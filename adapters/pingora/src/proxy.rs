//! [`WasmFilters`]: a `ProxyHttp` decorator that runs Proxy-Wasm plugins around any Pingora
//! proxy, mapping Pingora's phases onto the ABI as `docs/phase-mapping.md` describes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use wasmbridge_host::{
    BodyOutcome, ChainSelector, FilterChain, HeadersOutcome, HttpStream, LocalResponse,
    RouteSelection, StreamData, StreamInfo, TrailersOutcome,
};

use crate::convert::{
    apply_request, apply_response, apply_trailers, build_response, request_to_list,
    response_to_list, trailers_to_list,
};

/// Counts requests per route and status.
pub trait RequestObserver: Send + Sync + 'static {
    /// Called once per request when it ends.
    fn observe(&self, route: Option<&str>, status: u16);
}

/// A `ProxyHttp` decorator: runs each request through the Proxy-Wasm plugins its
/// [`ChainSelector`] picks, and delegates proxying to `inner`, whose phases all run (the
/// cache phases excepted).
pub struct WasmFilters<P> {
    inner: P,
    selector: Arc<dyn ChainSelector>,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl<P> WasmFilters<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, selector: Arc<dyn ChainSelector>) -> Self {
        WasmFilters {
            inner,
            selector,
            observer: None,
        }
    }

    /// Reports every finished request to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Per-request state of [`WasmFilters`].
pub struct WasmCtx<C> {
    /// The inner proxy's context.
    pub inner: C,
    stream: Option<HttpStream>,
    route: Option<Arc<str>>,
    request_body_plugins: bool,
    response_body_plugins: bool,
    request_headers_eos: bool,
    request_body_done: bool,
    is_head: bool,
    /// When the upstream was picked, for `upstream.cx_pool_ready_duration`.
    peer_picked: Option<Instant>,
    /// A local reply decided in a phase that cannot write it; `fail_to_proxy` writes it.
    pending_reply: Option<LocalResponse>,
    /// The body that replaces the upstream's after a local reply from response headers.
    replacement_body: Option<Bytes>,
    /// Response body bytes handed to Pingora so far.
    response_body_forwarded: usize,
    /// The response's Content-Length when plugins that handle the response body left it
    /// in place: the body they forward must have exactly that length.
    response_length: Option<usize>,
    reset: bool,
}

/// The error that makes Pingora drop a stream a plugin reset (no response is written).
fn reset_error() -> Box<pingora::Error> {
    pingora::Error::explain(ErrorType::ConnectionClosed, "stream reset by a plugin")
}

/// Runs header callbacks to an outcome: while a plugin pauses, waits for the stream to be
/// resumed (or replied to, or reset).
async fn settle(stream: &mut HttpStream, mut outcome: HeadersOutcome) -> HeadersOutcome {
    while outcome == HeadersOutcome::Paused {
        stream.waiter().wait().await;
        outcome = stream.resume_headers();
    }
    outcome
}

/// A response's Content-Length, when it has exactly one valid one.
fn content_length(response: &ResponseHeader) -> Option<usize> {
    let mut values = response
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

fn plugin_error(what: &'static str) -> Box<pingora::Error> {
    pingora::Error::explain(ErrorType::InternalError, what)
}

/// A Pingora socket address as an IP socket address (`None` for a Unix socket).
fn inet(a: Option<&pingora::protocols::l4::socket::SocketAddr>) -> Option<std::net::SocketAddr> {
    a?.as_inet().copied()
}

fn stream_info(session: &Session, selection: &RouteSelection) -> StreamInfo {
    let protocol = if session.is_http2() {
        "HTTP/2"
    } else if session.req_header().version == http::Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let mut info = StreamInfo {
        source: inet(session.client_addr()),
        destination: inet(session.server_addr()),
        protocol,
        request_id: session
            .req_header()
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        connection_id: connection_id(session),
        start_time: Some(std::time::SystemTime::now()),
        started: Some(Instant::now()),
        ..StreamInfo::default()
    };
    selection.record(&mut info);
    info
}

/// An id for the downstream connection (`connection.id`): the same for every request on
/// one connection (HTTP/1.1 keep-alive, HTTP/2 streams), different between connections
/// open at the same time. Pingora has no connection counter, so it is a hash of when the
/// connection was accepted and its two addresses.
fn connection_id(session: &Session) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let digest = session.digest()?;
    let accepted = digest
        .timing_digest
        .first()
        .and_then(Option::as_ref)
        .map(|t| t.established_ts)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    accepted.hash(&mut h);
    inet(session.client_addr()).hash(&mut h);
    inet(session.server_addr()).hash(&mut h);
    // Envoy's ids are small counters; keep ours positive as an int64 too.
    Some(h.finish() >> 1)
}

/// Writes a complete local response (status, headers, body, Content-Length).
async fn write_local(session: &mut Session, resp: &LocalResponse, head: bool) -> Result<()> {
    let header = build_response(resp.status, &resp.headers)?;
    let no_body = resp.body.is_empty() || head;
    session
        .write_response_header(Box::new(header), no_body)
        .await?;
    if !no_body {
        session
            .write_response_body(Some(resp.body.clone()), true)
            .await?;
    }
    Ok(())
}

/// True when a response with these headers has no body.
fn response_is_bodyless(resp: &ResponseHeader, head: bool) -> bool {
    let code = resp.status.as_u16();
    head || (100..200).contains(&code)
        || code == 204
        || code == 304
        || resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

#[async_trait]
impl<P> ProxyHttp for WasmFilters<P>
where
    P: ProxyHttp + Send + Sync,
    P::CTX: Send + Sync,
{
    type CTX = WasmCtx<P::CTX>;

    fn new_ctx(&self) -> Self::CTX {
        WasmCtx {
            inner: self.inner.new_ctx(),
            stream: None,
            route: None,
            request_body_plugins: false,
            response_body_plugins: false,
            request_headers_eos: false,
            request_body_done: false,
            is_head: false,
            peer_picked: None,
            pending_reply: None,
            replacement_body: None,
            response_body_forwarded: 0,
            response_length: None,
            reset: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let selection = self.selector.select(session.req_header());
        ctx.route = selection.route.clone();
        ctx.is_head = session.req_header().method == http::Method::HEAD;
        let chain = selection.chain.clone().filter(|c| !c.is_empty());
        let Some(chain) = chain else {
            if let Some(direct) = selection.direct {
                let resp = FilterChain::default()
                    .start(StreamData::default())
                    .direct_response(direct);
                write_local(session, &resp, ctx.is_head).await?;
                return Ok(true);
            }
            return self.inner.request_filter(session, &mut ctx.inner).await;
        };
        ctx.request_body_plugins = chain.handles_request_body();
        ctx.response_body_plugins = chain.handles_response_body();
        let mut data = StreamData::default();
        data.request_headers = request_to_list(session.req_header(), "http");
        data.info = stream_info(session, &selection);
        let mut stream = chain.start(data);
        let eos = session.is_body_empty();
        ctx.request_headers_eos = eos;
        let outcome = stream.on_request_headers(eos);
        let result = match settle(&mut stream, outcome).await {
            HeadersOutcome::Continue | HeadersOutcome::Paused => {
                let reroute = stream.data_mut().take_reroute();
                if stream.data().request_headers.is_modified() {
                    apply_request(&stream.data().request_headers, session.req_header_mut());
                    stream.data_mut().request_headers.mark_clean();
                }
                let mut direct = selection.direct;
                if reroute {
                    // The route is chosen again from the headers as the plugins left them
                    // (what `clear_route_cache` asks for); the running chain stays.
                    let again = self.selector.select(session.req_header());
                    again.record(&mut stream.data_mut().info);
                    ctx.route = again.route.clone();
                    direct = again.direct;
                }
                match direct {
                    Some(direct) => {
                        let resp = stream.direct_response(direct);
                        write_local(session, &resp, ctx.is_head).await?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            HeadersOutcome::LocalReply(reply) => {
                let resp = stream.local_response(reply);
                write_local(session, &resp, ctx.is_head).await?;
                Ok(true)
            }
            HeadersOutcome::Reset => {
                ctx.reset = true;
                Err(reset_error())
            }
        };
        ctx.stream = Some(stream);
        match result {
            Ok(false) => self.inner.request_filter(session, &mut ctx.inner).await,
            other => other,
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let peer = self.inner.upstream_peer(session, &mut ctx.inner).await?;
        if let Some(stream) = ctx.stream.as_mut() {
            let up = &mut stream.data_mut().info.upstream;
            up.attempts += 1;
            up.address = inet(Some(&peer._address));
            ctx.peer_picked = Some(Instant::now());
        }
        Ok(peer)
    }

    async fn connected_to_upstream(
        &self,
        session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] sock: std::os::windows::io::RawSocket,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(stream) = ctx.stream.as_mut() {
            let up = &mut stream.data_mut().info.upstream;
            up.local_address = inet(
                digest
                    .and_then(|d| d.socket_digest.as_ref())
                    .and_then(|s| s.local_addr()),
            );
            up.pool_ready = ctx.peer_picked.map(|t| t.elapsed());
        }
        self.inner
            .connected_to_upstream(
                session,
                reused,
                peer,
                #[cfg(unix)]
                fd,
                #[cfg(windows)]
                sock,
                digest,
                &mut ctx.inner,
            )
            .await
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<pingora::Error>,
    ) -> Box<pingora::Error> {
        if let Some(stream) = ctx.stream.as_mut() {
            stream.data_mut().info.upstream.transport_failure_reason = Some(e.to_string());
        }
        self.inner.fail_to_connect(session, peer, &mut ctx.inner, e)
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        self.inner
            .early_request_filter(session, &mut ctx.inner)
            .await
    }

    fn upstream_response_trailer_filter(
        &self,
        session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.inner
            .upstream_response_trailer_filter(session, upstream_trailers, &mut ctx.inner)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<pingora::Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<pingora::Error> {
        self.inner
            .error_while_proxy(peer, session, e, &mut ctx.inner, client_reused)
    }

    fn suppress_error_log(
        &self,
        session: &Session,
        ctx: &Self::CTX,
        error: &pingora::Error,
    ) -> bool {
        self.inner.suppress_error_log(session, &ctx.inner, error)
    }

    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        self.inner.request_summary(session, &ctx.inner)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.inner
            .upstream_response_filter(session, upstream_response, &mut ctx.inner)
            .await
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        self.inner
            .upstream_response_body_filter(session, body, end_of_stream, &mut ctx.inner)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if ctx.request_body_plugins && !ctx.request_headers_eos {
            // A plugin may change the body: its length is unknown until the end, so the
            // upstream gets chunked framing (HTTP/1.1) or plain DATA frames (HTTP/2).
            upstream_request.remove_header(&http::header::CONTENT_LENGTH);
        }
        if let Some(stream) = ctx.stream.as_mut() {
            stream.data_mut().info.upstream.request_sent = Some(Instant::now());
        }
        self.inner
            .upstream_request_filter(session, upstream_request, &mut ctx.inner)
            .await
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let (Some(stream), false) = (ctx.stream.as_mut(), ctx.request_body_done) {
            let received = body.as_ref().map_or(0, |b| b.len() as u64);
            stream.data_mut().info.request_body_bytes += received;
        }
        let skip = !ctx.request_body_plugins
            || ctx.request_headers_eos
            || ctx.request_body_done
            || (body.is_none() && !end_of_stream);
        if let (false, Some(stream)) = (skip, ctx.stream.as_mut()) {
            let chunk = body.take().unwrap_or_default();
            let mut outcome = stream.on_request_body(chunk, end_of_stream);
            loop {
                match outcome {
                    BodyOutcome::Forward(bytes) => {
                        // Nothing left at the end: `None`, or Pingora writes an empty chunk
                        // (a chunked terminator) before the one it writes when finishing.
                        *body = (!bytes.is_empty() || !end_of_stream).then_some(bytes);
                        break;
                    }
                    BodyOutcome::Held if end_of_stream => {
                        stream.waiter().wait().await;
                        outcome = stream.resume_body();
                    }
                    BodyOutcome::Held => {
                        // `None` would end the upstream body; an empty chunk holds it back.
                        *body = Some(Bytes::new());
                        break;
                    }
                    BodyOutcome::LocalReply(reply) => {
                        ctx.pending_reply = Some(stream.local_response(reply));
                        return Err(plugin_error(
                            "local reply from a request body callback (a plugin's, or a body over its limits.body)",
                        ));
                    }
                    BodyOutcome::ResponseTooLarge(resp) => {
                        // Only response bodies give it; answered like a local reply.
                        ctx.pending_reply = Some(resp);
                        return Err(plugin_error("a plugin buffered too much body"));
                    }
                    BodyOutcome::Reset => {
                        ctx.reset = true;
                        return Err(reset_error());
                    }
                }
            }
            if end_of_stream {
                ctx.request_body_done = true;
            }
        }
        self.inner
            .request_body_filter(session, body, end_of_stream, &mut ctx.inner)
            .await
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.inner
            .response_filter(session, upstream_response, &mut ctx.inner)
            .await?;
        let Some(stream) = ctx.stream.as_mut() else {
            return Ok(());
        };
        let eos = response_is_bodyless(upstream_response, ctx.is_head);
        stream.data_mut().response_headers = response_to_list(upstream_response);
        stream.data_mut().info.response_details = Some("via_upstream".to_string());
        let outcome = stream.on_response_headers(eos);
        match settle(stream, outcome).await {
            HeadersOutcome::Continue | HeadersOutcome::Paused => {
                if stream.data().response_headers.is_modified() {
                    apply_response(&stream.data().response_headers, upstream_response);
                    stream.data_mut().response_headers.mark_clean();
                }
                if ctx.response_body_plugins && !eos {
                    // Envoy's contract: the headers go out once their callbacks continued, so
                    // a plugin that changes the body's length removes Content-Length in its
                    // response headers callback, and the body is then sent chunked. A
                    // Content-Length the plugins left in place stays (no chunked framing for
                    // the many plugins that leave bodies alone) and is held to in
                    // `response_body_filter`.
                    ctx.response_length = content_length(upstream_response);
                    if ctx.response_length.is_none() {
                        upstream_response.remove_header(&http::header::CONTENT_LENGTH);
                        upstream_response
                            .insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                    }
                }
            }
            HeadersOutcome::LocalReply(reply) => {
                let resp = stream.local_response(reply);
                *upstream_response = build_response(resp.status, &resp.headers)?;
                ctx.replacement_body = Some(resp.body);
            }
            HeadersOutcome::Reset => {
                ctx.reset = true;
                return Err(reset_error());
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Some(replacement) = ctx.replacement_body.as_mut() {
            *body = if end_of_stream {
                Some(std::mem::take(replacement))
            } else {
                None
            };
            return Ok(None);
        }
        if let (true, Some(stream)) = (ctx.response_body_plugins, ctx.stream.as_mut()) {
            let chunk = body.take().unwrap_or_default();
            let mut outcome = stream.on_response_body(chunk, end_of_stream);
            if outcome == BodyOutcome::Held && end_of_stream {
                outcome = stream.release_held_body();
            }
            match outcome {
                BodyOutcome::Forward(bytes) => {
                    *body = if bytes.is_empty() && !end_of_stream {
                        None
                    } else {
                        Some(bytes)
                    };
                }
                BodyOutcome::Held => *body = None,
                BodyOutcome::LocalReply(_) => {
                    tracing::warn!(
                        "a plugin sent a local reply from a response body callback after the response headers were sent; the stream is reset"
                    );
                    ctx.reset = true;
                    return Err(reset_error());
                }
                BodyOutcome::ResponseTooLarge(resp) => {
                    // Pingora may not have written the response header yet (it filters the
                    // tasks it read together before writing any): then `fail_to_proxy`
                    // writes this 503 instead; otherwise it can only abort the stream.
                    ctx.pending_reply = Some(resp);
                    return Err(plugin_error(
                        "a plugin buffered more of the response body than its limits.body",
                    ));
                }
                BodyOutcome::Reset => {
                    ctx.reset = true;
                    return Err(reset_error());
                }
            }
        }
        let delay =
            self.inner
                .response_body_filter(session, body, end_of_stream, &mut ctx.inner)?;
        let sent = body.as_ref().map_or(0, Bytes::len);
        ctx.response_body_forwarded += sent;
        if let Some(declared) = ctx.response_length {
            let forwarded = ctx.response_body_forwarded;
            if forwarded > declared || (end_of_stream && forwarded != declared) {
                // Sending on would corrupt the framing (Envoy truncates or stalls here): the
                // stream ends with an error instead, and the log says what to fix.
                let plugins = ctx
                    .stream
                    .as_ref()
                    .map(|s| s.response_body_plugin_names())
                    .unwrap_or_default();
                tracing::error!(
                    route = ctx.route.as_deref().unwrap_or(""),
                    plugins = %plugins.join(", "),
                    content_length = declared,
                    forwarded,
                    "a plugin changed the length of a response body but left its Content-Length in place; as in Envoy, a plugin that changes a body's length must remove content-length in proxy_on_response_headers. The stream is aborted"
                );
                ctx.reset = true;
                return Err(plugin_error(
                    "a plugin changed the length of a response body but left its Content-Length",
                ));
            }
        }
        if let Some(stream) = ctx.stream.as_mut() {
            stream.data_mut().info.response_body_bytes += sent as u64;
        }
        Ok(delay)
    }

    async fn response_trailer_filter(
        &self,
        session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Bytes>>
    where
        Self::CTX: Send + Sync,
    {
        if let Some(replacement) = ctx.replacement_body.take() {
            // A plugin's local reply replaced the upstream response: its body ends the
            // response (the body never saw end_of_stream), the upstream's trailers are gone.
            return Ok(Some(replacement));
        }
        let inner = self
            .inner
            .response_trailer_filter(session, upstream_trailers, &mut ctx.inner)
            .await?;
        let (None, Some(stream)) = (&inner, ctx.stream.as_mut()) else {
            return Ok(inner);
        };
        stream.data_mut().response_trailers = trailers_to_list(upstream_trailers);
        let mut outcome = stream.on_response_trailers();
        let held = loop {
            match outcome {
                TrailersOutcome::Continue(held) => break held,
                TrailersOutcome::Paused => {
                    stream.waiter().wait().await;
                    outcome = stream.resume_trailers();
                }
                TrailersOutcome::LocalReply(_) | TrailersOutcome::Reset => {
                    // Pingora only logs an error from this hook and sends the trailers on,
                    // so reset the downstream stream here.
                    ctx.reset = true;
                    session.as_downstream_mut().shutdown().await;
                    return Err(reset_error());
                }
            }
        };
        if stream.data().response_trailers.is_modified() {
            apply_trailers(&stream.data().response_trailers, upstream_trailers);
            stream.data_mut().response_trailers.mark_clean();
        }
        if held.is_empty() {
            return Ok(None);
        }
        // A plugin held body bytes back waiting for an end of stream that trailers replace
        // (Pingora never sets it on the body when an HTTP/2 upstream sends trailers). They
        // must reach the client before the trailers.
        stream.data_mut().info.response_body_bytes += held.len() as u64;
        if !session.is_http2() {
            // An HTTP/1.1 client never gets trailers from Pingora 0.9: the held bytes end
            // the body instead.
            return Ok(Some(held));
        }
        if session.body_bytes_sent() != ctx.response_body_forwarded {
            // Pingora filters the tasks it read together before writing any, so body bytes
            // let through earlier may still be queued: writing the held ones now would
            // reorder the body. Send them in place of the trailers instead.
            tracing::warn!(
                "response body bytes a plugin held until the trailers are sent in place of the trailers: earlier body bytes are still queued"
            );
            return Ok(Some(held));
        }
        if session.response_written().is_none() {
            // The header is still queued behind this hook; write it first, as the plugins
            // left it (Pingora then skips its queued copy, with a warning). The body changed
            // size, so it has no Content-Length; the version is the one Pingora sets before
            // writing any response header downstream.
            let headers = &stream.data().response_headers;
            let mut header = build_response(headers.status().unwrap_or(200), headers)?;
            header.remove_header(&http::header::CONTENT_LENGTH);
            header.set_version(http::Version::HTTP_11);
            session
                .write_response_header(Box::new(header), false)
                .await?;
        }
        session.write_response_body(Some(held), false).await?;
        ctx.response_body_forwarded = session.body_bytes_sent();
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        if ctx.reset {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if let Some(resp) = ctx.pending_reply.take() {
            if let Some(sent) = session.response_written() {
                // Too late for a status: Pingora closes the connection without finishing
                // the body (an HTTP/1.1 client sees a truncated chunked body).
                tracing::warn!(
                    status = resp.status,
                    sent = sent.status.as_u16(),
                    "the response headers went out already, so the local reply cannot be sent: the stream is aborted"
                );
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
            if let Err(err) = write_local(session, &resp, ctx.is_head).await {
                tracing::warn!("cannot write a plugin's local reply: {err}");
            }
            return FailToProxy {
                error_code: resp.status,
                can_reuse_downstream: false,
            };
        }
        self.inner.fail_to_proxy(session, e, &mut ctx.inner).await
    }

    async fn logging(
        &self,
        session: &mut Session,
        e: Option<&pingora::Error>,
        ctx: &mut Self::CTX,
    ) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if let Some(stream) = ctx.stream.as_mut() {
            let info = &mut stream.data_mut().info;
            if status != 0 {
                info.response_code = Some(status);
            }
            if let Some(sent) = info.upstream.request_sent {
                info.upstream.backend_latency = Some(sent.elapsed());
            }
            stream.finish();
        }
        if let Some(observer) = &self.observer {
            observer.observe(ctx.route.as_deref(), status);
        }
        self.inner.logging(session, e, &mut ctx.inner).await;
    }
}
