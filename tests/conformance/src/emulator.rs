//! The `emulator` target: the case's plugins in-process through `wasmbridge-testkit`.

use anyhow::{Result, anyhow};
use bytes::Bytes;
use std::sync::Arc;

use wasmbridge_config::{Config, RouteAction};
use wasmbridge_host::{
    BoxFuture, Callouts, FailurePolicy, GrpcChannel, GrpcInbound, GrpcOutbound, GrpcRequest,
    HeaderList, HttpCallFailure, HttpCallRequest, HttpCallResponse, LocalReply, NodeInfo,
    UnknownUpstream, Upstreams,
};
use wasmbridge_testkit::{
    Destination, Emulator as Testkit, End, Module, PluginSource, Request, Routing, UpstreamReply,
    capture_logs,
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
        let callouts = Callouts::new(CaseCluster(reply(case)));
        for (i, p) in case.plugins.iter().enumerate() {
            let (label, bytes) = p.module_bytes()?;
            sources.push(PluginSource {
                name: p.name(i),
                module: Module::Bytes { label, bytes },
                root_id: p.root_id.clone().unwrap_or_default(),
                vm_id: p.vm_id.clone().unwrap_or_default(),
                configuration: Bytes::from(p.configuration()),
                vm_configuration: Bytes::from(p.vm_configuration()),
                failure_policy: policy(p.failure_policy.as_deref())?,
                callouts: callouts.clone(),
                pool: Default::default(),
                log_only: false,
                limits: Default::default(),
            });
        }
        let config = case.routing_config()?;
        let node = Arc::new(NodeInfo {
            id: config.node.id.clone(),
            cluster: config.node.cluster.clone(),
            metadata: config.node.metadata.clone(),
        });
        let reply = reply(case);
        let router = |headers: &HeaderList| route(&config, headers, &reply);
        let (result, logs) = capture_logs(|| -> Result<_> {
            let emu = Testkit::chain_with_node(sources, node).map_err(|e| anyhow!("{e}"))?;
            Ok(emu.exchange_routed(request(case), &router))
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
                trailers: plain(&up.trailers),
            }
        });
        Ok(Observation {
            outcome,
            status: ex.status,
            headers: plain(&ex.response_headers),
            body: ex.response_body.to_vec(),
            trailers: plain(&ex.response_trailers),
            upstream,
            logs: logs.into_iter().map(|l| l.message).collect(),
        })
    }
}

/// Routes as the gateway does: the first route whose path and header conditions hold.
/// No route is the gateway's plain 404.
fn route(config: &Config, headers: &HeaderList, reply: &UpstreamReply) -> Routing {
    let path = headers
        .get(b":path")
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let lookup = |name: &str| headers.joined(name.as_bytes());
    let Some(route) = config.routes.iter().find(|r| r.matches(&path, &lookup)) else {
        return Routing {
            route: None,
            cluster: None,
            destination: Destination::Direct(LocalReply {
                status: 404,
                details: "route_not_found".into(),
                body: Bytes::from_static(b"no route\n"),
                headers: Vec::new(),
                grpc_status: None,
            }),
        };
    };
    let (cluster, destination) = match &route.action {
        RouteAction::Cluster(name) => (Some(name.clone()), Destination::Upstream(reply.clone())),
        RouteAction::DirectResponse(d) => (
            None,
            Destination::Direct(LocalReply::direct_response(
                d.status,
                Bytes::from(d.body.clone()),
                &d.headers,
            )),
        ),
    };
    Routing {
        route: Some(route.name.clone()),
        cluster,
        destination,
    }
}

/// Case header pairs as a peer sends them: names lower-cased, those in `skip` left out.
fn wire_pairs(pairs: &[(String, String)], skip: &[&str]) -> Vec<(Bytes, Bytes)> {
    pairs
        .iter()
        .filter(|(k, _)| !skip.iter().any(|s| k.eq_ignore_ascii_case(s)))
        .map(|(k, v)| (Bytes::from(k.to_ascii_lowercase()), Bytes::from(v.clone())))
        .collect()
}

/// The emulator's one cluster, `upstream`, for callouts: it answers every HTTP call with
/// the case's upstream reply, as the pingora target's recording upstream does. Other names
/// are unknown. A gRPC call or stream gets the reply read as a gRPC server's answer.
struct CaseCluster(UpstreamReply);

impl Upstreams for CaseCluster {
    fn http_call(
        &self,
        upstream: &str,
        _request: HttpCallRequest,
    ) -> Result<BoxFuture<Result<HttpCallResponse, HttpCallFailure>>, UnknownUpstream> {
        if upstream != "upstream" {
            return Err(UnknownUpstream(upstream.to_string()));
        }
        let reply = &self.0;
        let mut headers = vec![(
            Bytes::from_static(b":status"),
            Bytes::from(reply.status.to_string()),
        )];
        headers.extend(wire_pairs(&reply.headers, &[]));
        let response = HttpCallResponse {
            headers,
            body: reply.chunks.concat().into(),
            trailers: wire_pairs(&reply.trailers, &[]),
        };
        Ok(Box::pin(async move { Ok(response) }))
    }

    fn grpc_stream(
        &self,
        upstream: &str,
        _request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream> {
        if upstream != "upstream" {
            return Err(UnknownUpstream(upstream.to_string()));
        }
        // The reply as a gRPC server's answer: headers (without content-type), the body's
        // 5-byte-framed messages, trailers (without grpc-status and grpc-message), then
        // the close with the trailers' status.
        let reply = &self.0;
        let trailer = |name: &str| {
            reply
                .trailers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut events = vec![GrpcInbound::InitialMetadata(wire_pairs(
            &reply.headers,
            &["content-type"],
        ))];
        let body = reply.chunks.concat();
        let mut rest = &body[..];
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let Some(message) = rest.get(5..5 + len) else {
                break;
            };
            events.push(GrpcInbound::Message(Bytes::copy_from_slice(message)));
            rest = &rest[5 + len..];
        }
        events.push(GrpcInbound::TrailingMetadata(wire_pairs(
            &reply.trailers,
            &["grpc-status", "grpc-message"],
        )));
        events.push(GrpcInbound::Close {
            status: trailer("grpc-status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            message: trailer("grpc-message").unwrap_or_default(),
        });
        let (outbound, mut requests) = tokio::sync::mpsc::unbounded_channel();
        let (answers, inbound) = tokio::sync::mpsc::unbounded_channel();
        let task = Box::pin(async move {
            // Answer once the plugin half-closed (or the call was dropped).
            while let Some(message) = requests.recv().await {
                match message {
                    GrpcOutbound::Message {
                        end_stream: true, ..
                    }
                    | GrpcOutbound::Close => break,
                    GrpcOutbound::Cancel => return,
                    GrpcOutbound::Message { .. } => {}
                }
            }
            for event in events {
                let _ = answers.send(event);
            }
        });
        Ok(GrpcChannel {
            outbound,
            inbound,
            task,
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
    for (k, v) in &r.trailers.0 {
        req = req.trailer(k, v);
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
        trailers: u.trailers.0.clone(),
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
