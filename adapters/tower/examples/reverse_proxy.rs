//! A small reverse proxy on hyper, configured with a wasmbridge YAML file (listeners,
//! clusters, plugins, routes — the same file the Pingora gateway reads): a hyper server
//! accepts connections, `WasmLayer` runs each route's plugins, and `ProxyService` forwards
//! to the route's cluster with a hyper-util client. The `wasmbridge-tower` binary is this
//! example with an admin listener.
//!
//! ```text
//! cd filters && CARGO_TARGET_DIR=target cargo build --release && cd ..
//! cargo run -p wasmbridge-tower --example reverse_proxy -- conf/gateway.yaml
//! curl -i http://127.0.0.1:8080/
//! ```

use tokio::net::TcpListener;
use tower_layer::Layer;
use wasmbridge_config::Config;
use wasmbridge_tower::{Gateway, ProxyService, serve_listener, start_root_drivers};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "conf/gateway.yaml".to_string());
    let config = Config::from_file(path.as_ref())?;
    let addresses: Vec<_> = config.listeners.iter().map(|l| l.address).collect();
    // Plugins (sharing VMs where Envoy would), routes and their chains, callouts to the
    // clusters.
    let gateway = Gateway::build(config)?;
    start_root_drivers(gateway.plugins());
    // The layer over the proxy client: any tower service could stand in for ProxyService.
    let service = gateway.layer().layer(ProxyService::new(gateway.clusters()));
    let mut servers = tokio::task::JoinSet::new();
    for address in addresses {
        let listener = TcpListener::bind(address).await?;
        println!("proxying on http://{address}");
        servers.spawn(serve_listener(listener, service.clone()));
    }
    while servers.join_next().await.is_some() {}
    Ok(())
}
