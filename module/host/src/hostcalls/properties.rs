//! Properties: `proxy_get_property` and `proxy_set_property`, with Envoy's encodings
//! (strings raw, integers as 8 little-endian bytes, maps serialized as pairs).

use bytes::Bytes;
use wasmbridge_abi::{Status, encode, serialize_pairs, split_path};
use wasmtime::Caller;

use super::{HResult, Registrar, read_bytes, return_bytes, status};
use crate::context::{HostState, StreamData};

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_get_property", get_property)?;
    reg.env("proxy_set_property", set_property)?;
    Ok(())
}

/// Resolves a property path to its encoded value, or `None` when it does not exist.
pub(crate) fn lookup(state: &HostState, path: &[u8]) -> Option<Vec<u8>> {
    let segments = split_path(path);
    let plugin = &state.plugin;
    match segments.as_slice() {
        [b"plugin_name"] => return Some(plugin.name.as_bytes().to_vec()),
        [b"plugin_root_id"] => return Some(plugin.root_id.as_bytes().to_vec()),
        [b"plugin_vm_id"] => return Some(plugin.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    let stream = state.stream()?;
    if let Some(value) = stream.properties.get(path) {
        return Some(value.to_vec());
    }
    stream_property(stream, &segments)
}

fn header<'a>(stream: &'a StreamData, name: &[u8]) -> Option<&'a Bytes> {
    stream.request_headers.get(name)
}

fn non_empty(value: Option<&Bytes>) -> Option<Vec<u8>> {
    value.filter(|v| !v.is_empty()).map(|v| v.to_vec())
}

fn stream_property(stream: &StreamData, segments: &[&[u8]]) -> Option<Vec<u8>> {
    let path_and_query = || header(stream, b":path").map(|p| &p[..]).unwrap_or(b"");
    let address = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string().into_bytes());
    let port =
        |a: Option<std::net::SocketAddr>| a.map(|a| encode::int64(i64::from(a.port())).to_vec());
    match segments {
        [b"request", b"path"] => non_empty(header(stream, b":path")),
        [b"request", b"url_path"] => {
            let p = path_and_query();
            let end = p.iter().position(|&c| c == b'?').unwrap_or(p.len());
            Some(p[..end].to_vec()).filter(|v| !v.is_empty())
        }
        [b"request", b"query"] => {
            let p = path_and_query();
            Some(
                p.iter()
                    .position(|&c| c == b'?')
                    .map_or(Vec::new(), |i| p[i + 1..].to_vec()),
            )
        }
        [b"request", b"host"] => non_empty(header(stream, b":authority")),
        [b"request", b"scheme"] => non_empty(header(stream, b":scheme")),
        [b"request", b"method"] => non_empty(header(stream, b":method")),
        [b"request", b"referer"] => non_empty(header(stream, b"referer")),
        [b"request", b"useragent"] => non_empty(header(stream, b"user-agent")),
        [b"request", b"protocol"] => {
            Some(stream.info.protocol.as_bytes().to_vec()).filter(|p| !p.is_empty())
        }
        [b"request", b"id"] => stream
            .info
            .request_id
            .as_ref()
            .map(|id| id.as_bytes().to_vec())
            .or_else(|| non_empty(header(stream, b"x-request-id"))),
        [b"request", b"headers"] => Some(serialize_pairs(
            stream.request_headers.iter().map(|(k, v)| (&k[..], &v[..])),
        )),
        [b"request", b"headers", name] => joined(&stream.request_headers, name),
        [b"response", b"headers"] if !stream.response_headers.is_empty() => Some(serialize_pairs(
            stream
                .response_headers
                .iter()
                .map(|(k, v)| (&k[..], &v[..])),
        )),
        [b"response", b"headers", name] => joined(&stream.response_headers, name),
        [b"response", b"code"] => stream
            .info
            .response_code
            .or_else(|| stream.response_headers.status())
            .map(|code| encode::int64(i64::from(code)).to_vec()),
        [b"source", b"address"] => address(stream.info.source),
        [b"source", b"port"] => port(stream.info.source),
        [b"destination", b"address"] => address(stream.info.destination),
        [b"destination", b"port"] => port(stream.info.destination),
        [b"xds", b"route_name"] | [b"route_name"] => stream
            .info
            .route_name
            .as_ref()
            .map(|r| r.as_bytes().to_vec()),
        _ => None,
    }
}

/// Every value of a header, comma-joined (Envoy's `request.headers.<name>`).
fn joined(list: &crate::headers::HeaderList, name: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for (k, v) in list.iter() {
        if k.eq_ignore_ascii_case(name) {
            match out.as_mut() {
                Some(o) => {
                    o.push(b',');
                    o.extend_from_slice(v);
                }
                None => out = Some(v.to_vec()),
            }
        }
    }
    out
}

/// `proxy_get_property(path_ptr, path_size, ret_ptr_ptr, ret_size_ptr)` — all versions.
/// OK with the encoded value; NOT_FOUND for unknown or absent properties.
fn get_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let path = read_bytes(&caller, path_ptr, path_len)?;
        let value = lookup(caller.data(), &path).ok_or(Status::NotFound)?;
        return_bytes(&mut caller, &value, ret_ptr, ret_size)
    })
}

/// `proxy_set_property(path_ptr, path_size, value_ptr, value_size)` — all versions. Stores
/// an opaque per-stream value that later reads of the same path return. OK; NOT_FOUND
/// outside a stream context (e.g. in a root context).
fn set_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let path = read_bytes(&caller, path_ptr, path_len)?;
        let value = read_bytes(&caller, value_ptr, value_len)?;
        let stream = caller.data_mut().stream_mut().ok_or(Status::NotFound)?;
        stream.properties.insert(path, Bytes::from(value));
        Ok(())
    })
}
