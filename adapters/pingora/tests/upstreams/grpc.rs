//! `Upstreams::grpc_stream` against tonic's gRPC server core (the `test.Echo` service of
//! `wasmbridge_e2e::grpc`: a bytes codec, so no protobuf code generation).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use wasmbridge_e2e::free_port;
use wasmbridge_e2e::grpc::{Echo, Sightings};
use wasmbridge_host::{GrpcChannel, GrpcInbound, GrpcOutbound, GrpcRequest, Upstreams};
use wasmbridge_pingora::GatewayUpstreams;

use super::{ClusterSpec, Server, pairs, upstreams, value};

/// A gRPC server for `test.Echo` (see [`Echo`]) and what it saw.
async fn grpc_server() -> (Server, Sightings) {
    let (echo, seen) = Echo::new();
    let server = Server::start(move |req: Request<Incoming>| {
        let echo = echo.clone();
        async move { Ok::<_, Infallible>(echo.handle(req).await) }
    })
    .await;
    (server, seen)
}

fn open(upstreams: &GatewayUpstreams, upstream: &str, method: &str) -> GrpcChannel {
    open_with(upstreams, upstream, method, Some(Duration::from_secs(10)))
}

fn open_with(
    upstreams: &GatewayUpstreams,
    upstream: &str,
    method: &str,
    timeout: Option<Duration>,
) -> GrpcChannel {
    let request = GrpcRequest {
        service: "test.Echo".into(),
        method: method.into(),
        initial_metadata: pairs(&[("x-client", "wasm"), (":path", "/ignored")]),
        timeout,
    };
    let mut channel = upstreams
        .grpc_stream(upstream, request)
        .unwrap_or_else(|e| panic!("{e}"));
    let task = std::mem::replace(&mut channel.task, Box::pin(async {}));
    tokio::spawn(task);
    channel
}

fn message(data: &'static [u8], end_stream: bool) -> GrpcOutbound {
    GrpcOutbound::Message {
        data: Bytes::from_static(data),
        end_stream,
    }
}

async fn next(channel: &mut GrpcChannel) -> GrpcInbound {
    channel
        .inbound
        .recv()
        .await
        .expect("an event before the close")
}

/// Every event until the channel ends (after `Close`).
async fn rest(channel: &mut GrpcChannel) -> Vec<GrpcInbound> {
    let mut events = Vec::new();
    while let Some(event) = channel.inbound.recv().await {
        events.push(event);
    }
    events
}

fn close(status: u32, message: &str) -> GrpcInbound {
    GrpcInbound::Close {
        status,
        message: message.into(),
    }
}

#[tokio::test]
async fn unary_call_with_metadata_both_ways() {
    let (server, _seen) = grpc_server().await;
    // The cluster is HTTP/1.1 for HTTP calls; gRPC speaks h2c to it anyway.
    let upstreams = upstreams(&[ClusterSpec::h1("grpc", server.addr)]);
    let mut channel = open(&upstreams, "grpc", "Unary");
    channel
        .outbound
        .send(message(b"wasm", true))
        .expect("task running");

    let GrpcInbound::InitialMetadata(metadata) = next(&mut channel).await else {
        panic!("initial metadata first");
    };
    assert_eq!(value(&metadata, "x-server").as_deref(), Some("tonic"));
    assert_eq!(value(&metadata, "x-saw-client").as_deref(), Some("wasm"));
    assert_eq!(
        value(&metadata, "x-saw-timeout").as_deref(),
        Some("10000000u")
    );
    assert_eq!(value(&metadata, "x-saw-te").as_deref(), Some("trailers"));
    assert_eq!(value(&metadata, "content-type"), None);
    assert_eq!(value(&metadata, ":status"), None);
    let events = rest(&mut channel).await;
    assert_eq!(
        events[0],
        GrpcInbound::Message(Bytes::from_static(b"hello, wasm"))
    );
    let GrpcInbound::TrailingMetadata(trailers) = &events[1] else {
        panic!("trailing metadata, got {:?}", events[1]);
    };
    assert_eq!(value(trailers, "grpc-status"), None);
    assert_eq!(events[2], close(0, ""));
    assert_eq!(events.len(), 3);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_large_message_is_reassembled_across_data_frames() {
    let (server, _seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let mut channel = open(&upstreams, "grpc", "Unary");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    channel
        .outbound
        .send(GrpcOutbound::Message {
            data: Bytes::from(big.clone()),
            end_stream: true,
        })
        .expect("task running");

    let events = rest(&mut channel).await;
    let mut expected = b"hello, ".to_vec();
    expected.extend_from_slice(&big);
    assert_eq!(events[1], GrpcInbound::Message(Bytes::from(expected)));
    assert_eq!(events.last(), Some(&close(0, "")));
}

#[tokio::test]
async fn bidirectional_stream_interleaves_messages() {
    let (server, mut seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let mut channel = open(&upstreams, "grpc", "Chat");

    channel
        .outbound
        .send(message(b"one", false))
        .expect("task running");
    let GrpcInbound::InitialMetadata(metadata) = next(&mut channel).await else {
        panic!("initial metadata first");
    };
    assert_eq!(value(&metadata, "x-chat").as_deref(), Some("ready"));
    // Each answer arrives before the client sends the next message or half-closes.
    assert_eq!(
        next(&mut channel).await,
        GrpcInbound::Message(Bytes::from_static(b"echo:one"))
    );
    channel
        .outbound
        .send(message(b"two", false))
        .expect("task running");
    assert_eq!(
        next(&mut channel).await,
        GrpcInbound::Message(Bytes::from_static(b"echo:two"))
    );
    channel
        .outbound
        .send(message(b"three", false))
        .expect("task running");
    assert_eq!(
        next(&mut channel).await,
        GrpcInbound::Message(Bytes::from_static(b"echo:three"))
    );
    channel
        .outbound
        .send(GrpcOutbound::Close)
        .expect("task running");
    // Half-closed: further messages are ignored, the stream still ends cleanly.
    let _ = channel.outbound.send(message(b"late", false));

    let events = rest(&mut channel).await;
    assert_eq!(events[0], GrpcInbound::Message(Bytes::from_static(b"bye")));
    let GrpcInbound::TrailingMetadata(trailers) = &events[1] else {
        panic!("trailing metadata, got {:?}", events[1]);
    };
    assert_eq!(value(trailers, "x-chat-end").as_deref(), Some("bye"));
    assert_eq!(value(trailers, "grpc-status"), None);
    assert_eq!(events[2], close(0, ""));
    assert_eq!(events.len(), 3);
    assert_eq!(seen.chat_end().await.as_deref(), Some("half-closed"));
}

#[tokio::test]
async fn a_server_error_status_with_message_and_trailing_metadata() {
    let (server, _seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let mut channel = open(&upstreams, "grpc", "Fail");
    channel
        .outbound
        .send(message(b"x", true))
        .expect("task running");

    // Trailers-only: empty initial metadata, the headers as trailing metadata.
    let events = rest(&mut channel).await;
    assert_eq!(events[0], GrpcInbound::InitialMetadata(Vec::new()));
    let GrpcInbound::TrailingMetadata(trailers) = &events[1] else {
        panic!("trailing metadata, got {:?}", events[1]);
    };
    assert_eq!(value(trailers, "x-detail").as_deref(), Some("missing"));
    assert_eq!(value(trailers, "grpc-status"), None);
    assert_eq!(value(trailers, "grpc-message"), None);
    assert_eq!(events[2], close(5, "no such thing: 100%"));
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn an_error_after_messages_ends_with_the_trailers_status() {
    let (server, _seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let mut channel = open(&upstreams, "grpc", "Abort");
    channel
        .outbound
        .send(GrpcOutbound::Close)
        .expect("task running");

    let events = rest(&mut channel).await;
    assert!(matches!(events[0], GrpcInbound::InitialMetadata(_)));
    assert_eq!(
        events[1],
        GrpcInbound::Message(Bytes::from_static(b"partial"))
    );
    assert!(matches!(events[2], GrpcInbound::TrailingMetadata(_)));
    assert_eq!(events[3], close(10, "stopped halfway"));
}

#[tokio::test]
async fn an_unimplemented_method() {
    let (server, _seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let mut channel = open(&upstreams, "grpc", "Nope");
    channel
        .outbound
        .send(message(b"x", true))
        .expect("task running");

    let events = rest(&mut channel).await;
    assert_eq!(events.last(), Some(&close(12, "no such method")));
}

#[tokio::test]
async fn the_deadline_is_exceeded() {
    let (server, _seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let mut channel = open_with(
        &upstreams,
        "grpc",
        "Stall",
        Some(Duration::from_millis(300)),
    );
    channel
        .outbound
        .send(message(b"x", true))
        .expect("task running");

    let events = rest(&mut channel).await;
    assert_eq!(events, [close(4, "deadline exceeded")]);
}

#[tokio::test]
async fn cancel_resets_the_stream() {
    let (server, mut seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let mut channel = open(&upstreams, "grpc", "Chat");
    channel
        .outbound
        .send(message(b"one", false))
        .expect("task running");
    assert!(matches!(
        next(&mut channel).await,
        GrpcInbound::InitialMetadata(_)
    ));
    assert_eq!(
        next(&mut channel).await,
        GrpcInbound::Message(Bytes::from_static(b"echo:one"))
    );

    channel
        .outbound
        .send(GrpcOutbound::Cancel)
        .expect("task running");

    assert_eq!(rest(&mut channel).await, [close(1, "cancelled")]);
    let how = seen.chat_end().await.expect("the server saw the end");
    assert!(how.starts_with("error"), "{how}");
}

#[tokio::test]
async fn dropping_the_channel_cancels() {
    let (server, mut seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let request = GrpcRequest {
        service: "test.Echo".into(),
        method: "Chat".into(),
        ..GrpcRequest::default()
    };
    let GrpcChannel {
        outbound,
        mut inbound,
        task,
    } = upstreams
        .grpc_stream("grpc", request)
        .expect("known upstream");
    let task = tokio::spawn(task);
    outbound.send(message(b"one", false)).expect("task running");
    assert!(matches!(
        inbound.recv().await,
        Some(GrpcInbound::InitialMetadata(_))
    ));
    assert!(matches!(
        inbound.recv().await,
        Some(GrpcInbound::Message(_))
    ));

    drop(outbound);
    drop(inbound);

    task.await.expect("the task ends");
    let how = seen.chat_end().await.expect("the server saw the end");
    assert!(how.starts_with("error"), "{how}");
}

#[tokio::test]
async fn no_server_is_unavailable() {
    let port = free_port();
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", ([127, 0, 0, 1], port).into())]);
    let mut channel = open(&upstreams, "grpc", "Unary");
    channel
        .outbound
        .send(message(b"x", true))
        .expect("task running");

    let events = rest(&mut channel).await;
    assert_eq!(events.len(), 1);
    let GrpcInbound::Close { status, message } = &events[0] else {
        panic!("close, got {events:?}");
    };
    assert_eq!(*status, 14);
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn unknown_upstreams_and_addresses() {
    let (server, _seen) = grpc_server().await;
    let upstreams = upstreams(&[ClusterSpec::h2c("grpc", server.addr)]);
    let address = server.addr.to_string();
    assert!(
        upstreams
            .grpc_stream("nope", GrpcRequest::default())
            .is_err()
    );
    assert!(
        upstreams
            .grpc_stream(&address, GrpcRequest::default())
            .is_err()
    );

    let mut channel = open(&upstreams.allowing_addresses(true), &address, "Unary");
    channel
        .outbound
        .send(message(b"addr", true))
        .expect("task running");
    let events = rest(&mut channel).await;
    assert_eq!(
        events[1],
        GrpcInbound::Message(Bytes::from_static(b"hello, addr"))
    );
    assert_eq!(events.last(), Some(&close(0, "")));
}
