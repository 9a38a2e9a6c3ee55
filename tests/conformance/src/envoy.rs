//! The `envoy` target: the reference. A case becomes the same gateway configuration the
//! `pingora` target serves, `wasmbridge_config::envoy_bootstrap` translates it, and a real
//! Envoy (`make envoy`, or `$ENVOY_BIN`) runs it between the same client and recording
//! upstream. What Envoy does differently from a case's expectations is listed under
//! `envoy:` in `known_failures.yaml`, with the reason.

use anyhow::{Context, Result, anyhow};
use serde_yaml::Value;
use wasmbridge_e2e::{
    Envoy as EnvoyProcess, Proto, envoy_binary, envoy_guest_logs, free_port, get, scratch, send,
};

use crate::pingora::{config, exchange, observation};
use crate::upstream::Recording;
use crate::{Case, Observation, Outcome, Target};

/// A route ahead of the case's, with no plugins: once Envoy's only worker answers it, the
/// case's stream (served by the same worker before it) has run `on_log`, `on_done` and
/// `on_delete` and logged them.
const SYNC_PATH: &str = "/wasmbridge-conformance-sync";

/// Runs cases through Envoy.
pub struct Envoy;

impl Target for Envoy {
    fn name(&self) -> &'static str {
        "envoy"
    }

    fn run(&self, case: &Case) -> Result<Observation> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(case))
    }

    fn unavailable(&self) -> Option<String> {
        match envoy_binary() {
            Ok(Ok(_)) => None,
            Ok(Err(reason)) => Some(reason),
            // A wrong ENVOY_BIN fails every trial instead of skipping them.
            Err(_) => None,
        }
    }
}

async fn run(case: &Case) -> Result<Observation> {
    let bin = envoy_binary()?.map_err(|reason| anyhow!(reason))?;
    let upstream = Recording::start(case.upstream.clone()).await?;
    let dir = scratch(&format!("conformance-envoy-{}", case.id.replace('/', "-")));
    let listen = format!("127.0.0.1:{}", free_port()).parse()?;
    let admin = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut gateway = config(case, &dir, listen, admin, upstream.addr)?;
    if let Some(Value::Sequence(routes)) = gateway.get_mut("routes") {
        let sync = serde_yaml::from_str(&format!(
            "{{name: conformance_sync, match: {{path: {SYNC_PATH}}}, direct_response: {{status: 200}}}}"
        ))?;
        routes.insert(0, sync);
    }
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, serde_yaml::to_string(&gateway)?)?;
    let parsed = wasmbridge_config::Config::from_file(&file)
        .map_err(|e| anyhow!("{e}"))
        .context("the case's gateway configuration")?;
    let envoy = wasmbridge_config::envoy_bootstrap(&parsed);
    let bootstrap = dir.join("envoy.yaml");
    std::fs::write(&bootstrap, envoy.to_yaml())?;
    let proxy = EnvoyProcess::spawn(&bin, &bootstrap, listen, admin, &dir).await?;

    let (outcome, reply) = exchange(case, listen).await?;
    if outcome != Outcome::Stalled {
        sync(listen).await;
    }
    Ok(observation(
        outcome,
        reply,
        upstream.first(),
        envoy_guest_logs(&proxy.log_text()),
    ))
}

/// Waits until Envoy's worker has finished the case's stream (see [`SYNC_PATH`]).
async fn sync(listen: std::net::SocketAddr) {
    let _ = send(listen, Proto::H1, get(SYNC_PATH, &[("host", "sync")])).await;
}
