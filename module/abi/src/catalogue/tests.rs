use std::collections::HashSet;

use super::*;

const NON_PROXY_ENV: [&str; 4] = [
    "envoy_resolve_dns",
    "emscripten_notify_memory_growth",
    "pthread_equal",
    "abort",
];

#[test]
fn hostcalls_have_no_duplicates() {
    let mut seen = HashSet::new();
    for h in HOSTCALLS {
        assert!(
            seen.insert((h.namespace, h.name)),
            "duplicate {:?}.{}",
            h.namespace,
            h.name
        );
    }
}

#[test]
fn callbacks_have_no_duplicates() {
    let mut seen = HashSet::new();
    for c in CALLBACKS {
        assert!(seen.insert(c.name), "duplicate callback {}", c.name);
    }
}

#[test]
fn version_specific_hostcalls() {
    let expected = [
        ("proxy_get_configuration", Versions::V0_1_0),
        ("proxy_continue_request", Versions::V0_1_0),
        ("proxy_continue_response", Versions::V0_1_0),
        ("proxy_clear_route_cache", Versions::V0_1_0),
        ("proxy_continue_stream", Versions::V0_2_X),
        ("proxy_close_stream", Versions::V0_2_X),
        ("proxy_get_log_level", Versions::V0_2_1),
    ];
    for (name, versions) in expected {
        let h = hostcall("env", name).unwrap();
        assert_eq!(h.versions, versions, "{name}");
    }
    for h in HOSTCALLS {
        if !expected.iter().any(|(name, _)| *name == h.name) {
            assert_eq!(
                h.versions,
                Versions::ALL,
                "{} should be in every version",
                h.name
            );
        }
    }
    for name in [
        "proxy_get_configuration",
        "proxy_continue_request",
        "proxy_continue_response",
        "proxy_clear_route_cache",
    ] {
        assert_eq!(
            hostcall("env", name).unwrap().signature(),
            match name {
                "proxy_get_configuration" => "(i32, i32) -> i32",
                _ => "() -> i32",
            }
        );
    }
}

#[test]
fn env_names_start_with_proxy() {
    for h in HOSTCALLS.iter().filter(|h| h.namespace == Namespace::Env) {
        assert!(
            h.name.starts_with("proxy_") || NON_PROXY_ENV.contains(&h.name),
            "{}",
            h.name
        );
    }
    for name in NON_PROXY_ENV {
        assert!(hostcall("env", name).is_some(), "{name}");
    }
}

#[test]
fn statuses_are_one_i32_result() {
    for h in HOSTCALLS {
        let returns_nothing = matches!(
            h.name,
            "proc_exit" | "emscripten_notify_memory_growth" | "abort"
        );
        if returns_nothing {
            assert!(h.results.is_empty(), "{}", h.name);
        } else {
            assert_eq!(h.results, &[ValType::I32], "{}", h.name);
        }
    }
}

#[test]
fn i64_parameters_are_where_the_abi_has_them() {
    let i64_users: Vec<&str> = HOSTCALLS
        .iter()
        .filter(|h| h.params.contains(&ValType::I64))
        .map(|h| h.name)
        .collect();
    assert_eq!(
        i64_users,
        [
            "proxy_increment_metric",
            "proxy_record_metric",
            "fd_seek",
            "clock_time_get",
            "path_open",
            "fd_pread",
            "fd_pwrite",
            "fd_readdir",
            "fd_advise",
            "fd_allocate",
            "fd_filestat_set_size",
            "fd_filestat_set_times",
            "fd_fdstat_set_rights",
            "path_filestat_set_times",
        ]
    );
    let sig = |module, name| hostcall(module, name).unwrap().signature();
    assert_eq!(sig("env", "proxy_increment_metric"), "(i32, i64) -> i32");
    assert_eq!(sig("env", "proxy_record_metric"), "(i32, i64) -> i32");
    assert_eq!(
        sig("wasi_unstable", "fd_seek"),
        "(i32, i64, i32, i32) -> i32"
    );
    assert_eq!(
        sig("wasi_snapshot_preview1", "clock_time_get"),
        "(i32, i64, i32) -> i32"
    );
    assert_eq!(sig("wasi_snapshot_preview1", "proc_exit"), "(i32) -> ()");
    assert_eq!(sig("env", "emscripten_notify_memory_growth"), "(i32) -> ()");
    assert_eq!(sig("env", "pthread_equal"), "(i32, i32) -> i32");
    assert_eq!(sig("env", "abort"), "(i32, i32, i32, i32) -> ()");
    assert!(hostcall("wasi_unstable", "abort").is_none());
    assert_eq!(
        sig("env", "proxy_send_local_response"),
        "(i32, i32, i32, i32, i32, i32, i32, i32) -> i32"
    );
}

#[test]
fn every_listed_wasi_function_is_present_under_both_modules() {
    let names = [
        "fd_write",
        "fd_read",
        "fd_seek",
        "fd_close",
        "fd_fdstat_get",
        "fd_fdstat_set_flags",
        "fd_prestat_get",
        "fd_prestat_dir_name",
        "environ_sizes_get",
        "environ_get",
        "args_sizes_get",
        "args_get",
        "clock_time_get",
        "clock_res_get",
        "random_get",
        "proc_exit",
        "sched_yield",
        "poll_oneoff",
        "path_open",
        "fd_filestat_get",
        "path_filestat_get",
        "fd_pread",
        "fd_pwrite",
        "fd_readdir",
        "fd_renumber",
        "fd_advise",
        "fd_allocate",
        "fd_datasync",
        "fd_sync",
        "fd_tell",
        "fd_filestat_set_size",
        "fd_filestat_set_times",
        "fd_fdstat_set_rights",
        "path_create_directory",
        "path_remove_directory",
        "path_unlink_file",
        "path_rename",
        "path_symlink",
        "path_readlink",
        "path_link",
        "path_filestat_set_times",
        "sock_accept",
        "sock_recv",
        "sock_send",
        "sock_shutdown",
        "proc_raise",
    ];
    let wasi_count = HOSTCALLS
        .iter()
        .filter(|h| h.namespace == Namespace::Wasi)
        .count();
    assert_eq!(wasi_count, names.len());
    for name in names {
        let a = hostcall("wasi_snapshot_preview1", name).unwrap();
        let b = hostcall("wasi_unstable", name).unwrap();
        assert!(std::ptr::eq(a, b), "{name}");
        assert_eq!(a.support, Support::Full, "{name}");
        assert!(hostcall("env", name).is_none(), "{name}");
    }
    assert!(hostcall("wasi_snapshot_preview2", "fd_write").is_none());
    assert!(hostcall("env", "fd_write").is_none());
}

#[test]
fn support_levels_match_what_the_host_implements() {
    let full = [
        "proxy_log",
        "proxy_get_log_level",
        "proxy_get_current_time_nanoseconds",
        "proxy_get_configuration",
        "proxy_set_effective_context",
        "proxy_get_buffer_bytes",
        "proxy_set_buffer_bytes",
        "proxy_get_buffer_status",
        "proxy_get_header_map_pairs",
        "proxy_set_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_add_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_get_header_map_size",
        "proxy_send_local_response",
        "proxy_continue_stream",
        "proxy_continue_request",
        "proxy_continue_response",
        "proxy_clear_route_cache",
        "proxy_get_shared_data",
        "proxy_set_shared_data",
        "proxy_set_tick_period_milliseconds",
        "proxy_register_shared_queue",
        "proxy_resolve_shared_queue",
        "proxy_enqueue_shared_queue",
        "proxy_dequeue_shared_queue",
        "proxy_http_call",
        "proxy_grpc_call",
        "proxy_grpc_stream",
        "proxy_grpc_send",
        "proxy_grpc_cancel",
        "proxy_grpc_close",
        "proxy_get_status",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_record_metric",
        "proxy_get_metric",
        "emscripten_notify_memory_growth",
        "pthread_equal",
        "abort",
    ];
    let partial = [
        "proxy_get_property",
        "proxy_set_property",
        "proxy_close_stream",
        "proxy_done",
        "proxy_call_foreign_function",
    ];
    for h in HOSTCALLS.iter().filter(|h| h.namespace == Namespace::Env) {
        match h.support {
            Support::Full => assert!(full.contains(&h.name), "{} is not Full", h.name),
            Support::Partial(note) => {
                assert!(partial.contains(&h.name), "{} is not Partial", h.name);
                assert!(!note.is_empty());
            }
            Support::Unimplemented(note) => {
                assert!(
                    !full.contains(&h.name) && !partial.contains(&h.name),
                    "{}",
                    h.name
                );
                assert!(!note.is_empty());
            }
        }
    }
    assert_eq!(
        hostcall("env", "proxy_http_call").unwrap().support.label(),
        "full"
    );
}

#[test]
fn every_hostcall_is_documented() {
    for h in HOSTCALLS {
        assert!(
            h.doc.starts_with(h.name),
            "doc of {} should start with its name",
            h.name
        );
        assert!(
            h.section.starts_with("5.") || h.section.starts_with("14.1"),
            "{}",
            h.name
        );
    }
    for c in CALLBACKS {
        assert!(!c.doc.is_empty(), "{}", c.name);
    }
}

#[test]
fn callbacks_and_version_specific_params() {
    let headers = callback("proxy_on_request_headers").unwrap();
    assert_eq!(headers.params, &[ValType::I32; 3]);
    for name in ["proxy_on_request_headers", "proxy_on_response_headers"] {
        assert_eq!(
            callback_params(name, AbiVersion::V0_1_0),
            Some(&[ValType::I32; 2][..])
        );
        assert_eq!(
            callback_params(name, AbiVersion::V0_2_1),
            Some(&[ValType::I32; 3][..])
        );
    }
    assert_eq!(
        callback_params("proxy_on_request_body", AbiVersion::V0_1_0),
        Some(&[ValType::I32; 3][..])
    );
    assert_eq!(
        callback_params("proxy_on_foreign_function", AbiVersion::V0_1_0),
        None
    );
    assert!(callback_params("proxy_on_foreign_function", AbiVersion::V0_2_0).is_some());
    assert_eq!(
        callback_params("proxy_on_nothing", AbiVersion::V0_2_1),
        None
    );

    let alias = callback("proxy_on_grpc_trailing_metadata").unwrap();
    assert_eq!(
        alias.canonical_name(),
        "proxy_on_grpc_receive_trailing_metadata"
    );
    let target = callback(alias.canonical_name()).unwrap();
    assert_eq!(alias.params, target.params);
    assert_eq!(alias.results, target.results);
    for c in CALLBACKS {
        if let Some(target) = c.alias_of {
            assert!(
                callback(target).is_some_and(|t| t.alias_of.is_none()),
                "{}",
                c.name
            );
        }
    }

    let sig = |name| callback(name).unwrap().signature();
    assert_eq!(sig("proxy_on_memory_allocate"), "(i32) -> i32");
    assert_eq!(sig("malloc"), "(i32) -> i32");
    assert_eq!(sig("_initialize"), "() -> ()");
    assert_eq!(sig("_start"), "() -> ()");
    assert_eq!(sig("main"), "(i32, i32) -> i32");
    assert_eq!(sig("__main_void"), "() -> i32");
    assert_eq!(sig("proxy_on_context_create"), "(i32, i32) -> ()");
    assert_eq!(sig("proxy_on_vm_start"), "(i32, i32) -> i32");
    assert_eq!(
        sig("proxy_on_http_call_response"),
        "(i32, i32, i32, i32, i32) -> ()"
    );
    assert_eq!(sig("envoy_on_resolve_dns"), "(i32, i32, i32) -> ()");
    assert_eq!(sig("envoy_on_stats_update"), "(i32, i32) -> ()");
}

#[test]
fn versions_set() {
    assert!(Versions::ALL.contains(AbiVersion::V0_1_0));
    assert!(!Versions::V0_2_X.contains(AbiVersion::V0_1_0));
    assert!(Versions::V0_2_X.contains(AbiVersion::V0_2_0));
    assert_eq!(Versions::V0_2_0.union(Versions::V0_2_1), Versions::V0_2_X);
    assert_eq!(Versions::V0_1_0.union(Versions::V0_2_X), Versions::ALL);
    assert_eq!(Versions::only(AbiVersion::V0_2_1), Versions::V0_2_1);
    assert_eq!(Versions::ALL.describe(), "all");
    assert_eq!(Versions::V0_2_X.describe(), "0.2.0, 0.2.1");
    assert_eq!(Versions::V0_1_0.describe(), "0.1.0");
    assert_eq!(Versions::NONE.describe(), "none");
    assert!(Versions::NONE.is_empty());
}

#[test]
fn namespaces() {
    assert_eq!(Namespace::Env.module_names(), ["env"]);
    assert_eq!(
        Namespace::Wasi.module_names(),
        ["wasi_snapshot_preview1", "wasi_unstable"]
    );
    assert_eq!(
        Namespace::from_module("wasi_unstable"),
        Some(Namespace::Wasi)
    );
    assert_eq!(Namespace::from_module("proxy"), None);
}

#[test]
fn callback_support() {
    let called = |name| callback(name).unwrap().support;
    for name in [
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_request_trailers",
        "proxy_on_response_trailers",
        "proxy_on_log",
        "proxy_on_tick",
        "proxy_on_queue_ready",
        "proxy_on_http_call_response",
        "proxy_on_grpc_receive_initial_metadata",
        "proxy_on_grpc_receive",
        "proxy_on_grpc_receive_trailing_metadata",
        "proxy_on_grpc_close",
    ] {
        assert_eq!(called(name), Support::Full, "{name}");
    }
    for name in ["proxy_validate_configuration", "proxy_on_foreign_function"] {
        assert!(!called(name).is_implemented(), "{name}");
    }
    // An alias is called exactly when the callback it stands for is.
    for c in CALLBACKS {
        if let Some(target) = c.alias_of {
            assert_eq!(c.support, called(target), "{}", c.name);
        }
    }
}

#[test]
fn called_callbacks_are_the_context_callbacks_the_host_runs() {
    let names: Vec<&str> = called_callbacks().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "proxy_on_context_create",
            "proxy_on_vm_start",
            "proxy_on_configure",
            "proxy_on_tick",
            "proxy_on_queue_ready",
            "proxy_on_done",
            "proxy_on_log",
            "proxy_on_delete",
            "proxy_on_request_headers",
            "proxy_on_request_body",
            "proxy_on_request_trailers",
            "proxy_on_response_headers",
            "proxy_on_response_body",
            "proxy_on_response_trailers",
            "proxy_on_http_call_response",
            "proxy_on_grpc_receive_initial_metadata",
            "proxy_on_grpc_receive",
            "proxy_on_grpc_receive_trailing_metadata",
            "proxy_on_grpc_close",
        ]
    );
}
