//! `Upstreams::http_call` against hyper servers.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use wasmbridge_e2e::{Upstream, free_port};
use wasmbridge_host::{
    HttpCallFailure, HttpCallRequest, HttpCallResponse, UnknownUpstream, Upstreams,
};
use wasmbridge_pingora::GatewayUpstreams;

use super::{ClusterSpec, Server, pairs, upstreams, value, values};

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A request with the required pseudo-headers and the given extra headers.
fn request(method: &str, path: &str, extra: &[(&str, &str)]) -> HttpCallRequest {
    let mut headers = pairs(&[
        (":method", method),
        (":path", path),
        (":authority", "callout.test"),
    ]);
    headers.extend(pairs(extra));
    HttpCallRequest {
        headers,
        timeout: Some(Duration::from_secs(10)),
        ..HttpCallRequest::default()
    }
}

async fn call(
    upstreams: &GatewayUpstreams,
    upstream: &str,
    request: HttpCallRequest,
) -> Result<HttpCallResponse, HttpCallFailure> {
    upstreams
        .http_call(upstream, request)
        .unwrap_or_else(|e| panic!("{e}"))
        .await
}

fn text(body: &Bytes) -> &str {
    std::str::from_utf8(body).expect("utf-8 body")
}

fn full(body: &'static str) -> BoxBody {
    Full::new(Bytes::from_static(body.as_bytes())).boxed()
}

async fn hello(req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let status = if req.uri().path() == "/hello" {
        200
    } else {
        404
    };
    let body = if status == 200 {
        "hello callout"
    } else {
        "no such page"
    };
    Ok(Response::builder()
        .status(status)
        .header("X-Reply", "yes")
        .header("Set-Cookie", "a=1")
        .header("Set-Cookie", "b=2")
        .body(full(body))
        .expect("response"))
}

#[tokio::test]
async fn success_gives_status_first_lower_case_headers_and_the_body() {
    let server = Server::start(hello).await;
    let upstreams = upstreams(&[ClusterSpec::h1("backend", server.addr)]);

    let response = call(&upstreams, "backend", request("GET", "/hello", &[]))
        .await
        .expect("response");

    assert_eq!(response.headers[0], pairs(&[(":status", "200")])[0]);
    // The server wrote `X-Reply` and `Set-Cookie` in title case.
    assert_eq!(value(&response.headers, "x-reply").as_deref(), Some("yes"));
    assert_eq!(values(&response.headers, "set-cookie"), ["a=1", "b=2"]);
    assert_eq!(
        value(&response.headers, "content-length").as_deref(),
        Some("13")
    );
    assert!(
        response
            .headers
            .iter()
            .skip(1)
            .all(|(n, _)| !n.starts_with(b":") && !n.iter().any(u8::is_ascii_uppercase))
    );
    assert_eq!(text(&response.body), "hello callout");
    assert!(response.trailers.is_empty());
}

#[tokio::test]
async fn not_found_is_a_response() {
    let server = Server::start(hello).await;
    let upstreams = upstreams(&[ClusterSpec::h1("backend", server.addr)]);

    let response = call(&upstreams, "backend", request("GET", "/missing", &[]))
        .await
        .expect("response");

    assert_eq!(value(&response.headers, ":status").as_deref(), Some("404"));
    assert_eq!(text(&response.body), "no such page");
}

#[tokio::test]
async fn request_body_and_headers_reach_the_server() {
    let echo = Upstream::start().await;
    let upstreams = upstreams(&[ClusterSpec::h1("echo", echo.addr)]);
    let mut request = request(
        "POST",
        "/submit?x=1",
        &[
            ("x-custom", "one"),
            ("X-Mixed-Case", "two"),
            ("x-custom", "three"),
            // The transport sets the length from the body.
            ("content-length", "999"),
        ],
    );
    request.body = Bytes::from_static(b"the request body");

    let response = call(&upstreams, "echo", request).await.expect("response");

    assert_eq!(value(&response.headers, ":status").as_deref(), Some("200"));
    let seen: serde_json::Value = serde_json::from_slice(&response.body).expect("echo json");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/submit?x=1");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["body"], "the request body");
    assert_eq!(seen["framing"], "content-length");
    let headers = wasmbridge_e2e::upstream_headers(&seen, "x-custom");
    assert_eq!(headers, ["one", "three"]);
    assert_eq!(
        wasmbridge_e2e::upstream_headers(&seen, "x-mixed-case"),
        ["two"]
    );
    assert_eq!(
        wasmbridge_e2e::upstream_headers(&seen, "host"),
        ["callout.test"]
    );
    assert_eq!(
        wasmbridge_e2e::upstream_headers(&seen, "content-length"),
        ["16"]
    );
}

#[tokio::test]
async fn a_bodyless_request_has_no_length() {
    let echo = Upstream::start().await;
    let upstreams = upstreams(&[ClusterSpec::h1("echo", echo.addr)]);

    let response = call(&upstreams, "echo", request("GET", "/", &[]))
        .await
        .expect("response");

    let seen: serde_json::Value = serde_json::from_slice(&response.body).expect("echo json");
    assert_eq!(seen["framing"], "none");
    assert_eq!(seen["body_len"], 0);
}

#[tokio::test]
async fn a_body_sent_in_parts_arrives_whole() {
    // The server sends part of the body, then waits for the test, which releases it only
    // after checking that the call is still waiting.
    let (parts_tx, parts_rx) = mpsc::unbounded_channel::<Result<Frame<Bytes>, Infallible>>();
    let (first_sent_tx, first_sent_rx) = oneshot::channel::<()>();
    let parts_rx = Arc::new(Mutex::new(Some(parts_rx)));
    let first_sent = Arc::new(Mutex::new(Some(first_sent_tx)));
    let server = Server::start(move |_req: Request<Incoming>| {
        let parts_rx = parts_rx.lock().unwrap().take();
        let first_sent = first_sent.lock().unwrap().take();
        async move {
            let parts_rx = parts_rx.expect("one request");
            let body = StreamBody::new(UnboundedReceiverStream::new(parts_rx)).boxed();
            if let Some(first_sent) = first_sent {
                let _ = first_sent.send(());
            }
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-length", "21")
                    .body(body)
                    .expect("response"),
            )
        }
    })
    .await;
    let upstreams = upstreams(&[ClusterSpec::h1("slow", server.addr)]);

    parts_tx
        .send(Ok(Frame::data(Bytes::from_static(b"first half, "))))
        .expect("first part");
    let call = tokio::spawn({
        let upstreams = upstreams.clone();
        async move { call(&upstreams, "slow", request("GET", "/", &[])).await }
    });
    first_sent_rx.await.expect("the server answered");
    assert!(!call.is_finished(), "the call ended before the body did");
    parts_tx
        .send(Ok(Frame::data(Bytes::from_static(b"then more"))))
        .expect("second part");
    drop(parts_tx);

    let response = call.await.expect("call task").expect("response");
    assert_eq!(text(&response.body), "first half, then more");
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    // Headers arrive, the body never does.
    let (_never_tx, never_rx) = oneshot::channel::<()>();
    let never_rx = Arc::new(tokio::sync::Mutex::new(Some(never_rx)));
    let server = Server::start(move |_req: Request<Incoming>| {
        let never_rx = never_rx.clone();
        async move {
            let _ = never_rx.lock().await.take().expect("one request").await;
            Ok::<_, Infallible>(Response::new(full("too late")))
        }
    })
    .await;
    let upstreams = upstreams(&[ClusterSpec::h1("stalled", server.addr)]);
    let mut request = request("GET", "/", &[]);
    request.timeout = Some(Duration::from_millis(300));

    let failure = call(&upstreams, "stalled", request)
        .await
        .expect_err("no response");

    assert_eq!(failure, HttpCallFailure::Timeout);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let port = free_port();
    let upstreams = upstreams(&[ClusterSpec::h1("nobody", ([127, 0, 0, 1], port).into())]);

    let failure = call(&upstreams, "nobody", request("GET", "/", &[]))
        .await
        .expect_err("nothing listens");

    let HttpCallFailure::ConnectFailure(reason) = failure else {
        panic!("expected ConnectFailure, got {failure:?}");
    };
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
}

#[tokio::test]
async fn parallel_calls_complete_independently() {
    // `/slow` answers only once the test has the answer to `/fast`.
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let server = Server::start(move |req: Request<Incoming>| {
        let release_rx = release_rx.clone();
        async move {
            if req.uri().path() == "/slow" {
                let _ = release_rx
                    .lock()
                    .await
                    .take()
                    .expect("one slow request")
                    .await;
                return Ok::<_, Infallible>(Response::new(full("slow")));
            }
            Ok(Response::new(full("fast")))
        }
    })
    .await;
    let upstreams = upstreams(&[ClusterSpec::h1("backend", server.addr)]);

    let slow = upstreams
        .http_call("backend", request("GET", "/slow", &[]))
        .expect("known upstream");
    let slow = tokio::spawn(slow);
    let fast = call(&upstreams, "backend", request("GET", "/fast", &[]))
        .await
        .expect("fast response");
    assert_eq!(text(&fast.body), "fast");
    assert!(!slow.is_finished());
    release_tx.send(()).expect("slow request waiting");
    let slow = slow.await.expect("slow task").expect("slow response");
    assert_eq!(text(&slow.body), "slow");
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_clean_exchange_returns_the_connection_to_the_pool() {
    let server = Server::start(hello).await;
    let upstreams = upstreams(&[ClusterSpec::h1("backend", server.addr)]);

    for _ in 0..3 {
        let response = call(&upstreams, "backend", request("GET", "/hello", &[]))
            .await
            .expect("response");
        assert_eq!(text(&response.body), "hello callout");
    }

    assert_eq!(server.connections(), 1);
}

/// Echoes the request body and trailers, and answers with trailers of its own.
async fn trailer_echo(req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let version = format!("{:?}", req.version());
    let collected = req.into_body().collect().await.expect("request body");
    let mut trailers = collected.trailers().cloned().unwrap_or_default();
    trailers.insert("x-server-trailer", "done".parse().expect("value"));
    let body = format!(
        "{version} {}",
        String::from_utf8_lossy(&collected.to_bytes())
    );
    let frames = vec![
        Ok(Frame::data(Bytes::from(body))),
        Ok(Frame::trailers(trailers)),
    ];
    Ok(Response::builder()
        .header("x-reply", "h2")
        .body(StreamBody::new(tokio_stream::iter(frames)).boxed())
        .expect("response"))
}

#[tokio::test]
async fn h2c_cluster_carries_body_and_trailers_both_ways() {
    let server = Server::start(trailer_echo).await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpcish", server.addr)]);
    let mut request = request(
        "POST",
        "/trailers",
        &[
            ("x-custom", "1"),
            ("connection", "keep-alive"),
            ("te", "trailers"),
        ],
    );
    request.body = Bytes::from_static(b"payload");
    request.trailers = pairs(&[("x-client-trailer", "sent")]);

    let response = call(&upstreams, "grpcish", request)
        .await
        .expect("response");

    assert_eq!(value(&response.headers, ":status").as_deref(), Some("200"));
    assert_eq!(value(&response.headers, "x-reply").as_deref(), Some("h2"));
    assert_eq!(text(&response.body), "HTTP/2.0 payload");
    assert_eq!(
        value(&response.trailers, "x-client-trailer").as_deref(),
        Some("sent")
    );
    assert_eq!(
        value(&response.trailers, "x-server-trailer").as_deref(),
        Some("done")
    );
}

#[tokio::test]
async fn h2c_calls_reuse_one_connection() {
    let server = Server::start(hello).await;
    let upstreams = upstreams(&[ClusterSpec::h2c("backend", server.addr)]);

    for (path, status) in [("/hello", "200"), ("/missing", "404"), ("/hello", "200")] {
        let response = call(&upstreams, "backend", request("GET", path, &[]))
            .await
            .expect("response");
        assert_eq!(value(&response.headers, ":status").as_deref(), Some(status));
        assert!(response.trailers.is_empty());
    }

    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn unknown_names_and_addresses() {
    let server = Server::start(hello).await;
    let upstreams = upstreams(&[ClusterSpec::h1("backend", server.addr)]);
    let address = server.addr.to_string();

    let refused = upstreams.http_call(&address, request("GET", "/hello", &[]));
    assert_eq!(refused.err(), Some(UnknownUpstream(address.clone())));
    assert!(
        upstreams
            .http_call("other", request("GET", "/", &[]))
            .is_err()
    );

    let kong_style = upstreams.allowing_addresses(true);
    assert!(kong_style.allows_addresses());
    assert!(!upstreams.allows_addresses());
    let response = call(&kong_style, &address, request("GET", "/hello", &[]))
        .await
        .expect("response");
    assert_eq!(text(&response.body), "hello callout");
    // A host name resolves when the call starts; the transport takes its first address,
    // so the server listens there.
    let localhost = tokio::net::lookup_host(("localhost", 0))
        .await
        .expect("resolve localhost")
        .next()
        .expect("localhost has an address");
    let named = Server::start_on(localhost.ip(), hello).await;
    let by_name = format!("localhost:{}", named.addr.port());
    let response = call(&kong_style, &by_name, request("GET", "/hello", &[]))
        .await
        .expect("response");
    assert_eq!(text(&response.body), "hello callout");
    // Still not a free-for-all.
    assert!(
        kong_style
            .http_call("other", request("GET", "/", &[]))
            .is_err()
    );
    assert!(
        kong_style
            .http_call("http://x:1/", request("GET", "/", &[]))
            .is_err()
    );
}
