//! Properties: `proxy_get_property` and `proxy_set_property`, with Envoy's encodings
//! (strings raw, integers as 8 little-endian bytes, timestamps and durations as
//! nanoseconds, maps serialized as pairs, `xds.node` as protobuf).
//!
//! A path is resolved against the catalogue ([`wasmbridge_abi::resolve`]); legacy
//! top-level names (`node`, `route_name`, ...) serve their `xds.*` value. A top-level name
//! the catalogue does not know reads what `proxy_set_property` stored, as Envoy reads the
//! filter state `wasm.<name>`.
//!
//! The plugin's redaction applies to every read: a redacted property path, what contains it
//! and what lies inside it read as NOT_FOUND ([`crate::policy::Policy::property_hidden`]);
//! redacted request headers are left out of `request.headers` (and its sizes), and the
//! properties made of one (`request.headers.<name>`, `request.useragent`, ...) read as
//! NOT_FOUND. `proxy_set_property` on a redacted path is refused with INTERNAL_FAILURE.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use wasmbridge_abi::proto::{node_proto, struct_cel};
use wasmbridge_abi::{Status, alias_target, encode, resolve, serialize_pairs, split_path};
use wasmtime::Caller;

use super::{HResult, Registrar, read_bytes, return_bytes, status};
use crate::context::{HostState, StreamData};
use crate::headers::HeaderList;
use crate::plugin::NodeInfo;
use crate::policy::{Policy, REDACTED_PROPERTIES, refuse};

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_get_property", get_property)?;
    reg.env("proxy_set_property", set_property)?;
    Ok(())
}

/// The properties that need no stream, by dotted path: the node (and each of its fields
/// and top-level metadata names, which paths may walk into) and the listener direction.
pub(crate) fn static_properties(node: &NodeInfo) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    out.insert(
        "xds.node".to_string(),
        node_proto(&node.id, &node.cluster, &node.metadata),
    );
    out.insert("xds.node.id".to_string(), node.id.clone().into_bytes());
    out.insert(
        "xds.node.cluster".to_string(),
        node.cluster.clone().into_bytes(),
    );
    out.insert("xds.node.metadata".to_string(), struct_cel(&node.metadata));
    for (name, value) in &node.metadata {
        out.insert(format!("xds.node.metadata.{name}"), value.to_cel());
    }
    // No listener declares a traffic direction: UNSPECIFIED.
    out.insert(
        "xds.listener_direction".to_string(),
        encode::int64(0).to_vec(),
    );
    out
}

/// Resolves a property path to its encoded value, or `None` when it does not exist.
pub(crate) fn lookup(state: &HostState, path: &[u8]) -> Option<Vec<u8>> {
    let segments = split_path(path);
    let policy = &state.plugin.policy;
    if policy.property_hidden(&segments) {
        return None;
    }
    let Some((spec, used)) = resolve(&segments) else {
        // Not a known property: a value a filter stored with proxy_set_property.
        return state.stream()?.properties.get(path).map(|v| v.to_vec());
    };
    let name = alias_target(spec.path).unwrap_or(spec.path);
    let rest = &segments[used..];
    let plugin = &state.plugin;
    match name {
        "plugin_name" => return exact(rest, plugin.name.as_bytes()),
        "plugin_root_id" => return exact(rest, plugin.root_id.as_bytes()),
        "plugin_vm_id" => return exact(rest, plugin.vm_id.as_bytes()),
        _ => {}
    }
    if name.starts_with("xds.node") || name == "xds.listener_direction" {
        let mut key = name.to_string();
        for segment in rest {
            key.push('.');
            key.push_str(std::str::from_utf8(segment).ok()?);
        }
        return plugin.static_properties.get(&key).cloned();
    }
    let stream = state.stream()?;
    let view = View { stream, policy };
    match (name, rest) {
        ("request.headers", [header]) if policy.header_hidden(header) => None,
        ("request.headers", [header]) => joined(&stream.request_headers, header),
        ("response.headers", [header]) => joined(&stream.response_headers, header),
        ("response.trailers", [header]) => joined(&stream.response_trailers, header),
        ("filter_state", [key]) if key.starts_with(b"wasm.") => {
            stream.properties.get(&key[5..]).map(|v| v.to_vec())
        }
        ("filter_state", keys) if !keys.is_empty() => {
            // An Envoy object key has dots of its own: `filter_state.envoy.x.y`.
            let key = keys.join(&b"."[..]);
            stream.filter_state.get(&key[..]).map(|v| v.to_vec())
        }
        (_, []) => stream_property(&view, name),
        _ => None,
    }
}

/// One header of a map, repeated values comma-joined.
fn joined(list: &HeaderList, name: &[u8]) -> Option<Vec<u8>> {
    list.joined(name).map(std::borrow::Cow::into_owned)
}

/// A property with no sub-paths: `value` when nothing follows its name.
fn exact(rest: &[&[u8]], value: &[u8]) -> Option<Vec<u8>> {
    rest.is_empty().then(|| value.to_vec())
}

/// A stream's data as one plugin may see it.
struct View<'a> {
    stream: &'a StreamData,
    policy: &'a Policy,
}

impl<'a> View<'a> {
    /// A request header, unless redacted.
    fn header(&self, name: &[u8]) -> Option<&'a Bytes> {
        if self.policy.header_hidden(name) {
            return None;
        }
        self.stream.request_headers.get(name)
    }

    /// The request headers that are not redacted.
    fn request_headers(&self) -> impl Iterator<Item = (&'a Bytes, &'a Bytes)> + Clone {
        let policy = self.policy;
        self.stream
            .request_headers
            .iter()
            .filter(move |(k, _)| !policy.header_hidden(k))
    }

    /// The summed byte length of the request headers that are not redacted.
    fn request_headers_bytes(&self) -> u64 {
        self.request_headers()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

fn non_empty(value: Option<&Bytes>) -> Option<Vec<u8>> {
    value.filter(|v| !v.is_empty()).map(|v| v.to_vec())
}

fn text(value: Option<&String>) -> Option<Vec<u8>> {
    value.map(|v| v.as_bytes().to_vec())
}

fn address(a: Option<SocketAddr>) -> Option<Vec<u8>> {
    a.map(|a| a.to_string().into_bytes())
}

fn port(a: Option<SocketAddr>) -> Option<Vec<u8>> {
    a.map(|a| encode::int64(i64::from(a.port())).to_vec())
}

fn int(value: u64) -> Vec<u8> {
    encode::int64(i64::try_from(value).unwrap_or(i64::MAX)).to_vec()
}

fn nanos(d: Duration) -> Vec<u8> {
    encode::duration_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).to_vec()
}

fn map(list: &HeaderList) -> Vec<u8> {
    serialize_pairs(list.iter().map(|(k, v)| (&k[..], &v[..])))
}

/// `request.size` count: content-length when the headers give one, else the body bytes that
/// went through.
fn body_size(content_length: Option<&Bytes>, counted: u64) -> u64 {
    content_length
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
        .unwrap_or(counted)
}

fn stream_property(view: &View<'_>, name: &str) -> Option<Vec<u8>> {
    let stream = view.stream;
    let header = |_: &StreamData, name: &[u8]| view.header(name);
    let info = &stream.info;
    let up = &info.upstream;
    let path_and_query = || header(stream, b":path").map(|p| &p[..]).unwrap_or(b"");
    let have_response = !stream.response_headers.is_empty();
    match name {
        "request.path" => non_empty(header(stream, b":path")),
        "request.url_path" => {
            let p = path_and_query();
            let end = p.iter().position(|&c| c == b'?').unwrap_or(p.len());
            Some(p[..end].to_vec()).filter(|v| !v.is_empty())
        }
        "request.query" => {
            let p = path_and_query();
            Some(
                p.iter()
                    .position(|&c| c == b'?')
                    .map_or(Vec::new(), |i| p[i + 1..].to_vec()),
            )
        }
        "request.host" => non_empty(header(stream, b":authority")),
        "request.scheme" => non_empty(header(stream, b":scheme")),
        "request.method" => non_empty(header(stream, b":method")),
        "request.referer" => non_empty(header(stream, b"referer")),
        "request.useragent" => non_empty(header(stream, b"user-agent")),
        "request.protocol" => Some(info.protocol.as_bytes().to_vec()).filter(|p| !p.is_empty()),
        "request.id" if view.policy.header_hidden(b"x-request-id") => None,
        "request.id" => {
            text(info.request_id.as_ref()).or_else(|| non_empty(header(stream, b"x-request-id")))
        }
        "request.headers" => Some(serialize_pairs(
            view.request_headers().map(|(k, v)| (&k[..], &v[..])),
        )),
        "request.headers_bytes" => Some(int(view.request_headers_bytes())),
        "request.time" => info.start_time.map(|t| {
            let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            encode::timestamp_nanos(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)).to_vec()
        }),
        "request.duration" => info.duration.map(nanos),
        "request.size" => Some(int(body_size(
            header(stream, b"content-length"),
            info.request_body_bytes,
        ))),
        "request.total_size" => Some(int(body_size(
            header(stream, b"content-length"),
            info.request_body_bytes,
        ) + view.request_headers_bytes())),
        "response.code" => info
            .response_code
            .or_else(|| stream.response_headers.status())
            .map(|code| encode::int64(i64::from(code)).to_vec()),
        "response.code_details" => text(info.response_details.as_ref()),
        "response.flags" => have_response.then(|| encode::int64(0).to_vec()),
        "response.grpc_status" => stream
            .response_trailers
            .get(b"grpc-status")
            .or_else(|| stream.response_headers.get(b"grpc-status"))
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<i64>().ok())
            .map(|s| encode::int64(s).to_vec()),
        "response.headers" => have_response.then(|| map(&stream.response_headers)),
        "response.headers_bytes" => {
            have_response.then(|| int(stream.response_headers.byte_size() as u64))
        }
        "response.trailers" => {
            (!stream.response_trailers.is_empty()).then(|| map(&stream.response_trailers))
        }
        "response.size" => have_response.then(|| int(info.response_body_bytes)),
        "response.total_size" => have_response
            .then(|| int(info.response_body_bytes + stream.response_headers.byte_size() as u64)),
        "response.backend_latency" => up.backend_latency.map(nanos),
        "source.address" => address(info.source),
        "source.port" => port(info.source),
        "destination.address" => address(info.destination),
        "destination.port" => port(info.destination),
        "connection.id" | "connection_id" => {
            info.connection_id.map(|id| encode::uint64(id).to_vec())
        }
        // Listeners are plaintext: no client certificate, as Envoy says on plaintext.
        "connection.mtls" => info.connection_id.map(|_| encode::boolean(false).to_vec()),
        "upstream.address" => address(up.address),
        "upstream.port" => port(up.address),
        "upstream.local_address" => address(up.local_address),
        "upstream.request_attempt_count" => {
            (up.attempts > 0).then(|| encode::uint64(u64::from(up.attempts)).to_vec())
        }
        "upstream.num_endpoints" => up.endpoints.map(|n| encode::uint64(u64::from(n)).to_vec()),
        "upstream.cx_pool_ready_duration" => up.pool_ready.map(nanos),
        "upstream.transport_failure_reason" => text(up.transport_failure_reason.as_ref()),
        "xds.route_name" => text(info.route_name.as_ref()),
        "xds.cluster_name" => text(info.cluster_name.as_ref()),
        "filter_state" => {
            // Values stored at redacted paths are left out.
            let visible: Vec<(Vec<u8>, &Bytes)> = stream
                .properties
                .iter()
                .filter(|(k, _)| !view.policy.property_hidden(&split_path(k)))
                .map(|(k, v)| ([&b"wasm."[..], k].concat(), v))
                .collect();
            Some(serialize_pairs(
                visible.iter().map(|(k, v)| (&k[..], &v[..])),
            ))
        }
        _ => None,
    }
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
/// an opaque per-stream value that later reads of the same path return (and
/// `filter_state` lists as `wasm.<path>`). A known property (`request.path`) keeps its
/// own value, as in Envoy. OK; NOT_FOUND outside a stream context (e.g. in a root
/// context); INTERNAL_FAILURE (refused) for a path the plugin's redaction covers.
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
        let state = caller.data_mut();
        if state.stream().is_none() {
            return Err(Status::NotFound.into());
        }
        if state.plugin.policy.property_hidden(&split_path(&path)) {
            refuse(
                state,
                REDACTED_PROPERTIES,
                format_args!(
                    "a change of the redacted property `{}`",
                    String::from_utf8_lossy(&path).replace('\0', ".")
                ),
            );
            return Err(Status::InternalFailure.into());
        }
        let stream = state.stream_mut().ok_or(Status::NotFound)?;
        stream.properties.insert(path, Bytes::from(value));
        Ok(())
    })
}
