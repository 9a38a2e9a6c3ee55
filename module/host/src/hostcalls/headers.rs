//! Header maps: the seven `proxy_*_header_map_*` hostcalls.
//!
//! Availability follows Envoy: request headers exist in `proxy_on_request_headers` (and are
//! gone once it continued), response headers in `proxy_on_response_headers`, the trailers
//! in `proxy_on_request_trailers` / `proxy_on_response_trailers`, and all four are
//! read-only in `proxy_on_log`. An unavailable map gives BAD_ARGUMENT to `get_value` and to
//! writes (NOT_FOUND in `proxy_on_log`), and OK with an empty map to `get_pairs`.
//!
//! `proxy_add_header_map_value`, `proxy_replace_header_map_value` and
//! `proxy_set_header_map_pairs` may not grow a map past `plugins[].limits.headers` (its
//! entries, or the summed length of its names and values): such a change is refused with
//! BAD_ARGUMENT, the map stays as it was, and the plugin's limit counter goes up. Envoy
//! applies its header limits only to what the codecs receive, so this is a host difference.
//!
//! Request headers the plugin's `redact.headers` names are filtered out of every read, as if
//! absent, and a write that names one is refused with INTERNAL_FAILURE
//! ([`crate::policy::refuse`]); `set_header_map_pairs` keeps them as they are.

use wasmbridge_abi::{
    AbiVersion, MapType, Status, deserialize_pairs, serialize_pairs_into, serialized_len,
};
use wasmtime::Caller;

use super::{
    HResult, Registrar, guest_bytes, read_bytes, return_bytes, return_filled, status, write_u32,
};
use crate::context::{HostState, Phase};
use crate::headers::{HeaderList, MapCaps, OverCap};
use crate::limits::Cap;
use crate::policy::{REDACTED_HEADERS, refuse};

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_get_header_map_pairs", get_header_map_pairs)?;
    reg.env("proxy_set_header_map_pairs", set_header_map_pairs)?;
    reg.env("proxy_get_header_map_value", get_header_map_value)?;
    reg.env("proxy_add_header_map_value", add_header_map_value)?;
    reg.env("proxy_replace_header_map_value", replace_header_map_value)?;
    reg.env("proxy_remove_header_map_value", remove_header_map_value)?;
    reg.env("proxy_get_header_map_size", get_header_map_size)?;
    Ok(())
}

#[derive(PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// Whether map `ty` exists in the running callback, and how it may be used.
fn access(state: &HostState, ty: MapType) -> Option<Access> {
    if let Some(d) = &state.call.delivery {
        // A callout's maps belong to the root callback that delivers it, whichever
        // context is effective (Envoy reads them from the root context).
        match (ty, d.grpc) {
            (MapType::HttpCallResponseHeaders | MapType::HttpCallResponseTrailers, false)
            | (MapType::GrpcReceiveInitialMetadata | MapType::GrpcReceiveTrailingMetadata, true) => {
                return Some(Access::ReadWrite);
            }
            _ => {}
        }
    }
    state.stream()?;
    match (ty, state.stream_phase()) {
        (MapType::HttpRequestHeaders, Phase::RequestHeaders)
        | (MapType::HttpResponseHeaders, Phase::ResponseHeaders)
        | (MapType::HttpRequestTrailers, Phase::RequestTrailers)
        | (MapType::HttpResponseTrailers, Phase::ResponseTrailers) => Some(Access::ReadWrite),
        (
            MapType::HttpRequestHeaders
            | MapType::HttpResponseHeaders
            | MapType::HttpRequestTrailers
            | MapType::HttpResponseTrailers,
            Phase::Log,
        ) => Some(Access::ReadOnly),
        _ => None,
    }
}

/// The status for a map that does not exist now.
fn unavailable(state: &HostState) -> Status {
    if state.stream_phase() == Phase::Log {
        Status::NotFound
    } else {
        Status::BadArgument
    }
}

fn map(state: &HostState, ty: MapType) -> Option<&HeaderList> {
    if let Some(d) = &state.call.delivery {
        match ty {
            MapType::HttpCallResponseHeaders | MapType::GrpcReceiveInitialMetadata => {
                return Some(&d.headers);
            }
            MapType::HttpCallResponseTrailers | MapType::GrpcReceiveTrailingMetadata => {
                return Some(&d.trailers);
            }
            _ => {}
        }
    }
    let stream = state.stream()?;
    Some(match ty {
        MapType::HttpRequestHeaders => &stream.request_headers,
        MapType::HttpResponseHeaders => &stream.response_headers,
        MapType::HttpRequestTrailers => &stream.request_trailers,
        MapType::HttpResponseTrailers => &stream.response_trailers,
        _ => return None,
    })
}

/// Whether entry `name` of map `ty` is redacted from the plugin: only request headers are.
fn hidden(state: &HostState, ty: MapType, name: &[u8]) -> bool {
    ty == MapType::HttpRequestHeaders && state.plugin.policy.header_hidden(name)
}

/// Checks that the plugin may write `names` in map `ty`: BAD_ARGUMENT when the map cannot
/// be written now, INTERNAL_FAILURE (a refusal) when a name is redacted.
fn may_write<'n>(
    state: &HostState,
    ty: MapType,
    mut names: impl Iterator<Item = &'n [u8]>,
) -> HResult {
    if access(state, ty) != Some(Access::ReadWrite) {
        return Err(Status::BadArgument.into());
    }
    if let Some(name) = names.find(|n| hidden(state, ty, n)) {
        refuse(
            state,
            REDACTED_HEADERS,
            format_args!(
                "a change of the redacted request header `{}`",
                String::from_utf8_lossy(name)
            ),
        );
        return Err(Status::InternalFailure.into());
    }
    Ok(())
}

/// The map to change, or the status explaining why it cannot be changed.
fn writable(state: &mut HostState, ty: MapType) -> HResult<&mut HeaderList> {
    if access(state, ty) != Some(Access::ReadWrite) {
        return Err(Status::BadArgument.into());
    }
    let callout = matches!(
        ty,
        MapType::HttpCallResponseHeaders
            | MapType::GrpcReceiveInitialMetadata
            | MapType::HttpCallResponseTrailers
            | MapType::GrpcReceiveTrailingMetadata
    );
    if callout && state.call.delivery.is_some() {
        let d = state
            .call
            .delivery
            .as_deref_mut()
            .ok_or(Status::BadArgument)?;
        return Ok(match ty {
            MapType::HttpCallResponseHeaders | MapType::GrpcReceiveInitialMetadata => {
                &mut d.headers
            }
            _ => &mut d.trailers,
        });
    }
    let stream = state.stream_mut().ok_or(Status::BadArgument)?;
    Ok(match ty {
        MapType::HttpRequestHeaders => &mut stream.request_headers,
        MapType::HttpResponseHeaders => &mut stream.response_headers,
        MapType::HttpRequestTrailers => &mut stream.request_trailers,
        MapType::HttpResponseTrailers => &mut stream.response_trailers,
        _ => return Err(Status::BadArgument.into()),
    })
}

/// The plugin's header-map caps.
fn caps(state: &HostState) -> MapCaps {
    let limits = &state.plugin.limits;
    MapCaps {
        bytes: usize::try_from(limits.header_bytes).unwrap_or(usize::MAX),
        pairs: usize::try_from(limits.header_pairs).unwrap_or(usize::MAX),
    }
}

/// Applies a capped change with `change`: OK, or BAD_ARGUMENT (counted and logged) when
/// it would have grown the map past a cap.
fn capped(
    state: &mut HostState,
    ty: MapType,
    hostcall: &str,
    change: impl FnOnce(&mut HeaderList, MapCaps) -> Result<(), OverCap>,
) -> HResult {
    let caps = caps(state);
    let Err(over) = change(writable(state, ty)?, caps) else {
        return Ok(());
    };
    let (cap, size, unit) = match over {
        OverCap::Pairs(n) => (Cap::HeaderPairs, n, "entries"),
        OverCap::Bytes(n) => (Cap::HeaderBytes, n, "bytes of names and values"),
    };
    state.plugin.cap_reached(
        cap,
        state.call.effective_context_id,
        state.call.callback,
        format_args!(
            "{hostcall} on {ty} refused with BAD_ARGUMENT: the map would have had {size} {unit}"
        ),
    );
    Err(Status::BadArgument.into())
}

/// `proxy_get_header_map_pairs(type, ret_ptr_ptr, ret_size_ptr)` — all versions. OK with
/// every pair in order (an unavailable map is OK + empty); BAD_ARGUMENT for an unknown type.
/// Map `ty`, when the plugin may read it now.
fn whole(state: &HostState, ty: MapType) -> Option<&HeaderList> {
    access(state, ty).and(map(state, ty))
}

/// The pairs of map `ty` the plugin may see now: none when the map is unavailable, and
/// not the redacted headers.
fn visible(state: &HostState, ty: MapType) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    access(state, ty)
        .and(map(state, ty))
        .into_iter()
        .flat_map(|list| list.iter())
        .filter(move |(k, _)| !hidden(state, ty, k))
        .map(|(k, v)| (&k[..], &v[..]))
}

fn get_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = MapType::try_from(ty as u32)?;
        // Serialized straight into guest memory: measured first, then written.
        let state = caller.data();
        if ty == MapType::HttpRequestHeaders && state.plugin.policy.redacts_headers() {
            let len = serialized_len(visible(state, ty));
            return return_filled(&mut caller, len, ret_ptr, ret_size, |state, out| {
                serialize_pairs_into(visible(state, ty), out)
                    .map_err(|_| Status::InternalFailure.into())
            });
        }
        // Nothing hidden: the map knows its serialized size and writes itself in one pass.
        let len = whole(state, ty).map_or(0, HeaderList::serialized_len);
        return_filled(&mut caller, len, ret_ptr, ret_size, |state, out| {
            if let Some(list) = whole(state, ty) {
                list.serialize_into(out);
            }
            Ok(())
        })
    })
}

/// `proxy_set_header_map_pairs(type, map_ptr, map_size)` — all versions. Replaces the
/// whole map, pseudo-headers included. OK; BAD_ARGUMENT when unavailable or read-only, or
/// when the new map is larger than the old one and than `limits.headers` (the map is then
/// unchanged). A malformed serialized map counts as empty, as in Envoy.
/// Redacted request headers stay as they are; pairs naming one are refused with
/// INTERNAL_FAILURE and nothing changes.
fn set_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = MapType::try_from(ty as u32)?;
        let raw = read_bytes(&caller, ptr, len)?;
        let pairs = deserialize_pairs(&raw).unwrap_or_default();
        let state = caller.data_mut();
        may_write(state, ty, pairs.iter().map(|(k, _)| *k))?;
        let plugin = state.plugin.clone();
        let redacted = ty == MapType::HttpRequestHeaders;
        capped(state, ty, "proxy_set_header_map_pairs", |map, caps| {
            map.try_set_all(
                &pairs,
                |name| redacted && plugin.policy.header_hidden(name),
                caps,
            )
        })
    })
}

/// `proxy_get_header_map_value(type, key_ptr, key_size, ret_ptr_ptr, ret_size_ptr)` — all
/// versions. OK with the first value; NOT_FOUND when missing (ABI 0.1.0: OK + empty);
/// BAD_ARGUMENT when the map does not exist now (NOT_FOUND in `proxy_on_log`). A redacted
/// request header reads as missing.
fn get_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = MapType::try_from(ty as u32)?;
        let key = guest_bytes(&caller, key_ptr, key_len)?;
        let state = caller.data();
        if access(state, ty).is_none() {
            return Err(unavailable(state).into());
        }
        let value = map(state, ty)
            .filter(|_| !hidden(state, ty, key))
            .and_then(|m| m.get(key))
            .cloned();
        match value {
            Some(v) => return_bytes(&mut caller, &v, ret_ptr, ret_size),
            None if state.plugin.abi == AbiVersion::V0_1_0 => {
                return_bytes(&mut caller, &[], ret_ptr, ret_size)
            }
            None => Err(Status::NotFound.into()),
        }
    })
}

/// `proxy_add_header_map_value(type, key, value)` — all versions. Appends an occurrence.
/// OK; BAD_ARGUMENT when unavailable or read-only, or when the map would grow past
/// `limits.headers` (it is then unchanged).
fn add_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = MapType::try_from(ty as u32)?;
        let key = read_bytes(&caller, key_ptr, key_len)?;
        let value = read_bytes(&caller, value_ptr, value_len)?;
        let state = caller.data_mut();
        may_write(state, ty, std::iter::once(&key[..]))?;
        capped(state, ty, "proxy_add_header_map_value", |map, caps| {
            map.try_add(key, value, caps)
        })
    })
}

/// `proxy_replace_header_map_value(type, key, value)` — all versions. Leaves exactly one
/// entry (adds it when absent). OK; BAD_ARGUMENT when unavailable or read-only, or when the
/// map would grow past `limits.headers` (it is then unchanged).
fn replace_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = MapType::try_from(ty as u32)?;
        let key = read_bytes(&caller, key_ptr, key_len)?;
        let value = read_bytes(&caller, value_ptr, value_len)?;
        let state = caller.data_mut();
        may_write(state, ty, std::iter::once(&key[..]))?;
        capped(state, ty, "proxy_replace_header_map_value", |map, caps| {
            map.try_replace(&key, &value, caps)
        })
    })
}

/// `proxy_remove_header_map_value(type, key)` — all versions. Removes every occurrence; OK
/// also when absent; BAD_ARGUMENT when unavailable or read-only.
fn remove_header_map_value(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    key_ptr: i32,
    key_len: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = MapType::try_from(ty as u32)?;
        let key = read_bytes(&caller, key_ptr, key_len)?;
        let state = caller.data_mut();
        may_write(state, ty, std::iter::once(&key[..]))?;
        writable(state, ty)?.remove(&key);
        Ok(())
    })
}

/// `proxy_get_header_map_size(type, ret_size_ptr)` — all versions. Envoy's meaning: the
/// summed byte length of names and values. OK; BAD_ARGUMENT when unavailable.
fn get_header_map_size(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    ret: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = MapType::try_from(ty as u32)?;
        let state = caller.data();
        if access(state, ty).is_none() {
            return Err(Status::BadArgument.into());
        }
        let size: usize = map(state, ty).map_or(0, |list| {
            list.iter()
                .filter(|(k, _)| !hidden(state, ty, k))
                .map(|(k, v)| k.len() + v.len())
                .sum()
        });
        write_u32(&mut caller, ret, size as u32)
    })
}
