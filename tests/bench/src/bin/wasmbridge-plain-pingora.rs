//! Plain Pingora, no wasm: the load benchmark's baseline. A reverse proxy that sends every
//! request to one upstream address, built as the wasmbridge gateway builds its listeners
//! (`work_stealing: false`, h2c beside HTTP/1.1, the same connect and read timeouts as a
//! wasmbridge cluster's defaults), with nothing between the phases.
//!
//! ```sh
//! wasmbridge-plain-pingora --listen 127.0.0.1:8080 --upstream 127.0.0.1:8000 --threads 2
//! curl -i http://127.0.0.1:8080/
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// Plain Pingora reverse proxy to one upstream (the load benchmark's baseline).
#[derive(Debug, Parser)]
#[command(name = "wasmbridge-plain-pingora")]
struct Args {
    /// Where to listen (HTTP/1.1 and h2c).
    #[arg(long)]
    listen: SocketAddr,
    /// Where every request goes (HTTP/1.1).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads (one single-threaded runtime each, as wasmbridge runs them).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Sends everything to one address.
struct PlainProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for PlainProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        // wasmbridge's cluster defaults (`connect_timeout_ms`, `read_timeout_ms`).
        peer.options.connection_timeout = Some(Duration::from_millis(1000));
        peer.options.read_timeout = Some(Duration::from_millis(30_000));
        Ok(Box::new(peer))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads.max(1),
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2c = true;
    let mut service = pingora::proxy::ProxyServiceBuilder::new(
        &conf,
        PlainProxy {
            upstream: args.upstream,
        },
    )
    .name("plain-pingora")
    .server_options(options)
    .build();
    service.add_tcp(&args.listen.to_string());
    server.add_service(service);
    server.run_forever()
}
