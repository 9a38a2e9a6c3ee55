//! Property paths, value encodings and the table of Envoy's properties (reference §13).
//!
//! A property path arrives from `proxy_get_property` / `proxy_set_property` as segments
//! joined by one NUL (`request`␀`path`); [`split_path`] splits it and [`resolve`] finds the
//! longest [`PROPERTIES`] entry it starts with, leaving the rest (a header name, a metadata
//! key) to the caller. Values are encoded as Envoy's `serializeValue` does; [`encode`] has
//! the scalar forms and [`decode`] their inverses.

use std::fmt;

use crate::catalogue::Support;

use PropertyKind::{Bool, Duration, Int64, Map, Protobuf, String as Str, Timestamp, Uint64};

/// How a property's value is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyKind {
    /// UTF-8 text, raw, no terminator.
    String,
    /// Bytes, raw.
    Bytes,
    /// 8 bytes little-endian signed.
    Int64,
    /// 8 bytes little-endian unsigned.
    Uint64,
    /// 8-byte IEEE 754, little-endian.
    Double,
    /// 1 byte, 0 or 1.
    Bool,
    /// Nanoseconds since the Unix epoch as an 8-byte little-endian i64.
    Timestamp,
    /// Nanoseconds as an 8-byte little-endian i64.
    Duration,
    /// Serialized pairs (reference §7.2), values encoded recursively.
    Map,
    /// Serialized pairs with the elements as keys and empty values.
    List,
    /// Protobuf wire bytes (`node`, `metadata`, ...).
    Protobuf,
}

/// One property the host knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PropertySpec {
    /// The dotted path, e.g. `"request.url_path"`; each dot is a NUL on the wire.
    pub path: &'static str,
    /// How the value is encoded.
    pub kind: PropertyKind,
    /// What wasmbridge implements.
    pub support: Support,
    /// What the value is.
    pub doc: &'static str,
}

/// Legacy top-level names Envoy served until late 2024 and the `xds.*` property each one
/// stands for (still used, e.g. by Istio stats filters).
pub const LEGACY_ALIASES: &[(&str, &str)] = &[
    ("node", "xds.node"),
    ("cluster_name", "xds.cluster_name"),
    ("cluster_metadata", "xds.cluster_metadata"),
    ("listener_direction", "xds.listener_direction"),
    ("listener_metadata", "xds.listener_metadata"),
    ("route_name", "xds.route_name"),
    ("route_metadata", "xds.route_metadata"),
    ("upstream_host_metadata", "xds.upstream_host_metadata"),
];

/// Scalar value encodings (reference §13.1).
pub mod encode {
    use crate::map::serialize_pairs;

    /// An `int64` value: 8 bytes little-endian.
    pub fn int64(value: i64) -> [u8; 8] {
        value.to_le_bytes()
    }

    /// A `uint64` value: 8 bytes little-endian.
    pub fn uint64(value: u64) -> [u8; 8] {
        value.to_le_bytes()
    }

    /// A `double` value: the IEEE 754 bits, 8 bytes little-endian.
    pub fn double(value: f64) -> [u8; 8] {
        value.to_le_bytes()
    }

    /// A `bool` value: one byte, 0 or 1.
    pub fn boolean(value: bool) -> [u8; 1] {
        [u8::from(value)]
    }

    /// A duration in nanoseconds: 8 bytes little-endian.
    pub fn duration_nanos(nanos: i64) -> [u8; 8] {
        nanos.to_le_bytes()
    }

    /// A timestamp in nanoseconds since the Unix epoch: 8 bytes little-endian.
    pub fn timestamp_nanos(nanos: i64) -> [u8; 8] {
        nanos.to_le_bytes()
    }

    /// A list: serialized pairs with the elements as keys and empty values. An empty list
    /// is no bytes.
    pub fn string_list<'a>(items: impl IntoIterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
        serialize_pairs(AsKeys(items))
    }

    /// Presents list elements as map keys with empty values, keeping `Clone`.
    #[derive(Clone)]
    struct AsKeys<I>(I);

    impl<'a, I: IntoIterator<Item = &'a [u8]>> IntoIterator for AsKeys<I> {
        type Item = (&'a [u8], &'a [u8]);
        type IntoIter = std::iter::Map<I::IntoIter, fn(&'a [u8]) -> (&'a [u8], &'a [u8])>;

        fn into_iter(self) -> Self::IntoIter {
            self.0.into_iter().map(|item| (item, &[][..]))
        }
    }
}

/// Decoding of the scalar encodings, for tests and emulators reading values back. Each
/// returns `None` unless the input has exactly the encoded size.
pub mod decode {
    /// An `int64` value.
    pub fn int64(bytes: &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// A `uint64` value.
    pub fn uint64(bytes: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// A `double` value.
    pub fn double(bytes: &[u8]) -> Option<f64> {
        Some(f64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// A `bool` value: one byte, any non-zero value is true.
    pub fn boolean(bytes: &[u8]) -> Option<bool> {
        match bytes {
            [b] => Some(*b != 0),
            _ => None,
        }
    }
}

impl PropertyKind {
    /// The Envoy attribute type name, e.g. `"int64"` or `"map"`.
    pub const fn name(self) -> &'static str {
        match self {
            PropertyKind::String => "string",
            PropertyKind::Bytes => "bytes",
            PropertyKind::Int64 => "int64",
            PropertyKind::Uint64 => "uint64",
            PropertyKind::Double => "double",
            PropertyKind::Bool => "bool",
            PropertyKind::Timestamp => "timestamp",
            PropertyKind::Duration => "duration",
            PropertyKind::Map => "map",
            PropertyKind::List => "list",
            PropertyKind::Protobuf => "protobuf",
        }
    }
}

impl fmt::Display for PropertyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PropertySpec {
    /// The path segments, e.g. `["request", "url_path"]`.
    pub fn segments(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('.')
    }
}

/// Splits a NUL-separated property path into its segments. One trailing NUL is tolerated;
/// empty input gives no segments. Empty segments in the middle are kept.
pub fn split_path(path: &[u8]) -> Vec<&[u8]> {
    let path = path.strip_suffix(&[0]).unwrap_or(path);
    if path.is_empty() {
        return Vec::new();
    }
    path.split(|b| *b == 0).collect()
}

/// The property with this dotted path (e.g. `"request.url_path"`), legacy aliases included.
pub fn property(path: &str) -> Option<&'static PropertySpec> {
    PROPERTIES.iter().find(|p| p.path == path)
}

/// The `xds.*` path a legacy alias stands for (`"node"` → `"xds.node"`).
pub fn alias_target(path: &str) -> Option<&'static str> {
    LEGACY_ALIASES
        .iter()
        .find(|(alias, _)| *alias == path)
        .map(|(_, target)| *target)
}

/// The longest known property the segments start with, and how many segments it uses.
/// `["request", "headers", "x-foo"]` gives (`request.headers`, 2): the caller walks the
/// remaining segments into the value. `None` for an unknown top-level name, which Envoy
/// reads from the filter state `wasm.<name>` (how `proxy_set_property` values come back).
pub fn resolve(segments: &[&[u8]]) -> Option<(&'static PropertySpec, usize)> {
    PROPERTIES
        .iter()
        .filter_map(|spec| {
            let used = spec.segments().count();
            let matches = used <= segments.len()
                && spec
                    .segments()
                    .zip(segments)
                    .all(|(want, got)| want.as_bytes() == *got);
            matches.then_some((spec, used))
        })
        .max_by_key(|(_, used)| *used)
}

const FULL: Support = Support::Full;
const PLAINTEXT: Support = Support::Partial(
    "listeners and clusters are plaintext: NOT_FOUND, as Envoy answers on a connection without TLS",
);
const NO_METADATA: Support =
    Support::Unimplemented("routes, clusters and listeners carry no metadata in the configuration");

const fn p(
    path: &'static str,
    kind: PropertyKind,
    support: Support,
    doc: &'static str,
) -> PropertySpec {
    PropertySpec {
        path,
        kind,
        support,
        doc,
    }
}

/// Every Envoy property of reference §13.2: request, response, connection, upstream,
/// metadata and filter state, `xds.*`, the legacy aliases and the Wasm plugin properties.
pub static PROPERTIES: &[PropertySpec] = &[
    // Request
    p(
        "request.path",
        Str,
        FULL,
        "The request path with the query string (:path).",
    ),
    p(
        "request.url_path",
        Str,
        FULL,
        "The request path without the query string.",
    ),
    p("request.host", Str, FULL, "The host (:authority)."),
    p(
        "request.scheme",
        Str,
        FULL,
        "The scheme (:scheme), e.g. \"https\".",
    ),
    p(
        "request.method",
        Str,
        FULL,
        "The method (:method), e.g. \"GET\".",
    ),
    p(
        "request.headers",
        Map,
        FULL,
        "All request headers; a further segment names one header (lower case), repeated \
         values comma-joined.",
    ),
    p(
        "request.headers_bytes",
        Uint64,
        FULL,
        "The total size of the request headers in bytes.",
    ),
    p("request.referer", Str, FULL, "The referer header."),
    p("request.useragent", Str, FULL, "The user-agent header."),
    p(
        "request.time",
        Timestamp,
        Support::Partial("when the proxy had the whole request headers, not their first byte"),
        "When the first byte of the request arrived.",
    ),
    p("request.id", Str, FULL, "The request id (x-request-id)."),
    p(
        "request.protocol",
        Str,
        FULL,
        "\"HTTP/1.0\", \"HTTP/1.1\", \"HTTP/2\" or \"HTTP/3\".",
    ),
    p(
        "request.query",
        Str,
        FULL,
        "The query string without the leading '?'.",
    ),
    p(
        "request.duration",
        Duration,
        FULL,
        "The total duration of the request, after completion.",
    ),
    p(
        "request.size",
        Int64,
        FULL,
        "The request body size: content-length if present, else the bytes received.",
    ),
    p(
        "request.total_size",
        Int64,
        FULL,
        "The total request size including headers.",
    ),
    // Response
    p("response.code", Int64, FULL, "The response status code."),
    p(
        "response.code_details",
        Str,
        Support::Partial(
            "via_upstream, direct_response or the local reply's details; none of Envoy's other codes",
        ),
        "Envoy's response code details.",
    ),
    p(
        "response.flags",
        Int64,
        Support::Partial("always 0: no Envoy response flags are tracked"),
        "Envoy's response flags as a bitmask.",
    ),
    p(
        "response.grpc_status",
        Int64,
        FULL,
        "The gRPC status of the response.",
    ),
    p("response.headers", Map, FULL, "All response headers."),
    p(
        "response.headers_bytes",
        Uint64,
        FULL,
        "The total size of the response headers in bytes.",
    ),
    p(
        "response.trailers",
        Map,
        FULL,
        "All response trailers (NOT_FOUND before they arrived or when there are none).",
    ),
    p("response.size", Int64, FULL, "The response body size."),
    p(
        "response.total_size",
        Int64,
        FULL,
        "The total response size including headers.",
    ),
    p(
        "response.backend_latency",
        Duration,
        Support::Partial("from sending the request upstream to the end of the exchange"),
        "Time from the first upstream request byte to the last response byte.",
    ),
    // Downstream connection
    p(
        "source.address",
        Str,
        FULL,
        "The client address as \"ip:port\" (\"[::1]:port\" for IPv6).",
    ),
    p("source.port", Int64, FULL, "The client port."),
    p(
        "destination.address",
        Str,
        FULL,
        "The local address the client connected to, as \"ip:port\".",
    ),
    p(
        "destination.port",
        Int64,
        FULL,
        "The local port the client connected to.",
    ),
    p(
        "connection.id",
        Uint64,
        FULL,
        "The downstream connection id.",
    ),
    p(
        "connection.mtls",
        Bool,
        Support::Partial("listeners are plaintext: always false"),
        "Whether the client presented a certificate.",
    ),
    p(
        "connection.requested_server_name",
        Str,
        PLAINTEXT,
        "The TLS SNI requested by the client.",
    ),
    p(
        "connection.tls_version",
        Str,
        PLAINTEXT,
        "The downstream TLS version, e.g. \"TLSv1.3\".",
    ),
    p(
        "connection.subject_local_certificate",
        Str,
        PLAINTEXT,
        "The subject of the local certificate.",
    ),
    p(
        "connection.subject_peer_certificate",
        Str,
        PLAINTEXT,
        "The subject of the client certificate.",
    ),
    p(
        "connection.dns_san_local_certificate",
        Str,
        PLAINTEXT,
        "The first DNS SAN of the local certificate.",
    ),
    p(
        "connection.dns_san_peer_certificate",
        Str,
        PLAINTEXT,
        "The first DNS SAN of the client certificate.",
    ),
    p(
        "connection.uri_san_local_certificate",
        Str,
        PLAINTEXT,
        "The first URI SAN of the local certificate.",
    ),
    p(
        "connection.uri_san_peer_certificate",
        Str,
        PLAINTEXT,
        "The first URI SAN of the client certificate.",
    ),
    p(
        "connection.sha256_peer_certificate_digest",
        Str,
        PLAINTEXT,
        "The SHA-256 digest of the client certificate.",
    ),
    p(
        "connection.peer_certificate",
        Str,
        PLAINTEXT,
        "The client certificate as URL-encoded PEM.",
    ),
    p(
        "connection.transport_failure_reason",
        Str,
        Support::Unimplemented("downstream transport failures are not recorded"),
        "Why the downstream transport failed.",
    ),
    p(
        "connection.termination_details",
        Str,
        Support::Unimplemented("connection termination details are not recorded"),
        "Why the downstream connection was terminated.",
    ),
    // Upstream
    p(
        "upstream.address",
        Str,
        FULL,
        "The upstream address as \"ip:port\".",
    ),
    p("upstream.port", Int64, FULL, "The upstream port."),
    p(
        "upstream.local_address",
        Str,
        FULL,
        "The local address of the upstream connection.",
    ),
    p(
        "upstream.tls_version",
        Str,
        PLAINTEXT,
        "The upstream TLS version.",
    ),
    p(
        "upstream.subject_local_certificate",
        Str,
        PLAINTEXT,
        "The subject of the local certificate towards the upstream.",
    ),
    p(
        "upstream.subject_peer_certificate",
        Str,
        PLAINTEXT,
        "The subject of the upstream certificate.",
    ),
    p(
        "upstream.dns_san_local_certificate",
        Str,
        PLAINTEXT,
        "The first DNS SAN of the local certificate towards the upstream.",
    ),
    p(
        "upstream.dns_san_peer_certificate",
        Str,
        PLAINTEXT,
        "The first DNS SAN of the upstream certificate.",
    ),
    p(
        "upstream.uri_san_local_certificate",
        Str,
        PLAINTEXT,
        "The first URI SAN of the local certificate towards the upstream.",
    ),
    p(
        "upstream.uri_san_peer_certificate",
        Str,
        PLAINTEXT,
        "The first URI SAN of the upstream certificate.",
    ),
    p(
        "upstream.sha256_peer_certificate_digest",
        Str,
        PLAINTEXT,
        "The SHA-256 digest of the upstream certificate.",
    ),
    p(
        "upstream.peer_certificate",
        Str,
        PLAINTEXT,
        "The upstream certificate as URL-encoded PEM.",
    ),
    p(
        "upstream.transport_failure_reason",
        Str,
        Support::Partial(
            "the connect error's text (readable in on_log); NOT_FOUND when the connection succeeded",
        ),
        "Why the upstream transport failed.",
    ),
    p(
        "upstream.request_attempt_count",
        Uint64,
        FULL,
        "How many upstream attempts were made (more than 1 after retries).",
    ),
    p(
        "upstream.cx_pool_ready_duration",
        Duration,
        FULL,
        "How long the request waited for an upstream connection.",
    ),
    p(
        "upstream.locality",
        Protobuf,
        Support::Unimplemented("clusters have no locality"),
        "The upstream host's locality (envoy.config.core.v3.Locality).",
    ),
    p(
        "upstream.num_endpoints",
        Uint64,
        FULL,
        "The number of endpoints of the upstream cluster.",
    ),
    // Metadata and filter state
    p(
        "metadata",
        Protobuf,
        Support::Unimplemented("nothing sets dynamic metadata"),
        "Dynamic metadata; walk filter_metadata, namespace and key as further segments.",
    ),
    p(
        "filter_state",
        Map,
        Support::Partial(
            "the values set with proxy_set_property, keyed wasm.<path>; no other filter state",
        ),
        "The stream's filter state, by key.",
    ),
    p(
        "upstream_filter_state",
        Map,
        Support::Unimplemented("there is no upstream filter state"),
        "The upstream connection's filter state, by key.",
    ),
    // xDS
    p(
        "xds.node",
        Protobuf,
        FULL,
        "The Node (id, cluster, metadata, locality, ...); also in root contexts.",
    ),
    p("xds.cluster_name", Str, FULL, "The upstream cluster name."),
    p(
        "xds.cluster_metadata",
        Protobuf,
        NO_METADATA,
        "The upstream cluster metadata.",
    ),
    p(
        "xds.listener_direction",
        Int64,
        FULL,
        "The listener direction: 0 unspecified, 1 inbound, 2 outbound.",
    ),
    p(
        "xds.listener_metadata",
        Protobuf,
        NO_METADATA,
        "The listener metadata.",
    ),
    p("xds.route_name", Str, FULL, "The route name."),
    p(
        "xds.route_metadata",
        Protobuf,
        NO_METADATA,
        "The route metadata.",
    ),
    p(
        "xds.virtual_host_name",
        Str,
        Support::Unimplemented("routes have no virtual hosts"),
        "The virtual host name.",
    ),
    p(
        "xds.virtual_host_metadata",
        Protobuf,
        Support::Unimplemented("routes have no virtual hosts"),
        "The virtual host metadata.",
    ),
    p(
        "xds.upstream_host_metadata",
        Protobuf,
        NO_METADATA,
        "The upstream host metadata.",
    ),
    p(
        "xds.upstream_host_locality_metadata",
        Protobuf,
        NO_METADATA,
        "The upstream host locality metadata.",
    ),
    p(
        "xds.filter_chain_name",
        Str,
        Support::Unimplemented("listeners have no named filter chains"),
        "The filter chain name.",
    ),
    // Wasm
    p(
        "plugin_name",
        Str,
        FULL,
        "The plugin name; available in root contexts from proxy_on_context_create.",
    ),
    p(
        "plugin_root_id",
        Str,
        FULL,
        "The plugin root id; SDKs read it to pick the root context factory.",
    ),
    p(
        "plugin_vm_id",
        Str,
        FULL,
        "The plugin vm_id (may be empty).",
    ),
    p(
        "connection_id",
        Uint64,
        FULL,
        "The downstream connection id.",
    ),
    // Legacy aliases of xds.* (see LEGACY_ALIASES)
    p("node", Protobuf, FULL, "Legacy alias of xds.node."),
    p(
        "cluster_name",
        Str,
        FULL,
        "Legacy alias of xds.cluster_name.",
    ),
    p(
        "cluster_metadata",
        Protobuf,
        NO_METADATA,
        "Legacy alias of xds.cluster_metadata.",
    ),
    p(
        "listener_direction",
        Int64,
        FULL,
        "Legacy alias of xds.listener_direction.",
    ),
    p(
        "listener_metadata",
        Protobuf,
        NO_METADATA,
        "Legacy alias of xds.listener_metadata.",
    ),
    p("route_name", Str, FULL, "Legacy alias of xds.route_name."),
    p(
        "route_metadata",
        Protobuf,
        NO_METADATA,
        "Legacy alias of xds.route_metadata.",
    ),
    p(
        "upstream_host_metadata",
        Protobuf,
        NO_METADATA,
        "Legacy alias of xds.upstream_host_metadata.",
    ),
];

#[cfg(test)]
mod tests;
