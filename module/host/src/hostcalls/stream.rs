//! Stream control and local replies: `proxy_continue_stream`, `proxy_close_stream`, the
//! 0.1.0 `proxy_continue_request`/`proxy_continue_response`/`proxy_clear_route_cache`, and
//! `proxy_send_local_response`. Each only records a deferred action for the effective
//! context; the stream acts on it after the callback returns.

use bytes::Bytes;
use wasmbridge_abi::{Status, StreamType, deserialize_pairs};
use wasmtime::Caller;

use super::{HResult, Registrar, read_bytes, return_bytes, status};
use crate::context::{Action, HostState, LocalReply};

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_continue_stream", continue_stream)?;
    reg.env("proxy_close_stream", close_stream)?;
    reg.env("proxy_continue_request", continue_request)?;
    reg.env("proxy_continue_response", continue_response)?;
    reg.env("proxy_clear_route_cache", clear_route_cache)?;
    reg.env("proxy_call_foreign_function", call_foreign_function)?;
    reg.env("proxy_send_local_response", send_local_response)?;
    Ok(())
}

/// `proxy_continue_stream(stream_type)` — 0.2.x. Resumes a paused stream after the
/// callback returns; harmless when not paused. OK; BAD_ARGUMENT for an unknown type;
/// UNIMPLEMENTED for UPSTREAM (as Envoy).
fn continue_stream(mut caller: Caller<'_, HostState>, ty: i32) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = StreamType::try_from(ty as u32)?;
        if ty == StreamType::Upstream {
            return Err(Status::Unimplemented.into());
        }
        caller.data_mut().defer(Action::Continue(ty));
        Ok(())
    })
}

/// `proxy_close_stream(stream_type)` — 0.2.x. Resets an HTTP stream after the callback
/// returns. OK; BAD_ARGUMENT for an unknown type.
fn close_stream(mut caller: Caller<'_, HostState>, ty: i32) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = StreamType::try_from(ty as u32)?;
        caller.data_mut().defer(Action::Close(ty));
        Ok(())
    })
}

/// `proxy_continue_request()` — 0.1.0. As `proxy_continue_stream(HTTP_REQUEST)`. OK.
fn continue_request(mut caller: Caller<'_, HostState>) -> i32 {
    caller
        .data_mut()
        .defer(Action::Continue(StreamType::HttpRequest));
    Status::Ok.code() as i32
}

/// `proxy_continue_response()` — 0.1.0. As `proxy_continue_stream(HTTP_RESPONSE)`. OK.
fn continue_response(mut caller: Caller<'_, HostState>) -> i32 {
    caller
        .data_mut()
        .defer(Action::Continue(StreamType::HttpResponse));
    Status::Ok.code() as i32
}

/// `proxy_clear_route_cache()` — 0.1.0. Asks for the route to be selected again from the
/// request headers once the request-header callbacks are done (the adapter does it anyway
/// when they changed a header). OK, also outside a stream, where there is nothing to do.
fn clear_route_cache(mut caller: Caller<'_, HostState>) -> i32 {
    clear_route_cache_of(caller.data_mut());
    Status::Ok.code() as i32
}

/// Marks the effective stream's route for re-selection; also the `clear_route_cache`
/// foreign function.
pub(super) fn clear_route_cache_of(state: &mut HostState) {
    if let Some(stream) = state.stream_mut() {
        stream.route_cache_cleared = true;
    }
}

/// `proxy_call_foreign_function(name_ptr, name_size, args_ptr, args_size, ret_ptr_ptr,
/// ret_size_ptr)` — all versions. The host's own functions act on the effective stream:
/// `clear_route_cache` (no arguments; OK) and `set_envoy_filter_state` (a
/// `SetEnvoyFilterStateArguments` message: `path` 1, `value` 2; the value becomes readable
/// as the property `filter_state.<path>`; OK, BAD_ARGUMENT for a malformed message or an
/// empty path, NOT_FOUND outside a stream). Then the proxy's registered functions, whose
/// result is returned when `ret_ptr_ptr` is not 0. Any other name: NOT_FOUND, as Envoy
/// answers for a function it does not register.
fn call_foreign_function(
    mut caller: Caller<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    args_ptr: i32,
    args_len: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let name = read_bytes(&caller, name_ptr, name_len)?;
        let args = read_bytes(&caller, args_ptr, args_len)?;
        match &name[..] {
            b"clear_route_cache" => {
                clear_route_cache_of(caller.data_mut());
                Ok(())
            }
            b"set_envoy_filter_state" => {
                let path = wasmbridge_abi::proto::field(&args, 1)
                    .filter(|p| !p.is_empty())
                    .ok_or(Status::BadArgument)?;
                let value = wasmbridge_abi::proto::field(&args, 2).unwrap_or_default();
                let (path, value) = (Bytes::copy_from_slice(path), Bytes::copy_from_slice(value));
                let stream = caller.data_mut().stream_mut().ok_or(Status::NotFound)?;
                stream.filter_state.insert(path, value);
                Ok(())
            }
            other => {
                let function = caller
                    .data()
                    .plugin
                    .foreign
                    .get(other)
                    .cloned()
                    .ok_or(Status::NotFound)?;
                let result = function(&args)?;
                if ret_ptr != 0 {
                    return_bytes(&mut caller, &result, ret_ptr, ret_size)?;
                }
                Ok(())
            }
        }
    })
}

/// `proxy_send_local_response(status, details, body, headers, grpc_status)` — all
/// versions. Replies instead of proxying, after the callback returns; the callback's
/// result is forced to stop. Malformed headers are dropped (as Envoy). OK;
/// INVALID_MEMORY_ACCESS; BAD_ARGUMENT for a status outside 100..=999.
#[allow(clippy::too_many_arguments)]
fn send_local_response(
    mut caller: Caller<'_, HostState>,
    status_code: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    grpc_status: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let status = u16::try_from(status_code)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or(Status::BadArgument)?;
        let details = read_bytes(&caller, details_ptr, details_len)?;
        let body = read_bytes(&caller, body_ptr, body_len)?;
        let raw_headers = read_bytes(&caller, headers_ptr, headers_len)?;
        let headers = deserialize_pairs(&raw_headers)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                (
                    Bytes::from(k.to_ascii_lowercase()),
                    Bytes::copy_from_slice(v),
                )
            })
            .collect();
        let details = String::from_utf8_lossy(&details).replace(' ', "_");
        caller.data_mut().defer(Action::LocalReply(LocalReply {
            status,
            details,
            body: Bytes::from(body),
            headers,
            grpc_status: u32::try_from(grpc_status).ok().filter(|s| *s <= 16),
        }));
        Ok(())
    })
}
