//! The callout transports against real servers on loopback: [`GatewayUpstreams`] from a
//! gateway built from YAML, called directly (as the host's root driver will) from a tokio
//! runtime. HTTP calls go to hyper servers, gRPC streams to tonic's server core.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wasmbridge_config::Config;
use wasmbridge_host::Pairs;
use wasmbridge_pingora::{Gateway, GatewayUpstreams};

mod grpc;
mod http_call;

/// A cluster for [`upstreams`]: name, endpoint, h2c.
struct ClusterSpec<'a> {
    name: &'a str,
    endpoint: String,
    http2: bool,
}

impl<'a> ClusterSpec<'a> {
    fn h1(name: &'a str, addr: SocketAddr) -> Self {
        ClusterSpec {
            name,
            endpoint: addr.to_string(),
            http2: false,
        }
    }

    fn h2c(name: &'a str, addr: SocketAddr) -> Self {
        ClusterSpec {
            name,
            endpoint: addr.to_string(),
            http2: true,
        }
    }
}

/// The callout transports of a gateway built from YAML with these clusters.
fn upstreams(clusters: &[ClusterSpec<'_>]) -> GatewayUpstreams {
    let mut yaml = String::from(
        "listeners: [{address: 127.0.0.1:0}]\n\
         routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n\
         clusters:\n",
    );
    for c in clusters {
        yaml.push_str(&format!(
            "  - {{name: {}, endpoints: [\"{}\"], http2: {}}}\n",
            c.name, c.endpoint, c.http2
        ));
    }
    let config = Config::from_yaml_str(&yaml, Path::new("<test>"), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    Gateway::build(config)
        .unwrap_or_else(|e| panic!("{e}"))
        .upstreams()
        .clone()
}

/// A hyper server (HTTP/1.1 with title-case header names on the wire, and h2c) that
/// counts the connections it accepted; stops on drop.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `handler` on an ephemeral port of 127.0.0.1.
    async fn start<F, Fut, B>(handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Server::start_on([127, 0, 0, 1].into(), handler).await
    }

    /// Serves `handler` on an ephemeral port of `ip`.
    async fn start_on<F, Fut, B>(ip: IpAddr, handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder.http1().title_case_headers(true);
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service_fn(handler))
                        .await;
                });
            }
        });
        Server {
            addr,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Every value of `name` in `pairs`, as text.
fn values(pairs: &Pairs, name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(n, _)| n.as_ref() == name.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The one value of `name` in `pairs`.
fn value(pairs: &Pairs, name: &str) -> Option<String> {
    let mut all = values(pairs, name);
    assert!(all.len() <= 1, "{name} given {} times", all.len());
    all.pop()
}

/// Header pairs from text.
fn pairs(list: &[(&str, &str)]) -> Pairs {
    list.iter()
        .map(|(n, v)| {
            (
                Bytes::copy_from_slice(n.as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect()
}
