//! Root-context services: the tick timer, shared queues, HTTP and gRPC callouts and
//! `proxy_get_status`. Each hostcall only records or posts; the replica's root driver
//! makes the callbacks later (reference §6.3, §6.4, §11).
//!
//! A plugin whose `capabilities.clusters` is set may call only those clusters: a callout to
//! any other is refused with INTERNAL_FAILURE before the name is looked up, so the status
//! does not tell whether the cluster exists.
//!
//! Each context (a stream's, or the root's) may have `plugins[].limits.callouts` HTTP and
//! gRPC callouts in flight; one more is refused with INTERNAL_FAILURE, the status Envoy
//! gives a call it could not send, which every SDK returns to the filter as an error.

use std::time::Duration;

use bytes::Bytes;
use wasmbridge_abi::{Status, deserialize_pairs};
use wasmtime::Caller;

use super::{HResult, Registrar, read_bytes, return_bytes, status, write_u32};
use crate::callout::{
    GrpcInbound, GrpcOutbound, GrpcRequest, HttpCallFailure, HttpCallRequest, Pairs,
};
use crate::context::HostState;
use crate::limits::Cap;
use crate::metrics::{CalloutKind, grpc_outcome};
use crate::policy::{CLUSTERS, refuse};
use crate::root::{Outstanding, QueueOwner, RootEvent};

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env(
        "proxy_set_tick_period_milliseconds",
        set_tick_period_milliseconds,
    )?;
    reg.env("proxy_register_shared_queue", register_shared_queue)?;
    reg.env("proxy_resolve_shared_queue", resolve_shared_queue)?;
    reg.env("proxy_enqueue_shared_queue", enqueue_shared_queue)?;
    reg.env("proxy_dequeue_shared_queue", dequeue_shared_queue)?;
    reg.env("proxy_http_call", http_call)?;
    reg.env("proxy_grpc_call", grpc_call)?;
    reg.env("proxy_grpc_stream", grpc_stream)?;
    reg.env("proxy_grpc_send", grpc_send)?;
    reg.env("proxy_grpc_cancel", grpc_cancel)?;
    reg.env("proxy_grpc_close", grpc_close)?;
    reg.env("proxy_get_status", get_status)?;
    Ok(())
}

/// Token kinds in the low two bits, as Envoy numbers them.
const HTTP: u32 = 0;
/// The `cluster` label of a callout to a cluster the gateway does not have (the name the
/// guest gave is not a label: it could be anything).
const UNKNOWN_CLUSTER: &str = "(unknown)";
/// The `cluster` label of a callout refused before it started (the name is in the log).
const REFUSED_CLUSTER: &str = "(refused)";
const GRPC_CALL: u32 = 1;
const GRPC_STREAM: u32 = 2;

/// `proxy_set_tick_period_milliseconds(period)` — all versions. Sets the tick of the
/// caller's root context (also when called from a stream); 0 stops it; a new period
/// restarts the timer. OK.
fn set_tick_period_milliseconds(caller: Caller<'_, HostState>, period: i32) -> i32 {
    let period = period as u32;
    let tick = (period > 0).then(|| Duration::from_millis(u64::from(period)));
    caller.data().root.set_tick(tick);
    Status::Ok.code() as i32
}

/// `proxy_register_shared_queue(name_ptr, name_size, ret_queue_id_ptr)` — all versions.
/// Creates or opens the queue (own vm_id, name); this VM's root context becomes the one
/// told of each enqueue (the last to register wins). OK with the id.
fn register_shared_queue(
    mut caller: Caller<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let name = read_bytes(&caller, name_ptr, name_len)?;
        let state = caller.data();
        let owner = QueueOwner {
            link: std::sync::Arc::downgrade(&state.root),
            generation: state.generation,
        };
        let id = state
            .plugin
            .queues
            .register(&state.plugin.vm_id, &name, owner);
        write_u32(&mut caller, ret_id, id)
    })
}

/// `proxy_resolve_shared_queue(vm_id_ptr, vm_id_size, name_ptr, name_size,
/// ret_queue_id_ptr)` — all versions. An empty vm_id means the caller's. OK with the id;
/// NOT_FOUND when nobody registered it.
fn resolve_shared_queue(
    mut caller: Caller<'_, HostState>,
    vm_id_ptr: i32,
    vm_id_len: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let vm_id = read_bytes(&caller, vm_id_ptr, vm_id_len)?;
        let name = read_bytes(&caller, name_ptr, name_len)?;
        let plugin = &caller.data().plugin;
        let vm_id = if vm_id.is_empty() {
            plugin.vm_id.clone()
        } else {
            String::from_utf8(vm_id).map_err(|_| Status::NotFound)?
        };
        let id = plugin
            .queues
            .resolve(&vm_id, &name)
            .ok_or(Status::NotFound)?;
        write_u32(&mut caller, ret_id, id)
    })
}

/// `proxy_enqueue_shared_queue(queue_id, value_ptr, value_size)` — all versions. Appends
/// and posts one `proxy_on_queue_ready` to the registered root. OK; NOT_FOUND for an
/// unknown id.
fn enqueue_shared_queue(
    caller: Caller<'_, HostState>,
    id: i32,
    value_ptr: i32,
    value_len: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let value = read_bytes(&caller, value_ptr, value_len)?;
        caller
            .data()
            .plugin
            .queues
            .enqueue(id as u32, Bytes::from(value))
            .map_err(|_| Status::NotFound.into())
    })
}

/// `proxy_dequeue_shared_queue(queue_id, ret_ptr_ptr, ret_size_ptr)` — all versions, from
/// any VM. OK with the oldest item; EMPTY; NOT_FOUND for an unknown id.
fn dequeue_shared_queue(
    mut caller: Caller<'_, HostState>,
    id: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let item = caller
            .data()
            .plugin
            .queues
            .dequeue(id as u32)
            .map_err(|_| Status::NotFound)?
            .ok_or(Status::Empty)?;
        return_bytes(&mut caller, &item, ret_ptr, ret_size)
    })
}

/// A serialized pair map from guest memory; a malformed one counts as empty, as Envoy's.
fn pairs(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> HResult<Pairs> {
    let raw = read_bytes(caller, ptr, len)?;
    Ok(deserialize_pairs(&raw)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
        .collect())
}

/// A timeout argument: 0 waits forever; negative is BAD_ARGUMENT.
fn timeout(ms: i32) -> HResult<Option<Duration>> {
    match ms {
        ..0 => Err(Status::BadArgument.into()),
        0 => Ok(None),
        ms => Ok(Some(Duration::from_millis(ms as u64))),
    }
}

/// Refuses a callout to a cluster the plugin's `capabilities.clusters` does not list.
fn check_cluster(state: &HostState, hostcall: &str, cluster: &str, kind: CalloutKind) -> HResult {
    if state.plugin.policy.allows_cluster(cluster) {
        return Ok(());
    }
    state.plugin.count_callout(REFUSED_CLUSTER, kind, "denied");
    refuse(
        state,
        CLUSTERS,
        format_args!(
            "{hostcall} to cluster {cluster:?}, which capabilities.clusters does not list"
        ),
    );
    Err(Status::InternalFailure.into())
}

/// The next token of `kind`.
fn token(state: &mut HostState, kind: u32) -> u32 {
    let base = state.next_token;
    state.next_token = state.next_token.wrapping_add(4).max(4);
    base | kind
}

/// OK when the effective context may start one more callout; INTERNAL_FAILURE (counted
/// and logged) when it has `limits.callouts` in flight already.
fn within_cap(state: &HostState, hostcall: &str, kind: CalloutKind) -> HResult {
    let context = state.call.effective_context_id;
    let in_flight = state.callouts.of_context(context);
    if in_flight < state.plugin.limits.callouts {
        return Ok(());
    }
    state
        .plugin
        .count_callout(REFUSED_CLUSTER, kind, "limit_exceeded");
    state.plugin.cap_reached(
        Cap::Callouts,
        context,
        state.call.callback,
        format_args!(
            "{hostcall} refused with INTERNAL_FAILURE: the context has {in_flight} callouts in flight"
        ),
    );
    Err(Status::InternalFailure.into())
}

/// `proxy_http_call(upstream_ptr, upstream_size, headers_ptr, headers_size, body_ptr,
/// body_size, trailers_ptr, trailers_size, timeout_ms, ret_token_ptr)` — all versions.
/// Sends a request to a named upstream (a cluster); the answer comes to
/// `proxy_on_http_call_response` on this VM's root. OK with the token; BAD_ARGUMENT for an
/// unknown upstream, a negative timeout, or a missing `:method`, `:path` or `:authority`;
/// INTERNAL_FAILURE for an upstream outside the plugin's `capabilities.clusters`.
/// INTERNAL_FAILURE when the calling context has `limits.callouts` in flight.
#[allow(clippy::too_many_arguments)]
fn http_call(
    mut caller: Caller<'_, HostState>,
    upstream_ptr: i32,
    upstream_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    body_ptr: i32,
    body_len: i32,
    trailers_ptr: i32,
    trailers_len: i32,
    timeout_ms: i32,
    ret_token: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let upstream = read_bytes(&caller, upstream_ptr, upstream_len)?;
        let headers = pairs(&caller, headers_ptr, headers_len)?;
        let body = read_bytes(&caller, body_ptr, body_len)?;
        let trailers = pairs(&caller, trailers_ptr, trailers_len)?;
        let timeout = timeout(timeout_ms)?;
        let upstream = String::from_utf8(upstream).map_err(|_| Status::BadArgument)?;
        for required in [&b":method"[..], b":path", b":authority"] {
            if !headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(required) && !v.is_empty())
            {
                return Err(Status::BadArgument.into());
            }
        }
        let state = caller.data_mut();
        check_cluster(state, "proxy_http_call", &upstream, CalloutKind::Http)?;
        within_cap(state, "proxy_http_call", CalloutKind::Http)?;
        let request = HttpCallRequest {
            headers,
            body: Bytes::from(body),
            trailers,
            timeout,
        };
        let call = match state.plugin.upstreams.http_call(&upstream, request) {
            Ok(call) => call,
            Err(unknown) => {
                tracing::warn!(plugin = %state.plugin.name, callback = state.call.callback, "proxy_http_call: {unknown}");
                state
                    .plugin
                    .count_callout(UNKNOWN_CLUSTER, CalloutKind::Http, "unknown_cluster");
                return Err(Status::BadArgument.into());
            }
        };
        let token = token(state, HTTP);
        let context = state.call.effective_context_id;
        state.callouts.insert(token, context, Outstanding::Http);
        let results = state.root.sender();
        let generation = state.generation;
        let plugin = state.plugin.clone();
        state.root.post(RootEvent::Spawn(Box::pin(async move {
            let result = match timeout {
                Some(limit) => tokio::time::timeout(limit, call)
                    .await
                    .unwrap_or(Err(HttpCallFailure::Timeout)),
                None => call.await,
            };
            let outcome = match &result {
                Ok(_) => "response",
                Err(HttpCallFailure::Timeout) => "timeout",
                Err(HttpCallFailure::ConnectFailure(_)) => "connect_failure",
                Err(HttpCallFailure::Reset(_)) => "reset",
            };
            plugin.count_callout(&upstream, CalloutKind::Http, outcome);
            results.send(RootEvent::Http {
                generation,
                token,
                result,
            });
        })));
        write_u32(&mut caller, ret_token, token)
    })
}

/// The cluster a gRPC `upstream` argument names: a serialized
/// `envoy.config.core.v3.GrpcService` with `envoy_grpc.cluster_name`, or else the bytes as
/// a cluster name.
fn grpc_cluster(upstream: &[u8]) -> Option<String> {
    if let Some(name) = grpc_service_cluster(upstream) {
        return Some(name);
    }
    std::str::from_utf8(upstream)
        .ok()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `GrpcService { envoy_grpc (1): EnvoyGrpc { cluster_name (1): string } }`, read from
/// protobuf wire bytes; `None` when the bytes are not that.
fn grpc_service_cluster(bytes: &[u8]) -> Option<String> {
    let envoy_grpc = wasmbridge_abi::proto::field(bytes, 1)?;
    let name = wasmbridge_abi::proto::field(envoy_grpc, 1)?;
    String::from_utf8(name.to_vec())
        .ok()
        .filter(|s| !s.is_empty())
}

/// Opens a gRPC stream (`message` given: a unary call) and returns its token.
fn open_grpc(
    caller: &mut Caller<'_, HostState>,
    upstream: &[u8],
    request: GrpcRequest,
    message: Option<Bytes>,
) -> HResult<u32> {
    let cluster = grpc_cluster(upstream).ok_or(Status::ParseFailure)?;
    let state = caller.data_mut();
    check_cluster(state, "gRPC callout", &cluster, CalloutKind::Grpc)?;
    let hostcall = if message.is_some() {
        "proxy_grpc_call"
    } else {
        "proxy_grpc_stream"
    };
    within_cap(state, hostcall, CalloutKind::Grpc)?;
    let channel = match state.plugin.upstreams.grpc_stream(&cluster, request) {
        Ok(channel) => channel,
        Err(unknown) => {
            tracing::warn!(plugin = %state.plugin.name, callback = state.call.callback, "gRPC callout: {unknown}");
            state
                .plugin
                .count_callout(UNKNOWN_CLUSTER, CalloutKind::Grpc, "unknown_cluster");
            return Err(Status::ParseFailure.into());
        }
    };
    let unary = message.is_some();
    if let Some(data) = message {
        let _ = channel.outbound.send(GrpcOutbound::Message {
            data,
            end_stream: true,
        });
    }
    let token = token(state, if unary { GRPC_CALL } else { GRPC_STREAM });
    let context = state.call.effective_context_id;
    state.callouts.insert(
        token,
        context,
        Outstanding::Grpc {
            outbound: channel.outbound,
            unary,
            held: None,
        },
    );
    let results = state.root.sender();
    let generation = state.generation;
    let plugin = state.plugin.clone();
    let mut inbound = channel.inbound;
    let transport = channel.task;
    state.root.post(RootEvent::Spawn(Box::pin(async move {
        let forward = async move {
            while let Some(event) = inbound.recv().await {
                if let GrpcInbound::Close { status, .. } = &event {
                    plugin.count_callout(&cluster, CalloutKind::Grpc, grpc_outcome(*status));
                }
                results.send(RootEvent::Grpc {
                    generation,
                    token,
                    event,
                });
            }
        };
        tokio::join!(transport, forward);
    })));
    Ok(token)
}

/// Reads the arguments `proxy_grpc_call` and `proxy_grpc_stream` share: the upstream, the
/// service and method names and the initial metadata, each a (pointer, size) pair.
fn grpc_target(
    caller: &Caller<'_, HostState>,
    [upstream, service, method, metadata]: [(i32, i32); 4],
) -> HResult<(Vec<u8>, GrpcRequest)> {
    let text = |(ptr, len)| -> HResult<String> {
        Ok(String::from_utf8_lossy(&read_bytes(caller, ptr, len)?).into_owned())
    };
    let request = GrpcRequest {
        service: text(service)?,
        method: text(method)?,
        initial_metadata: pairs(caller, metadata.0, metadata.1)?,
        timeout: None,
    };
    Ok((read_bytes(caller, upstream.0, upstream.1)?, request))
}

/// `proxy_grpc_call(upstream_ptr, upstream_size, service_ptr, service_size, method_ptr,
/// method_size, metadata_ptr, metadata_size, message_ptr, message_size, timeout_ms,
/// ret_token_ptr)` — all versions. A unary call: exactly one `proxy_on_grpc_receive` on
/// success, else one `proxy_on_grpc_close`. OK with the token; PARSE_FAILURE when the
/// upstream is neither a GrpcService nor a known cluster; BAD_ARGUMENT for a negative
/// timeout; INTERNAL_FAILURE for a cluster outside the plugin's `capabilities.clusters`.
/// timeout; INTERNAL_FAILURE when the calling context has `limits.callouts` in flight.
#[allow(clippy::too_many_arguments)]
fn grpc_call(
    mut caller: Caller<'_, HostState>,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    message_ptr: i32,
    message_len: i32,
    timeout_ms: i32,
    ret_token: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let (upstream, mut request) = grpc_target(
            &caller,
            [
                (upstream_ptr, upstream_len),
                (service_ptr, service_len),
                (method_ptr, method_len),
                (metadata_ptr, metadata_len),
            ],
        )?;
        request.timeout = timeout(timeout_ms)?;
        let message = Bytes::from(read_bytes(&caller, message_ptr, message_len)?);
        let token = open_grpc(&mut caller, &upstream, request, Some(message))?;
        write_u32(&mut caller, ret_token, token)
    })
}

/// `proxy_grpc_stream(upstream_ptr, upstream_size, service_ptr, service_size, method_ptr,
/// method_size, metadata_ptr, metadata_size, ret_token_ptr)` — all versions. Opens a
/// bidirectional stream: initial metadata, messages, trailing metadata and the close come
/// to the root. OK with the token; PARSE_FAILURE and INTERNAL_FAILURE as for
/// `proxy_grpc_call`.
#[allow(clippy::too_many_arguments)]
fn grpc_stream(
    mut caller: Caller<'_, HostState>,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    ret_token: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let (upstream, request) = grpc_target(
            &caller,
            [
                (upstream_ptr, upstream_len),
                (service_ptr, service_len),
                (method_ptr, method_len),
                (metadata_ptr, metadata_len),
            ],
        )?;
        let token = open_grpc(&mut caller, &upstream, request, None)?;
        write_u32(&mut caller, ret_token, token)
    })
}

/// `proxy_grpc_send(token, message_ptr, message_size, end_stream)` — all versions. Sends
/// one message on a stream. OK; BAD_ARGUMENT for a unary call's token; NOT_FOUND for an
/// unknown one.
fn grpc_send(
    caller: Caller<'_, HostState>,
    token: i32,
    message_ptr: i32,
    message_len: i32,
    end_stream: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let data = Bytes::from(read_bytes(&caller, message_ptr, message_len)?);
        match caller.data().callouts.get(&(token as u32)) {
            Some(Outstanding::Grpc {
                outbound,
                unary: false,
                ..
            }) => {
                let _ = outbound.send(GrpcOutbound::Message {
                    data,
                    end_stream: end_stream != 0,
                });
                Ok(())
            }
            Some(_) => Err(Status::BadArgument.into()),
            None => Err(Status::NotFound.into()),
        }
    })
}

/// Ends a gRPC call or stream from the plugin's side: a half-close of a stream (`cancel`
/// false) keeps the token for what is still to come; anything else resets and forgets it.
fn end_grpc(state: &mut HostState, token: i32, cancel: bool) -> HResult {
    let token = token as u32;
    let Some(Outstanding::Grpc {
        outbound, unary, ..
    }) = state.callouts.get(&token)
    else {
        return Err(match state.callouts.get(&token) {
            Some(Outstanding::Http) => Status::BadArgument.into(),
            _ => Status::NotFound.into(),
        });
    };
    if cancel || *unary {
        let _ = outbound.send(GrpcOutbound::Cancel);
        state.callouts.remove(&token);
    } else {
        let _ = outbound.send(GrpcOutbound::Close);
    }
    Ok(())
}

/// `proxy_grpc_cancel(token)` — all versions. Resets the call or stream; no callback
/// follows. OK; NOT_FOUND for an unknown token; BAD_ARGUMENT for an HTTP call's.
fn grpc_cancel(mut caller: Caller<'_, HostState>, token: i32) -> wasmtime::Result<i32> {
    status(|| end_grpc(caller.data_mut(), token, true))
}

/// `proxy_grpc_close(token)` — all versions. Half-closes a stream (its remaining
/// messages and the close still come); cancels a unary call. OK; NOT_FOUND for an
/// unknown token; BAD_ARGUMENT for an HTTP call's.
fn grpc_close(mut caller: Caller<'_, HostState>, token: i32) -> wasmtime::Result<i32> {
    status(|| end_grpc(caller.data_mut(), token, false))
}

/// `proxy_get_status(ret_code_ptr, ret_message_ptr_ptr, ret_message_size_ptr)` — all
/// versions. The status of the call being delivered: the gRPC status and message in
/// `proxy_on_grpc_close`, (BROKEN_CONNECTION 11, "reset") after an HTTP call was reset,
/// otherwise (0, ""). OK.
fn get_status(
    mut caller: Caller<'_, HostState>,
    ret_code: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let (code, message) = caller
            .data()
            .call
            .status
            .clone()
            .unwrap_or((0, Bytes::new()));
        write_u32(&mut caller, ret_code, code)?;
        return_bytes(&mut caller, &message, ret_ptr, ret_size)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_upstream_is_a_service_or_a_cluster_name() {
        // GrpcService { envoy_grpc { cluster_name: "auth", authority: "x" } }
        let service = [
            0x0a, 0x09, 0x0a, 0x04, b'a', b'u', b't', b'h', 0x12, 0x01, b'x',
        ];
        assert_eq!(grpc_cluster(&service).as_deref(), Some("auth"));
        assert_eq!(grpc_cluster(b"ratelimit").as_deref(), Some("ratelimit"));
        assert_eq!(grpc_cluster(b""), None);
        assert_eq!(grpc_cluster(&[0xff, 0xfe]), None);
    }

    #[test]
    fn timeouts_follow_envoy() {
        assert!(matches!(timeout(0), Ok(None)));
        assert!(matches!(timeout(250), Ok(Some(d)) if d == Duration::from_millis(250)));
        assert!(timeout(-1).is_err());
    }
}
