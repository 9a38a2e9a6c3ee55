//! A real gRPC server for tests: tonic's server core with a bytes codec (messages are raw
//! bytes, so no protobuf code generation) serving `test.Echo`, and a record of what it saw.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! let (addr, _server, mut seen) = wasmbridge_e2e::grpc::serve_echo().await?;
//! // ... point a cluster with `http2: true` at `addr`, make calls ...
//! let ended = seen.chat_end().await; // Some("half-closed") after a clean chat
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, StreamingService, UnaryService};
use tonic::{Code, Status, Streaming};

/// Messages are raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

/// What the server saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A call arrived: its method and its request metadata (lower-case names, text values).
    Call {
        /// The method name (`Unary`, `Chat`, ...).
        method: String,
        /// The request metadata, in order.
        metadata: Vec<(String, String)>,
    },
    /// A chat's request stream ended: `half-closed`, or `error: <status>` after a reset.
    ChatEnded(String),
}

/// The `test.Echo` service; clone it into each request's handler.
///
/// | Method | Answer |
/// |---|---|
/// | `Unary` | `hello, <message>`, initial metadata `x-server: tonic` and what it saw of the request metadata (`x-saw-client`, `x-saw-timeout`, `x-saw-te`; `-` when absent) |
/// | `Fail` | NOT_FOUND `no such thing: 100%` with metadata `x-detail: missing` (trailers-only) |
/// | `Stall` | never answers |
/// | `Chat` | initial metadata `x-chat: ready`; `echo:<message>` for each message at once; after the client half-closes, `bye` and OK with trailing metadata `x-chat-end: bye` |
/// | `Abort` | `partial`, then ABORTED `stopped halfway` |
/// | other | UNIMPLEMENTED `no such method` |
#[derive(Clone)]
pub struct Echo {
    seen: mpsc::UnboundedSender<Seen>,
}

/// The receiving end of what an [`Echo`] saw.
pub struct Sightings(mpsc::UnboundedReceiver<Seen>);

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

/// A unary method of [`Echo`].
#[derive(Clone)]
struct Unary(&'static str);

/// A streaming method of [`Echo`].
#[derive(Clone)]
struct Chat {
    method: &'static str,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Echo {
    /// A service and the record of what it sees.
    pub fn new() -> (Echo, Sightings) {
        let (seen, rx) = mpsc::unbounded_channel();
        (Echo { seen }, Sightings(rx))
    }

    /// Answers one HTTP/2 request as `test.Echo`.
    pub async fn handle(self, req: Request<Incoming>) -> Response<tonic::body::Body> {
        let mut grpc = Grpc::new(BytesCodec);
        let Some(method) = req.uri().path().strip_prefix("/test.Echo/") else {
            return Status::unimplemented("no such service").into_http();
        };
        let _ = self.seen.send(Seen::Call {
            method: method.to_owned(),
            metadata: crate::header_pairs(req.headers()),
        });
        match method {
            "Unary" => grpc.unary(Unary("Unary"), req).await,
            "Fail" => grpc.unary(Unary("Fail"), req).await,
            "Stall" => grpc.unary(Unary("Stall"), req).await,
            "Chat" | "Abort" => {
                let chat = Chat {
                    method: if method == "Chat" { "Chat" } else { "Abort" },
                    seen: self.seen,
                };
                grpc.streaming(chat, req).await
            }
            _ => Status::unimplemented("no such method").into_http(),
        }
    }
}

impl Sightings {
    /// The next thing the server saw, or `None` when nothing comes within 10 s.
    pub async fn next(&mut self) -> Option<Seen> {
        tokio::time::timeout(Duration::from_secs(10), self.0.recv())
            .await
            .ok()
            .flatten()
    }

    /// How the next chat ended (calls seen before are skipped), or `None` after 10 s.
    pub async fn chat_end(&mut self) -> Option<String> {
        loop {
            match self.next().await? {
                Seen::ChatEnded(how) => return Some(how),
                Seen::Call { .. } => {}
            }
        }
    }
}

/// The value of metadata `name` as text, `-` when absent.
fn metadata_text(metadata: &MetadataMap, name: &str) -> String {
    metadata
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

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
                    let seen = |name| metadata_text(request.metadata(), name);
                    let saw = [
                        ("x-saw-client", seen("x-client")),
                        ("x-saw-timeout", seen("grpc-timeout")),
                        ("x-saw-te", seen("te")),
                    ];
                    let mut message = b"hello, ".to_vec();
                    message.extend_from_slice(request.get_ref());
                    let mut response = tonic::Response::new(Bytes::from(message));
                    let metadata = response.metadata_mut();
                    metadata.insert("x-server", "tonic".parse().expect("ascii"));
                    for (name, value) in saw {
                        metadata.insert(name, value.parse().expect("ascii"));
                    }
                    Ok(response)
                }
            }
        })
    }
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
                                let _ = this.seen.send(Seen::ChatEnded("half-closed".into()));
                                let _ = tx.send(Ok(Bytes::from_static(b"bye")));
                                // tonic turns a stream's final status into its trailers, so
                                // an OK status is how a stream sends trailing metadata.
                                let mut trailing = MetadataMap::new();
                                trailing.insert("x-chat-end", "bye".parse().expect("ascii"));
                                let _ = tx.send(Err(Status::with_metadata(Code::Ok, "", trailing)));
                                break;
                            }
                            Err(status) => {
                                let _ = this.seen.send(Seen::ChatEnded(format!("error: {status}")));
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

/// Serves [`Echo`] (h2c, and HTTP/1.1 which gRPC does not use) on an ephemeral loopback
/// port until the returned task is aborted.
pub async fn serve_echo() -> std::io::Result<(SocketAddr, JoinHandle<()>, Sightings)> {
    let (echo, seen) = Echo::new();
    let (addr, task) = crate::serve(move |req| {
        let echo = echo.clone();
        async move { Ok::<_, std::convert::Infallible>(echo.handle(req).await) }
    })
    .await?;
    Ok((addr, task, seen))
}
