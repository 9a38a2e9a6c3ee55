//! The `tower` target: the case through `wasmbridge-tower`'s gateway (the same YAML as the
//! `pingora` target's, with the same upstream cluster and routes), served in-process on
//! loopback between a real HTTP client and the recording upstream. Everything runs on one
//! current-thread runtime inside a log capture, so the guest's log lines are the case's.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use wasmbridge_e2e::{Proto, free_port, header_pairs, scratch, send};
use wasmbridge_testkit::capture_logs;
use wasmbridge_tower::Gateway;

use crate::pingora::{config, request};
use crate::upstream::Recording;
use crate::{Case, Observation, Outcome, Target};

/// How long a client waits for a case that expects no answer.
const STALL: Duration = Duration::from_secs(2);
/// How long a client waits for an answer before calling it stalled.
const PATIENCE: Duration = Duration::from_secs(15);

/// Runs cases through the tower adapter in-process.
pub struct Tower;

impl Target for Tower {
    fn name(&self) -> &'static str {
        "tower"
    }

    fn run(&self, case: &Case) -> Result<Observation> {
        let (result, logs) = capture_logs(|| -> Result<Observation> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(run(case))
        });
        let mut seen = result?;
        seen.logs = logs.into_iter().map(|l| l.message).collect();
        Ok(seen)
    }
}

async fn run(case: &Case) -> Result<Observation> {
    let upstream = Recording::start(case.upstream.clone()).await?;
    let dir = scratch(&format!("conformance-tower-{}", case.id.replace('/', "-")));
    let listen = format!("127.0.0.1:{}", free_port()).parse()?;
    let admin = format!("127.0.0.1:{}", free_port()).parse()?;
    let yaml = config(case, &dir, listen, admin, upstream.addr)?;
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, serde_yaml::to_string(&yaml)?)?;
    let config = wasmbridge_config::Config::from_file(&file)?;
    let gateway = Gateway::build(config).context("building the tower gateway")?;
    let layer = gateway.layer();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(gateway.serve_on(vec![listener], None));

    // The same protocols as the pingora target: HTTP/2 where the case has trailers.
    let proto = if case.request.http2 || case.has_trailers() {
        Proto::H2c
    } else {
        Proto::H1
    };
    let wait = if case.expect.outcome == Some(Outcome::Stalled) {
        STALL
    } else {
        PATIENCE
    };
    let answer = tokio::time::timeout(wait, send(addr, proto, request(case, proto)?)).await;
    let (outcome, reply) = match answer {
        Err(_) => (Outcome::Stalled, None),
        Ok(Err(_)) => (Outcome::Reset, None),
        Ok(Ok(reply)) => (Outcome::Response, Some(reply)),
    };
    if outcome != Outcome::Stalled {
        // Every on_log, on_done and on_delete ran once no stream is open.
        let deadline = Instant::now() + Duration::from_secs(10);
        while layer.open_streams() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    server.abort();
    let (status, headers, body, trailers) = match reply {
        Some(r) => (
            r.status.as_u16(),
            header_pairs(&r.headers),
            r.body.to_vec(),
            r.trailers.as_ref().map(header_pairs).unwrap_or_default(),
        ),
        None => (0, Vec::new(), Vec::new(), Vec::new()),
    };
    Ok(Observation {
        outcome,
        status,
        headers,
        body,
        trailers,
        upstream: upstream.first(),
        logs: Vec::new(),
    })
}
