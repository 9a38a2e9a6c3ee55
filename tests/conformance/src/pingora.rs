//! The `pingora` target: the `wasmbridge` gateway binary between a real HTTP client and a
//! recording upstream, all on loopback.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_yaml::{Mapping, Value};
use wasmbridge_e2e::{
    Gateway, Proto, Reply, chunked, free_port, full, header_pairs, scratch, send, with_trailers,
};

use crate::upstream::Recording;
use crate::{Case, Observation, Outcome, Target};

/// How long a client waits for a case that expects no answer.
const STALL: Duration = Duration::from_secs(2);
/// How long a client waits for an answer before calling it stalled.
const PATIENCE: Duration = Duration::from_secs(15);

/// Runs cases through the gateway process.
pub struct Pingora;

impl Target for Pingora {
    fn name(&self) -> &'static str {
        "pingora"
    }

    fn run(&self, case: &Case) -> Result<Observation> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(case))
    }
}

async fn run(case: &Case) -> Result<Observation> {
    let upstream = Recording::start(case.upstream.clone()).await?;
    let dir = scratch(&format!("conformance-{}", case.id.replace('/', "-")));
    let listen = format!("127.0.0.1:{}", free_port()).parse()?;
    let admin = format!("127.0.0.1:{}", free_port()).parse()?;
    let config = config(case, &dir, listen, admin, upstream.addr)?;
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, serde_yaml::to_string(&config)?)?;
    let gateway = Gateway::spawn(&file, listen, admin, &dir).await?;

    let (outcome, reply) = exchange(case, listen).await?;
    if outcome != Outcome::Stalled {
        gateway.wait_for_stream_end().await;
    }
    Ok(observation(
        outcome,
        reply,
        upstream.first(),
        guest_logs(&gateway.log_text()),
    ))
}

/// Sends the case's request to a proxy listening at `listen` and reads the answer: over
/// h2c when the case asks for HTTP/2 or has trailers (Pingora 0.9 passes trailers only
/// between HTTP/2 peers), else HTTP/1.1.
pub(crate) async fn exchange(
    case: &Case,
    listen: std::net::SocketAddr,
) -> Result<(Outcome, Option<Reply>)> {
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
    let request = request(case, proto)?;
    let answer = tokio::time::timeout(wait, send(listen, proto, request)).await;
    Ok(match answer {
        Err(_) => (Outcome::Stalled, None),
        Ok(Err(_)) => (Outcome::Reset, None),
        Ok(Ok(reply)) => (Outcome::Response, Some(reply)),
    })
}

/// What a target observed: the exchange, the upstream's first request and the guest logs.
pub(crate) fn observation(
    outcome: Outcome,
    reply: Option<Reply>,
    upstream: Option<crate::Seen>,
    logs: Vec<String>,
) -> Observation {
    let (status, headers, body, trailers) = match reply {
        Some(r) => (
            r.status.as_u16(),
            header_pairs(&r.headers),
            r.body.to_vec(),
            r.trailers.as_ref().map(header_pairs).unwrap_or_default(),
        ),
        None => (0, Vec::new(), Vec::new(), Vec::new()),
    };
    Observation {
        outcome,
        status,
        headers,
        body,
        trailers,
        upstream,
        logs,
    }
}

/// The gateway configuration for a case: one route to the recording upstream with the
/// case's plugin chain; an h2c cluster when the case has trailers. The `envoy` target
/// translates the same configuration, and the `tower` target serves it.
pub(crate) fn config(
    case: &Case,
    dir: &std::path::Path,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
) -> Result<Value> {
    let mut plugins = Vec::new();
    let mut names = Vec::new();
    for (i, p) in case.plugins.iter().enumerate() {
        let name = p.name(i);
        let module = match &p.filter {
            Some(f) => wasmbridge_e2e::find_filter(f)?,
            None => {
                let (_, bytes) = p.module_bytes()?;
                let path = dir.join(format!("{name}.wasm"));
                std::fs::write(&path, bytes)?;
                path
            }
        };
        let mut m = Mapping::new();
        m.insert("name".into(), name.clone().into());
        m.insert("module".into(), module.display().to_string().into());
        if let Some(root_id) = &p.root_id {
            m.insert("root_id".into(), root_id.clone().into());
        }
        if let Some(vm_id) = &p.vm_id {
            m.insert("vm_id".into(), vm_id.clone().into());
        }
        m.insert("configuration".into(), p.configuration().into());
        m.insert("vm_configuration".into(), p.vm_configuration().into());
        if let Some(policy) = &p.failure_policy {
            m.insert("failure_policy".into(), policy.clone().into());
        }
        plugins.push(Value::Mapping(m));
        names.push(name);
    }
    let yaml = format!(
        "server: {{threads: 1, grace_period_seconds: 0}}\n\
         listeners: [{{address: \"{listen}\", http2: true}}]\n\
         admin: {{address: \"{admin}\"}}\n\
         clusters: [{{name: upstream, endpoints: [\"{upstream}\"], http2: {http2}}}]\n",
        http2 = case.has_trailers(),
    );
    let mut config: Value = serde_yaml::from_str(&yaml)?;
    config["plugins"] = Value::Sequence(plugins);
    config["routes"] = Value::Sequence(case.gateway_routes(&names)?);
    if let Some(node) = &case.node {
        config["node"] = node.clone();
    }
    Ok(config)
}

pub(crate) fn request(
    case: &Case,
    proto: Proto,
) -> Result<http::Request<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>> {
    let r = &case.request;
    let host = r
        .headers
        .0
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "localhost".into());
    let uri = match proto {
        Proto::H1 => r.path.clone(),
        Proto::H2c => format!("http://{host}{}", r.path),
    };
    let mut b = http::Request::builder().method(r.method.as_str()).uri(uri);
    if proto == Proto::H1 {
        b = b.header("host", host);
    }
    for (k, v) in r
        .headers
        .0
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = match (&r.chunks, r.body_chunks()) {
        (_, chunks) if !r.trailers.0.is_empty() => {
            let parts: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
            with_trailers(&parts, &r.trailers.0)?
        }
        (Some(_), chunks) => {
            let parts: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
            chunked(&parts)
        }
        (None, chunks) => full(Bytes::from(chunks.concat())),
    };
    b.body(body).context("building the request")
}

/// The guest log messages in a gateway log: the text of every `wasm` event.
pub fn guest_logs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let start = line.find(" wasm: ")? + " wasm: ".len();
            let rest = &line[start..];
            let end = rest.rfind(" plugin=").unwrap_or(rest.len());
            Some(rest[..end].to_string())
        })
        .collect()
}
