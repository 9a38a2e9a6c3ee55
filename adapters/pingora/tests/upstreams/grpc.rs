//! `Upstreams::grpc_stream` against tonic's gRPC server core (a bytes codec, so no
//! protobuf code generation).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, StreamingService, UnaryService};
use tonic::{Code, Status, Streaming};
use wasmbridge_e2e::free_port;
use wasmbridge_host::{GrpcChannel, GrpcInbound, GrpcOutbound, GrpcRequest, Upstreams};
use wasmbridge_pingora::GatewayUpstreams;

use super::{ClusterSpec, Server, pairs, upstreams, value};

/// Messages are raw bytes.
#[derive(Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> BytesCodec {
        BytesCodec
    }

    fn decoder(&mut self) -> BytesCodec {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type MessageStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// `Unary`: greets, and echoes what it saw of the request metadata. `Fail`: NOT_FOUND
/// with trailing metadata. `Stall`: never answers.
#[derive(Clone)]
struct Unary(&'static str);

impl UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let method = self.0;
        Box::pin(async move {
            match method {
                "Fail" => {
                    let mut metadata = MetadataMap::new();
                    metadata.insert("x-detail", "missing".parse().expect("ascii"));
                    Err(Status::with_metadata(
                        Code::NotFound,
                        "no such thing: 100%",
                        metadata,
                    ))
                }
                "Stall" => std::future::pending().await,
                _ => {
                    let seen = |name: &str| {
                        request
                            .metadata()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string()
                    };
                    let saw_client = seen("x-client");
                    let saw_timeout = seen("grpc-timeout");
                    let saw_te = seen("te");
                    let mut message = b"hello, ".to_vec();
                    message.extend_from_slice(request.get_ref());
                    let mut response = tonic::Response::new(Bytes::from(message));
                    let metadata = response.metadata_mut();
                    metadata.insert("x-server", "tonic".parse().expect("ascii"));
                    metadata.insert("x-saw-client", saw_client.parse().expect("ascii"));
                    metadata.insert("x-saw-timeout", saw_timeout.parse().expect("ascii"));
                    metadata.insert("x-saw-te", saw_te.parse().expect("ascii"));
                    Ok(response)
                }
            }
        })
    }
}

/// `Chat`: answers each message at once with `echo:<message>`, and `bye` after the
/// client half-closes; reports how the request stream ended. `Abort`: one message, then
/// ABORTED.
#[derive(Clone)]
struct Chat {
    method: &'static str,
    ended: mpsc::UnboundedSender<String>,
}

impl StreamingService<Bytes> for Chat {
    type Response = Bytes;
    type ResponseStream = MessageStream;
    type Future = BoxFuture<Result<tonic::Response<MessageStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::unbounded_channel();
            if this.method == "Abort" {
                let _ = tx.send(Ok(Bytes::from_static(b"partial")));
                let _ = tx.send(Err(Status::aborted("stopped halfway")));
            } else {
                tokio::spawn(async move {
                    loop {
                        match inbound.message().await {
                            Ok(Some(message)) => {
                                let mut echo = b"echo:".to_vec();
                                echo.extend_from_slice(&message);
                                let _ = tx.send(Ok(Bytes::from(echo)));
                            }
                            Ok(None) => {
                                let _ = this.ended.send("half-closed".into());
                                let _ = tx.send(Ok(Bytes::from_static(b"bye")));
                                break;
                            }
                            Err(status) => {
                                let _ = this.ended.send(format!("error: {status}"));
                                break;
                            }
                        }
                    }
                });
            }
            let stream: MessageStream = Box::pin(UnboundedReceiverStream::new(rx));
            let mut response = tonic::Response::new(stream);
            response
                .metadata_mut()
                .insert("x-chat", "ready".parse().expect("ascii"));
            Ok(response)
        })
    }
}

/// A gRPC server for `test.Echo`; the receiver reports how chats ended.
async fn grpc_server() -> (Server, mpsc::UnboundedReceiver<String>) {
    let (ended, ended_rx) = mpsc::unbounded_channel();
    let server = Server::start(move |req: Request<Incoming>| {
        let ended = ended.clone();
        async move {
            let mut grpc = Grpc::new(BytesCodec);
            let response = match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary("Unary"), req).await,
                "/test.Echo/Fail" => grpc.unary(Unary("Fail"), req).await,
                "/test.Echo/Stall" => grpc.unary(Unary("Stall"), req).await,
                "/test.Echo/Chat" => {
                    grpc.streaming(
                        Chat {
                            method: "Chat",
                            ended,
                        },
                        req,
                    )
                    .await
                }
                "/test.Echo/Abort" => {
                    grpc.streaming(
                        Chat {
                            method: "Abort",
                            ended,
                        },
                        req,
                    )
                    .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok::<Response<tonic::body::Body>, Infallible>(response)
        }
    })
    .await;
    (server, ended_rx)
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
    let (server, _ended) = grpc_server().await;
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
    let (server, _ended) = grpc_server().await;
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
    let (server, mut ended) = grpc_server().await;
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
    assert!(matches!(events[1], GrpcInbound::TrailingMetadata(_)));
    assert_eq!(events[2], close(0, ""));
    assert_eq!(events.len(), 3);
    assert_eq!(ended.recv().await.as_deref(), Some("half-closed"));
}

#[tokio::test]
async fn a_server_error_status_with_message_and_trailing_metadata() {
    let (server, _ended) = grpc_server().await;
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
    let (server, _ended) = grpc_server().await;
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
    let (server, _ended) = grpc_server().await;
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
    let (server, _ended) = grpc_server().await;
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
    let (server, mut ended) = grpc_server().await;
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
    let how = ended.recv().await.expect("the server saw the end");
    assert!(how.starts_with("error"), "{how}");
}

#[tokio::test]
async fn dropping_the_channel_cancels() {
    let (server, mut ended) = grpc_server().await;
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
    let how = ended.recv().await.expect("the server saw the end");
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
    let (server, _ended) = grpc_server().await;
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
