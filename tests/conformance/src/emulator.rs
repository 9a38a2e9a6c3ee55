//! The `emulator` target: the case's plugins in-process through `wasmbridge-testkit`.

use anyhow::{Result, anyhow};
use bytes::Bytes;
use wasmbridge_host::FailurePolicy;
use wasmbridge_testkit::{
    Emulator as Testkit, End, Module, PluginSource, Request, UpstreamReply, capture_logs,
};

use crate::{Case, Observation, Outcome, Seen, Target};

/// Runs cases in-process.
pub struct Emulator;

impl Target for Emulator {
    fn name(&self) -> &'static str {
        "emulator"
    }

    fn run(&self, case: &Case) -> Result<Observation> {
        let mut sources = Vec::new();
        for (i, p) in case.plugins.iter().enumerate() {
            let (label, bytes) = p.module_bytes()?;
            sources.push(PluginSource {
                name: p.name(i),
                module: Module::Bytes { label, bytes },
                root_id: p.root_id.clone().unwrap_or_default(),
                vm_id: String::new(),
                configuration: Bytes::from(p.configuration()),
                vm_configuration: Bytes::from(p.vm_configuration()),
                failure_policy: policy(p.failure_policy.as_deref())?,
            });
        }
        let (result, logs) = capture_logs(|| -> Result<_> {
            let emu = Testkit::chain_of(sources).map_err(|e| anyhow!("{e}"))?;
            Ok(emu.exchange(request(case), reply(case)))
        });
        let ex = result?;
        let outcome = match ex.end {
            End::Response => Outcome::Response,
            End::Reset => Outcome::Reset,
            End::Stalled => Outcome::Stalled,
        };
        let upstream = ex.upstream.map(|up| {
            let get = |name: &str| {
                up.headers
                    .get(name.as_bytes())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            // A proxy sends `:authority` as the Host header on HTTP/1.1.
            let mut headers = plain(&up.headers);
            headers.insert(0, ("host".to_string(), get(":authority")));
            Seen {
                method: get(":method"),
                path: get(":path"),
                headers,
                body: up.body.to_vec(),
            }
        });
        Ok(Observation {
            outcome,
            status: ex.status,
            headers: plain(&ex.response_headers),
            body: ex.response_body.to_vec(),
            upstream,
            logs: logs.into_iter().map(|l| l.message).collect(),
        })
    }
}

/// Parses a failure policy name.
pub fn policy(name: Option<&str>) -> Result<FailurePolicy> {
    Ok(match name {
        None | Some("fail_closed") => FailurePolicy::FailClosed,
        Some("fail_open") => FailurePolicy::FailOpen,
        Some("fail_reload") => FailurePolicy::FailReload,
        Some(other) => return Err(anyhow!("unknown failure_policy {other}")),
    })
}

fn request(case: &Case) -> Request {
    let r = &case.request;
    let mut req = Request::new(&r.method, &r.path);
    for (k, v) in &r.headers.0 {
        req = req.header(k, v);
    }
    let chunks = r.body_chunks();
    if r.chunks.is_some() {
        // Sent without a length, as a client streaming a body would.
        req = req.header("transfer-encoding", "chunked");
    }
    req.chunks(chunks.into_iter().map(Bytes::from).collect())
}

fn reply(case: &Case) -> UpstreamReply {
    let u = &case.upstream;
    UpstreamReply {
        status: u.status,
        headers: u.headers.0.clone(),
        chunks: if u.body.is_empty() {
            Vec::new()
        } else {
            vec![Bytes::from(u.body.clone())]
        },
    }
}

/// Header pairs without pseudo-headers.
fn plain(headers: &wasmbridge_host::HeaderList) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !k.starts_with(b":"))
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}
