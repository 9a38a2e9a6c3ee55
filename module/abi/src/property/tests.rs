use std::collections::HashSet;

use super::*;
use crate::map::deserialize_pairs;

#[test]
fn split_path_segments() {
    assert_eq!(split_path(b"request\0path"), [&b"request"[..], b"path"]);
    assert_eq!(split_path(b"request\0path\0"), [&b"request"[..], b"path"]);
    assert_eq!(split_path(b"plugin_root_id"), [&b"plugin_root_id"[..]]);
    assert_eq!(split_path(b"plugin_root_id\0"), [&b"plugin_root_id"[..]]);
    assert_eq!(
        split_path(b"request\0headers\0x-foo"),
        [&b"request"[..], b"headers", b"x-foo"]
    );
    assert_eq!(split_path(b"a\0\0b"), [&b"a"[..], b"", b"b"]);
    assert!(split_path(b"").is_empty());
    assert!(split_path(b"\0").is_empty());
    // Only one trailing NUL is tolerated; a second leaves an empty last segment.
    assert_eq!(split_path(b"a\0\0"), [&b"a"[..], b""]);
}

#[test]
fn encode_helpers_bytes() {
    assert_eq!(
        encode::int64(-2),
        [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(encode::int64(200), [200, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        encode::uint64(0x0102_0304_0506_0708),
        [8, 7, 6, 5, 4, 3, 2, 1]
    );
    assert_eq!(encode::double(1.0), [0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    assert_eq!(encode::boolean(true), [1]);
    assert_eq!(encode::boolean(false), [0]);
    assert_eq!(
        encode::duration_nanos(1_000_000_000),
        [0x00, 0xca, 0x9a, 0x3b, 0, 0, 0, 0]
    );
    assert_eq!(encode::timestamp_nanos(1), [1, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn string_list_is_pairs_with_empty_values() {
    let items: [&[u8]; 2] = [b"h2", b"http/1.1"];
    let bytes = encode::string_list(items);
    let expected: [u8; 4 + 16 + 3 + 1 + 9 + 1] = [
        2, 0, 0, 0, // 2 elements
        2, 0, 0, 0, 0, 0, 0, 0, // "h2", ""
        8, 0, 0, 0, 0, 0, 0, 0, // "http/1.1", ""
        b'h', b'2', 0, 0, // h2\0 \0
        b'h', b't', b't', b'p', b'/', b'1', b'.', b'1', 0, 0,
    ];
    assert_eq!(bytes, expected);
    let pairs = deserialize_pairs(&bytes).unwrap();
    assert_eq!(pairs, [(&b"h2"[..], &b""[..]), (b"http/1.1", b"")]);
    let empty: [&[u8]; 0] = [];
    assert!(encode::string_list(empty).is_empty());
}

#[test]
fn decode_inverts_encode() {
    assert_eq!(decode::int64(&encode::int64(-7)), Some(-7));
    assert_eq!(decode::uint64(&encode::uint64(u64::MAX)), Some(u64::MAX));
    assert_eq!(decode::double(&encode::double(2.5)), Some(2.5));
    assert_eq!(decode::boolean(&encode::boolean(true)), Some(true));
    assert_eq!(decode::int64(&[1, 2, 3]), None);
    assert_eq!(decode::boolean(&[]), None);
}

#[test]
fn properties_are_unique_and_documented() {
    let mut seen = HashSet::new();
    for spec in PROPERTIES {
        assert!(seen.insert(spec.path), "duplicate {}", spec.path);
        assert!(!spec.doc.is_empty(), "{}", spec.path);
        assert!(
            !spec.path.contains('\0') && !spec.path.ends_with('.'),
            "{}",
            spec.path
        );
    }
}

#[test]
fn full_support_is_exactly_what_the_host_serves() {
    let full = [
        "request.path",
        "request.url_path",
        "request.host",
        "request.scheme",
        "request.method",
        "request.headers",
        "request.id",
        "request.protocol",
        "request.query",
        "request.referer",
        "request.useragent",
        "source.address",
        "source.port",
        "destination.address",
        "destination.port",
        "response.code",
        "plugin_name",
        "plugin_root_id",
        "plugin_vm_id",
        "request.headers_bytes",
        "request.duration",
        "request.size",
        "request.total_size",
        "response.grpc_status",
        "response.headers",
        "response.headers_bytes",
        "response.trailers",
        "response.size",
        "response.total_size",
        "connection.id",
        "upstream.address",
        "upstream.port",
        "upstream.local_address",
        "upstream.request_attempt_count",
        "upstream.num_endpoints",
        "upstream.cx_pool_ready_duration",
        "xds.node",
        "xds.cluster_name",
        "xds.route_name",
        "xds.listener_direction",
        "connection_id",
        "node",
        "cluster_name",
        "route_name",
        "listener_direction",
    ];
    let partial = [
        "request.time",
        "response.code_details",
        "response.flags",
        "response.backend_latency",
        "connection.mtls",
        "upstream.transport_failure_reason",
        "filter_state",
    ];
    for spec in PROPERTIES {
        let expect_full = full.contains(&spec.path);
        assert_eq!(spec.support == Support::Full, expect_full, "{}", spec.path);
        let plaintext = spec.path.contains("certificate")
            || spec.path.ends_with("tls_version")
            || spec.path.ends_with("requested_server_name");
        if partial.contains(&spec.path) || plaintext {
            assert!(matches!(spec.support, Support::Partial(_)), "{}", spec.path);
        } else if !expect_full {
            assert!(
                matches!(spec.support, Support::Unimplemented(_)),
                "{}",
                spec.path
            );
        }
    }
    for path in full {
        assert!(property(path).is_some(), "{path}");
    }
}

#[test]
fn reference_properties_are_present() {
    for path in [
        "request.time",
        "request.duration",
        "request.size",
        "request.total_size",
        "request.headers_bytes",
        "response.code_details",
        "response.flags",
        "response.grpc_status",
        "response.headers",
        "response.trailers",
        "response.size",
        "response.total_size",
        "response.backend_latency",
        "connection.id",
        "connection.mtls",
        "connection.requested_server_name",
        "connection.tls_version",
        "connection.termination_details",
        "upstream.address",
        "upstream.port",
        "upstream.request_attempt_count",
        "upstream.locality",
        "metadata",
        "filter_state",
        "upstream_filter_state",
        "xds.node",
        "xds.cluster_name",
        "xds.listener_direction",
        "xds.filter_chain_name",
        "xds.upstream_host_locality_metadata",
        "connection_id",
    ] {
        assert!(property(path).is_some(), "{path}");
    }
    assert_eq!(property("response.code").unwrap().kind, PropertyKind::Int64);
    assert_eq!(property("source.port").unwrap().kind, PropertyKind::Int64);
    assert_eq!(
        property("request.time").unwrap().kind,
        PropertyKind::Timestamp
    );
    assert_eq!(
        property("connection.mtls").unwrap().kind,
        PropertyKind::Bool
    );
    assert_eq!(property("request.headers").unwrap().kind, PropertyKind::Map);
    assert!(property("request.nothing").is_none());
}

#[test]
fn legacy_aliases_mirror_xds() {
    assert_eq!(LEGACY_ALIASES.len(), 8);
    for (alias, target) in LEGACY_ALIASES {
        let a = property(alias).unwrap();
        let t = property(target).unwrap();
        assert_eq!(a.kind, t.kind, "{alias}");
        assert_eq!(a.support, t.support, "{alias}");
        assert_eq!(alias_target(alias), Some(*target));
    }
    assert_eq!(alias_target("xds.node"), None);
}

#[test]
fn resolve_takes_the_longest_prefix() {
    let segments = split_path(b"request\0headers\0x-foo");
    let (spec, used) = resolve(&segments).unwrap();
    assert_eq!((spec.path, used), ("request.headers", 2));

    let segments = split_path(b"request\0url_path");
    assert_eq!(
        resolve(&segments).map(|(s, n)| (s.path, n)),
        Some(("request.url_path", 2))
    );

    let segments = split_path(b"xds\0node\0id");
    assert_eq!(
        resolve(&segments).map(|(s, n)| (s.path, n)),
        Some(("xds.node", 2))
    );

    let segments = split_path(b"plugin_root_id");
    assert_eq!(
        resolve(&segments).map(|(s, n)| (s.path, n)),
        Some(("plugin_root_id", 1))
    );

    assert!(resolve(&split_path(b"request")).is_none());
    assert!(resolve(&split_path(b"my_custom_value")).is_none());
    assert!(resolve(&split_path(b"request.path")).is_none());
    assert!(resolve(&[]).is_none());
}
