//! The Pingora adapter's callout transports: [`GatewayUpstreams`] implements the host's
//! [`Upstreams`] contract with Pingora's own HTTP [`Connector`], so `proxy_http_call` and
//! the gRPC callouts use the gateway's clusters — the same round-robin load balancers
//! the routes use, the cluster's connect and read timeouts, h2c when the cluster speaks
//! it — and a connection pool of their own (Pingora's proxy keeps its pool private).
//!
//! # Upstream names
//!
//! A name is a cluster name (`clusters[].name`), as in Envoy. When the plugin's
//! `callouts.allow_host_port` option is on ([`GatewayUpstreams::allowing_addresses`]), a
//! name that is no cluster may also be `host:port` or `ip:port` (Kong's convention); host
//! names are resolved when the call starts, not while the guest waits. Such an address is
//! served with the cluster defaults (connect 1 s, read 30 s, HTTP/1.1). Anything else is
//! [`UnknownUpstream`].
//!
//! # HTTP calls
//!
//! Pseudo-headers become the request line and authority (`:scheme` only matters for
//! HTTP/2; HTTP/1.1 carries `:authority` as `Host`), the other headers go as given, minus
//! `content-length` and `transfer-encoding`: the body is sent with its own
//! `content-length` (none for an empty body). Request trailers reach HTTP/2 clusters only —
//! Pingora's HTTP/1.1 client has no way to send them — and response trailers likewise
//! come back from HTTP/2 clusters only. The response is read whole: `:status` first,
//! then the headers with lower-case names. [`HttpCallRequest::timeout`] bounds the whole
//! exchange ([`HttpCallFailure::Timeout`], as does the cluster's per-read timeout); no
//! connection or endpoint is `ConnectFailure`; anything that breaks after the request went
//! out, or a request Pingora cannot write (an invalid header), is `Reset`. A request that
//! fails on a pooled connection before any response arrived is retried once on another
//! connection when Pingora marks the error as safe to retry (the server closed a
//! keep-alive connection while the request was under way). A clean exchange returns the
//! connection to the pool.
//!
//! # gRPC
//!
//! gRPC always uses HTTP/2 with prior knowledge (h2c), whatever the cluster's `http2`
//! says: gRPC has no HTTP/1.1 mapping, so a cluster serving gRPC is h2c by definition and
//! needs no extra key. The request is `POST /{service}/{method}` with `content-type:
//! application/grpc`, `te: trailers`, `grpc-timeout` from the deadline, the initial
//! metadata as headers, and `:authority` set to the cluster name (Envoy's default for a
//! gRPC service) or to the `host:port`. Messages are framed with the 5-byte gRPC prefix,
//! uncompressed. The task reads and writes concurrently, so a server may answer before
//! the client half-closes. Inbound events follow Envoy's async gRPC client:
//!
//! - response headers → `InitialMetadata` (without `:status` and `content-type`); a
//!   trailers-only response gives an empty `InitialMetadata` and its headers become the
//!   trailing metadata;
//! - each complete message (reassembled across DATA frames) → `Message`;
//! - trailers → `TrailingMetadata` (without `grpc-status` and `grpc-message`);
//! - always last, `Close`: `grpc-status` and the percent-decoded `grpc-message`; 2
//!   UNKNOWN when the status is missing; a non-200 HTTP status maps per gRPC's
//!   HTTP-to-gRPC table; no connection or a stream broken before the response headers →
//!   14 UNAVAILABLE; a stream broken after them, or a malformed or compressed frame → 13
//!   INTERNAL; the deadline → 4 DEADLINE_EXCEEDED.
//!
//! `GrpcOutbound::Cancel` resets the HTTP/2 stream (`RST_STREAM CANCEL`) and ends the
//! task with `Close { status: 1, message: "cancelled" }`, which the host drops, since the
//! ABI delivers nothing after `proxy_grpc_cancel`; so does dropping the outbound sender
//! before half-closing, or dropping the inbound receiver at any time. Once half-closed,
//! a dropped sender is fine and further messages are ignored. The cluster's read timeout
//! does not apply to gRPC streams, which may idle as long as their deadline allows.
//!
//! The futures (the HTTP call and [`GrpcChannel::task`]) must be polled inside a tokio
//! runtime with I/O and time enabled: Pingora spawns its HTTP/2 connection drivers and
//! pool watchers on the current runtime.
//!
//! ```no_run
//! use wasmbridge_config::Config;
//! use wasmbridge_host::{HttpCallRequest, Upstreams};
//! use wasmbridge_pingora::Gateway;
//!
//! # async fn call() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = Gateway::build(Config::from_file("conf/gateway.yaml".as_ref())?)?;
//! let upstreams = gateway.upstreams().allowing_addresses(false);
//! let request = HttpCallRequest {
//!     headers: vec![
//!         (":method".into(), "GET".into()),
//!         (":path".into(), "/".into()),
//!         (":authority".into(), "backend".into()),
//!     ],
//!     ..HttpCallRequest::default()
//! };
//! let response = upstreams.http_call("backend", request)?.await;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::upstreams::peer::HttpPeer;
use tokio::sync::mpsc;
use wasmbridge_host::grpc::pairs;

use crate::balance::Endpoints;
use wasmbridge_host::{
    BoxFuture, GrpcChannel, GrpcRequest, HttpCallFailure, HttpCallRequest, HttpCallResponse,
    UnknownUpstream, Upstreams,
};

mod grpc;
mod http_call;

/// Connect timeout for `host:port` upstreams (the cluster default).
const ADDRESS_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Read timeout for `host:port` upstreams (the cluster default).
const ADDRESS_READ_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Concurrent callout streams per HTTP/2 connection (Pingora's default is 1, which would
/// open a connection per call).
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// The gateway's callout transports: cluster names (and, when allowed, `host:port`)
/// to Pingora connections. Cheap to clone; clones share the clusters and the connection
/// pool. Get one from [`crate::Gateway::upstreams`], or build one with
/// [`GatewayUpstreams::new`].
#[derive(Clone)]
pub struct GatewayUpstreams {
    shared: Arc<Shared>,
    allow_addresses: bool,
}

/// One cluster as the callouts see it: its endpoints' load balancer (shared with the
/// routes, health checks included) and its connection settings.
#[derive(Clone)]
pub struct UpstreamCluster {
    /// The cluster name, as upstream names refer to it.
    pub name: String,
    /// The cluster's endpoints and how to reach them.
    pub endpoints: Endpoints,
}

struct Shared {
    clusters: HashMap<String, UpstreamCluster>,
    connector: Connector,
}

/// Where one call goes, decided when the call is made.
#[derive(Clone)]
enum Target {
    Cluster(UpstreamCluster),
    Address { host: String, port: u16 },
}

/// The HTTP version a call needs from its peer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// What the cluster speaks.
    ClusterDefault,
    /// HTTP/2 with prior knowledge, whatever the cluster says (gRPC).
    Http2,
}

impl GatewayUpstreams {
    /// Callout transports for these clusters (a later cluster with the same name replaces
    /// an earlier one), with a connection pool of their own; `host:port` upstreams are
    /// refused until [`GatewayUpstreams::allowing_addresses`].
    pub fn new(clusters: impl IntoIterator<Item = UpstreamCluster>) -> GatewayUpstreams {
        GatewayUpstreams {
            shared: Arc::new(Shared {
                clusters: clusters.into_iter().map(|c| (c.name.clone(), c)).collect(),
                connector: Connector::new(None),
            }),
            allow_addresses: false,
        }
    }

    /// The same clusters and pool, accepting `host:port` / `ip:port` upstreams besides
    /// cluster names when `allow` is true (a plugin's `callouts.allow_host_port`).
    pub fn allowing_addresses(&self, allow: bool) -> GatewayUpstreams {
        GatewayUpstreams {
            shared: self.shared.clone(),
            allow_addresses: allow,
        }
    }

    /// Whether `host:port` upstreams are accepted.
    pub fn allows_addresses(&self) -> bool {
        self.allow_addresses
    }

    /// The cluster with this name, if any.
    pub fn cluster(&self, name: &str) -> Option<&UpstreamCluster> {
        self.shared.clusters.get(name)
    }

    fn target(&self, upstream: &str) -> Result<Target, UnknownUpstream> {
        if let Some(cluster) = self.shared.clusters.get(upstream) {
            return Ok(Target::Cluster(cluster.clone()));
        }
        if self.allow_addresses
            && let Some((host, port)) = parse_host_port(upstream)
        {
            return Ok(Target::Address { host, port });
        }
        Err(UnknownUpstream(upstream.to_string()))
    }
}

impl Upstreams for GatewayUpstreams {
    fn http_call(
        &self,
        upstream: &str,
        request: HttpCallRequest,
    ) -> Result<BoxFuture<Result<HttpCallResponse, HttpCallFailure>>, UnknownUpstream> {
        let target = self.target(upstream)?;
        Ok(Box::pin(http_call::run(
            self.shared.clone(),
            target,
            request,
        )))
    }

    fn grpc_stream(
        &self,
        upstream: &str,
        request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream> {
        let target = self.target(upstream)?;
        // Envoy's default `:authority` for a gRPC service is the cluster name; for an
        // address it is the address.
        let authority = upstream.to_string();
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let task = grpc::run(
            self.shared.clone(),
            target,
            authority,
            request,
            outbound_rx,
            inbound_tx,
        );
        Ok(GrpcChannel {
            outbound,
            inbound,
            task: Box::pin(task),
        })
    }
}

impl std::fmt::Debug for GatewayUpstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.shared.clusters.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("GatewayUpstreams")
            .field("clusters", &names)
            .field("allow_addresses", &self.allow_addresses)
            .finish()
    }
}

impl std::fmt::Debug for UpstreamCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCluster")
            .field("name", &self.name)
            .field("http2", &self.endpoints.config.http2)
            .field("tls", &self.endpoints.config.tls.is_some())
            .field("connect_timeout", &self.endpoints.config.connect_timeout)
            .field("read_timeout", &self.endpoints.config.read_timeout)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The peer for one connection attempt: the next healthy endpoint of the cluster, or
    /// the resolved address. The error says why there is none.
    async fn peer(&self, protocol: Protocol) -> Result<HttpPeer, String> {
        let mut peer = match self {
            Target::Cluster(cluster) => {
                let addr = cluster
                    .endpoints
                    .balancer
                    .select(b"", |_| false)
                    .ok_or_else(|| {
                        format!("no endpoint of cluster `{}` is available", cluster.name)
                    })?;
                cluster.endpoints.peer(addr)
            }
            Target::Address { host, port } => {
                let addr = resolve(host, *port).await?;
                let mut peer = HttpPeer::new(addr, false, String::new());
                peer.options.connection_timeout = Some(ADDRESS_CONNECT_TIMEOUT);
                peer.options.read_timeout = Some(ADDRESS_READ_TIMEOUT);
                peer
            }
        };
        if protocol == Protocol::Http2 {
            // gRPC: HTTP/2 whatever the cluster says (with prior knowledge in cleartext).
            peer.options.set_http_version(2, 2);
        }
        if peer.options.alpn.get_max_http_version() == 2 {
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        Ok(peer)
    }
}

/// The first address `host` resolves to (an IP address resolves to itself).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` resolves to no address"))
}

/// `host:port` or `ip:port` (IPv6 in brackets), port in 1..=65535; `None` for anything
/// else. Host names are letters, digits, `-`, `_` and `.`.
fn parse_host_port(upstream: &str) -> Option<(String, u16)> {
    if let Ok(addr) = upstream.parse::<SocketAddr>() {
        return (addr.port() != 0).then(|| (addr.ip().to_string(), addr.port()));
    }
    let (host, port) = upstream.rsplit_once(':')?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0 && !port.starts_with('+'))?;
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("127.0.0.1:80"),
            Some(("127.0.0.1".into(), 80))
        );
        assert_eq!(parse_host_port("[::1]:9000"), Some(("::1".into(), 9000)));
        assert_eq!(
            parse_host_port("auth.internal:8443"),
            Some(("auth.internal".into(), 8443))
        );
        assert_eq!(parse_host_port("my_host:1"), Some(("my_host".into(), 1)));
        for bad in [
            "",
            "backend",
            "backend:",
            ":80",
            "backend:0",
            "backend:65536",
            "backend:+80",
            "::1:9000",
            "http://backend:80",
            "back end:80",
            "a..b:80",
            "outbound|80||svc.ns.svc.cluster.local",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad}");
        }
    }
}
