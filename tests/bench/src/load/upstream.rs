//! The upstream every proxy forwards to: hyper on a single-threaded runtime in a thread of
//! its own, on a free loopback port. `/64k` answers 64 KiB without a `Content-Length`
//! (chunked), every other path (the auth callout's `/auth` included) a short body with one;
//! always 200.
//!
//! The large body is chunked so that a plugin rewriting it needs no framing fix-up on
//! either proxy: Envoy 1.40 keeps the upstream's `Content-Length` when a Wasm filter
//! changes the body's size (filters must remove it themselves; see
//! `docs/host-differences.md`), which breaks the reply, while wasmbridge switches to
//! chunked framing itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The path answered with [`LARGE_BODY`] bytes.
pub const LARGE_PATH: &str = "/64k";
/// The size of the large body.
pub const LARGE_BODY: usize = 64 * 1024;
/// The body of every other path.
pub const SMALL_BODY: &[u8] = b"hello from the benchmark upstream\n";

/// A running upstream; it serves until the process exits.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub addr: SocketAddr,
}

impl Upstream {
    /// Binds a free loopback port and serves on it from a new thread. The port is bound
    /// when this returns, so connections made from then on are accepted.
    pub fn start() -> Result<Upstream> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind the upstream")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the upstream's runtime")?;
        std::thread::Builder::new()
            .name("upstream".into())
            .spawn(move || runtime.block_on(serve(listener)))
            .context("the upstream's thread")?;
        Ok(Upstream { addr })
    }
}

async fn serve(listener: std::net::TcpListener) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let large = Bytes::from(vec![b'x'; LARGE_BODY]);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let large = large.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let body = if req.uri().path() == LARGE_PATH {
                    Either::Right(Unsized(Some(large.clone())))
                } else {
                    Either::Left(Full::new(Bytes::from_static(SMALL_BODY)))
                };
                async move { Ok::<_, Infallible>(Response::new(body)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One data frame with no size announced, so that HTTP/1.1 sends it chunked.
struct Unsized(Option<Bytes>);

impl Body for Unsized {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|data| Ok(Frame::data(data))))
    }
}
