//! `wasmbridge-tower run -c CONFIG`: the wasmbridge gateway on tower and hyper (the same
//! YAML as `wasmbridge run`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wasmbridge_config::Config;
use wasmbridge_tower::Gateway;

#[derive(Parser)]
#[command(
    name = "wasmbridge-tower",
    version,
    about = "Proxy-Wasm filters in a tower/hyper reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the configuration: listeners, clusters, plugins, routes, admin.
    Run {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Worker threads (default: the config's `server.threads`).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run { config, threads } => {
            let config = Config::from_file(&config)?;
            let threads = threads.unwrap_or(config.server.threads).max(1);
            let gateway = Gateway::build(config)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .context("starting the tokio runtime")?
                .block_on(gateway.serve())?;
            Ok(())
        }
    }
}
