//! `proxy_http_call` over Pingora's connector: one request, the whole response.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use pingora::ErrorType;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v2::client::Http2Session;
use pingora::upstreams::peer::HttpPeer;
use wasmbridge_host::{HttpCallFailure, HttpCallRequest, HttpCallResponse};

use super::{Protocol, Shared, Target, pairs};

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2); `te` is allowed only as `trailers`.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// A request as it goes on the wire, checked once before the first attempt.
struct Call {
    method: Method,
    path: Bytes,
    authority: Bytes,
    scheme: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    trailers: HeaderMap,
}

/// Why one attempt failed, and whether another connection may try again.
struct Failed {
    failure: HttpCallFailure,
    retry: bool,
}

/// Runs one HTTP call to `target` within the request's timeout.
pub(super) async fn run(
    shared: Arc<Shared>,
    target: Target,
    request: HttpCallRequest,
) -> Result<HttpCallResponse, HttpCallFailure> {
    let timeout = request.timeout;
    let exchange = exchange(&shared, &target, request);
    match timeout {
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(HttpCallFailure::Timeout)),
        None => exchange.await,
    }
}

async fn exchange(
    shared: &Shared,
    target: &Target,
    request: HttpCallRequest,
) -> Result<HttpCallResponse, HttpCallFailure> {
    let call = Call::new(request)?;
    let peer = target
        .peer(Protocol::ClusterDefault)
        .await
        .map_err(HttpCallFailure::ConnectFailure)?;
    match attempt(shared, &peer, &call).await {
        Err(Failed {
            failure,
            retry: true,
        }) => {
            tracing::debug!(peer = %peer, ?failure, "http call failed on a pooled connection; retrying once");
            attempt(shared, &peer, &call).await.map_err(|f| f.failure)
        }
        other => other.map_err(|f| f.failure),
    }
}

/// One connection, one request, the whole response; the connection goes back to the pool
/// when the exchange was clean.
async fn attempt(
    shared: &Shared,
    peer: &HttpPeer,
    call: &Call,
) -> Result<HttpCallResponse, Failed> {
    let (mut session, reused) =
        shared
            .connector
            .get_http_session(peer)
            .await
            .map_err(|e| Failed {
                failure: HttpCallFailure::ConnectFailure(e.to_string()),
                retry: false,
            })?;
    let broken = |e: Box<pingora::Error>| after_connect(e, reused, false);

    let header = call.header(matches!(session, HttpSession::H2(_)))?;
    if let HttpSession::H2(h2) = &mut session {
        write_h2(h2, header, call, peer).await.map_err(broken)?;
    } else {
        if !call.trailers.is_empty() {
            tracing::debug!(peer = %peer, "request trailers dropped: HTTP/1.1 callouts cannot send them");
        }
        session.write_request_header(header).await.map_err(broken)?;
        if !call.body.is_empty() {
            session
                .write_request_body(call.body.clone(), true)
                .await
                .map_err(broken)?;
        }
        session.finish_request_body().await.map_err(broken)?;
    }

    let status = loop {
        session.read_response_header().await.map_err(broken)?;
        let status = session
            .response_header()
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, |h| h.status);
        // HTTP/1.1 hands interim responses (100 Continue) to the caller; HTTP/2 skips them.
        let interim = status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS;
        if !(interim && matches!(session, HttpSession::H1(_))) {
            break status;
        }
    };
    let responded = |e: Box<pingora::Error>| after_connect(e, reused, true);
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await.map_err(responded)? {
        body.extend_from_slice(&chunk);
    }
    let trailers = match &mut session {
        HttpSession::H2(h2) => h2.read_trailers().await.map_err(responded)?,
        _ => None,
    };

    let mut headers = vec![(
        Bytes::from_static(b":status"),
        Bytes::copy_from_slice(status.as_str().as_bytes()),
    )];
    if let Some(header) = session.response_header() {
        headers.extend(pairs(&header.headers, &[]));
    }
    let response = HttpCallResponse {
        headers,
        body: body.freeze(),
        trailers: trailers.map(|t| pairs(&t, &[])).unwrap_or_default(),
    };
    shared
        .connector
        .release_http_session(session, peer, peer.options.idle_timeout)
        .await;
    Ok(response)
}

/// Headers, body and trailers on an HTTP/2 stream; END_STREAM goes with the last of them.
async fn write_h2(
    h2: &mut Http2Session,
    header: Box<RequestHeader>,
    call: &Call,
    peer: &HttpPeer,
) -> Result<(), Box<pingora::Error>> {
    let headers_only = call.body.is_empty() && call.trailers.is_empty();
    h2.write_request_header(header, headers_only)?;
    if headers_only {
        return Ok(());
    }
    if call.trailers.is_empty() {
        return h2.write_request_body(call.body.clone(), true).await;
    }
    let mut writer = h2.take_request_body_writer().ok_or_else(|| {
        pingora::Error::explain(ErrorType::WriteError, "no HTTP/2 request body writer")
    })?;
    if !call.body.is_empty() {
        pingora::protocols::http::v2::write_body(
            &mut writer,
            call.body.clone(),
            false,
            peer.options.write_timeout,
        )
        .await?;
    }
    writer
        .send_trailers(call.trailers.clone())
        .map_err(|e| pingora::Error::because(ErrorType::WriteError, "sending trailers", e))
}

/// What a Pingora error after connecting means for the call, and whether Pingora deems
/// the request safe to send again on a fresh connection (it failed on a pooled one
/// before any response).
fn after_connect(mut e: Box<pingora::Error>, reused: bool, responded: bool) -> Failed {
    e.retry.decide_reuse(reused);
    let failure = match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => HttpCallFailure::Timeout,
        _ => HttpCallFailure::Reset(e.to_string()),
    };
    Failed {
        failure,
        retry: reused && !responded && e.retry(),
    }
}

impl Call {
    /// Splits the plugin's headers into the request line and the header list; a header
    /// Pingora cannot carry fails the call as a reset (Envoy's codec resets such a
    /// stream).
    fn new(request: HttpCallRequest) -> Result<Call, HttpCallFailure> {
        let invalid = |what: &str, bytes: &[u8]| {
            HttpCallFailure::Reset(format!(
                "invalid {what} `{}`",
                String::from_utf8_lossy(bytes)
            ))
        };
        let mut method = None;
        let mut path = None;
        let mut authority = None;
        let mut scheme = Bytes::from_static(b"http");
        let mut headers = Vec::with_capacity(request.headers.len());
        for (name, value) in request.headers {
            match &name[..] {
                b":method" => {
                    method =
                        Some(Method::from_bytes(&value).map_err(|_| invalid(":method", &value))?);
                }
                b":path" => path = Some(value),
                b":authority" => authority = Some(value),
                b":scheme" => scheme = value,
                // Other pseudo-headers have no meaning on a request; the body sets the
                // length; the authority is `:authority`.
                n if n.starts_with(b":") => {}
                n if n.eq_ignore_ascii_case(b"content-length")
                    || n.eq_ignore_ascii_case(b"transfer-encoding")
                    || n.eq_ignore_ascii_case(b"host") => {}
                n => {
                    let name = HeaderName::from_bytes(n).map_err(|_| invalid("header name", n))?;
                    let value = HeaderValue::from_maybe_shared(value.clone())
                        .map_err(|_| invalid("header value", &value))?;
                    headers.push((name, value));
                }
            }
        }
        let mut trailers = HeaderMap::new();
        for (name, value) in request.trailers {
            let name = HeaderName::from_bytes(&name).map_err(|_| invalid("trailer name", &name))?;
            let value = HeaderValue::from_maybe_shared(value.clone())
                .map_err(|_| invalid("trailer value", &value))?;
            trailers.append(name, value);
        }
        let missing = |what: &str| HttpCallFailure::Reset(format!("no {what}"));
        Ok(Call {
            method: method.ok_or_else(|| missing(":method"))?,
            path: path.ok_or_else(|| missing(":path"))?,
            authority: authority.ok_or_else(|| missing(":authority"))?,
            scheme,
            headers,
            body: request.body,
            trailers,
        })
    }

    /// The request header for HTTP/2 (authority and scheme in the URI) or HTTP/1.1
    /// (`Host`), lower-case names like Envoy's codecs.
    fn header(&self, h2: bool) -> Result<Box<RequestHeader>, Failed> {
        let fail = |what: String| Failed {
            failure: HttpCallFailure::Reset(what),
            retry: false,
        };
        let mut req = RequestHeader::build_no_case(
            self.method.clone(),
            &self.path,
            Some(self.headers.len() + 2),
        )
        .map_err(|e| fail(e.to_string()))?;
        if h2 {
            let uri = http::Uri::builder()
                .scheme(&self.scheme[..])
                .authority(&self.authority[..])
                .path_and_query(&self.path[..])
                .build()
                .map_err(|e| fail(format!("invalid request target: {e}")))?;
            req.set_uri(uri);
        } else {
            req.insert_header(HOST, &self.authority[..])
                .map_err(|e| fail(e.to_string()))?;
        }
        for (name, value) in &self.headers {
            if h2
                && (CONNECTION_SPECIFIC.contains(&name.as_str())
                    || (name == http::header::TE && value.as_bytes() != b"trailers"))
            {
                continue;
            }
            req.append_header(name.clone(), value.clone())
                .map_err(|e| fail(e.to_string()))?;
        }
        if !self.body.is_empty() {
            req.insert_header(CONTENT_LENGTH, self.body.len())
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(Box::new(req))
    }
}
