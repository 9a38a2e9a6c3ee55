//! Capabilities: the hostcalls a plugin may call, named one by one or by family.
//!
//! Envoy restricts a plugin with `capability_restriction_config.allowed_capabilities`, a set
//! of hostcall names (`proxy_*` and WASI functions); proxy-wasm-cpp-host links every name
//! missing from a non-empty set to a stub that returns INTERNAL_FAILURE (WASI: errno
//! `NOTCAPABLE`, 76). wasmbridge takes the same names, and also [`FAMILIES`]: groups of
//! hostcalls that serve one purpose (`http_calls`, `headers_write`, ...). Every hostcall of
//! the catalogue but the toolchain helpers of [`sections::RUNTIME`] belongs to exactly one
//! family; those helpers are always linked, as in Envoy.
//!
//! ```
//! use wasmbridge_abi::capability::{denied_hostcalls, expand};
//!
//! assert_eq!(expand("local_reply")?, &["proxy_send_local_response"]);
//! // Everything but the header writes:
//! let denied = denied_hostcalls(None, &["headers_write"])?;
//! assert!(denied.contains("proxy_add_header_map_value"));
//! assert!(!denied.contains("proxy_get_header_map_value"));
//! // Only logging and the header reads:
//! let denied = denied_hostcalls(Some(&["logging", "headers_read"]), &[])?;
//! assert!(denied.contains("proxy_http_call") && denied.contains("fd_write"));
//! assert!(!denied.contains("proxy_log"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;

use crate::catalogue::{HOSTCALLS, HostcallSpec, Namespace, sections};

/// A named group of hostcalls that serve one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Family {
    /// The name used in configurations, e.g. `http_calls`.
    pub name: &'static str,
    /// What the family lets a plugin do.
    pub doc: &'static str,
    /// Its hostcalls, by catalogue name.
    pub hostcalls: &'static [&'static str],
}

/// Why a name is not a capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownCapability {
    /// A guest export (`proxy_on_*`), which capabilities do not cover.
    #[error(
        "`{0}` is a callback, not a hostcall: wasmbridge restricts hostcalls only and calls \
         every callback a module exports"
    )]
    Callback(String),
    /// A toolchain helper that is always linked.
    #[error("`{0}` is a toolchain helper, always linked (as in Envoy), not a capability")]
    Helper(String),
    /// A `proxy_*` name the catalogue does not have.
    #[error("unknown hostcall `{name}`; the proxy hostcalls are: {}", proxy_names().join(", "))]
    Hostcall {
        /// The name as given.
        name: String,
    },
    /// Neither a family nor a hostcall.
    #[error(
        "unknown capability `{name}`: expected a family ({}) or a hostcall name (a `proxy_*` \
         hostcall or a WASI function such as `fd_write`; docs/security.md lists them)",
        family_names().join(", ")
    )]
    Name {
        /// The name as given.
        name: String,
    },
}

/// Every family, each hostcall of the catalogue (but the [`sections::RUNTIME`] helpers) in
/// exactly one.
pub static FAMILIES: &[Family] = &[
    Family {
        name: "logging",
        doc: "Write to the proxy's log and read its level.",
        hostcalls: &["proxy_log", "proxy_get_log_level"],
    },
    Family {
        name: "clock",
        doc: "Read the wall clock.",
        hostcalls: &["proxy_get_current_time_nanoseconds"],
    },
    Family {
        name: "timers",
        doc: "Set the root context's tick period.",
        hostcalls: &["proxy_set_tick_period_milliseconds"],
    },
    Family {
        name: "context",
        doc: "Read the configuration (ABI 0.1.0), switch the effective context, finish a \
              deferred shutdown.",
        hostcalls: &[
            "proxy_get_configuration",
            "proxy_set_effective_context",
            "proxy_done",
        ],
    },
    Family {
        name: "buffers_read",
        doc: "Read buffers: bodies, the configurations (ABI 0.2.x), callout answers.",
        hostcalls: &["proxy_get_buffer_bytes", "proxy_get_buffer_status"],
    },
    Family {
        name: "body_write",
        doc: "Change buffers: request and response bodies.",
        hostcalls: &["proxy_set_buffer_bytes"],
    },
    Family {
        name: "headers_read",
        doc: "Read header, trailer and callout metadata maps.",
        hostcalls: &[
            "proxy_get_header_map_pairs",
            "proxy_get_header_map_value",
            "proxy_get_header_map_size",
        ],
    },
    Family {
        name: "headers_write",
        doc: "Change header, trailer and callout metadata maps; without it headers are \
              read-only.",
        hostcalls: &[
            "proxy_set_header_map_pairs",
            "proxy_add_header_map_value",
            "proxy_replace_header_map_value",
            "proxy_remove_header_map_value",
        ],
    },
    Family {
        name: "properties_read",
        doc: "Read properties (request, connection, upstream, node, filter state).",
        hostcalls: &["proxy_get_property"],
    },
    Family {
        name: "properties_write",
        doc: "Store per-stream property values.",
        hostcalls: &["proxy_set_property"],
    },
    Family {
        name: "stream_control",
        doc: "Resume, reset or re-route a stream.",
        hostcalls: &[
            "proxy_continue_stream",
            "proxy_close_stream",
            "proxy_continue_request",
            "proxy_continue_response",
            "proxy_clear_route_cache",
        ],
    },
    Family {
        name: "local_reply",
        doc: "Answer a request instead of the upstream.",
        hostcalls: &["proxy_send_local_response"],
    },
    Family {
        name: "http_calls",
        doc: "Make HTTP callouts to clusters.",
        hostcalls: &["proxy_http_call"],
    },
    Family {
        name: "grpc_calls",
        doc: "Make gRPC calls and streams to clusters, and read their status.",
        hostcalls: &[
            "proxy_grpc_call",
            "proxy_grpc_stream",
            "proxy_grpc_send",
            "proxy_grpc_cancel",
            "proxy_grpc_close",
            "proxy_get_status",
        ],
    },
    Family {
        name: "shared_data",
        doc: "Read and write the process-wide key-value store.",
        hostcalls: &["proxy_get_shared_data", "proxy_set_shared_data"],
    },
    Family {
        name: "shared_queues",
        doc: "Register, resolve, fill and drain shared queues.",
        hostcalls: &[
            "proxy_register_shared_queue",
            "proxy_resolve_shared_queue",
            "proxy_enqueue_shared_queue",
            "proxy_dequeue_shared_queue",
        ],
    },
    Family {
        name: "metrics",
        doc: "Define and update guest metrics.",
        hostcalls: &[
            "proxy_define_metric",
            "proxy_increment_metric",
            "proxy_record_metric",
            "proxy_get_metric",
        ],
    },
    Family {
        name: "foreign_functions",
        doc: "Call the proxy's named extensions (clear_route_cache, ...).",
        hostcalls: &["proxy_call_foreign_function"],
    },
    Family {
        name: "wasi_stdio",
        doc: "WASI standard output and error (to the log) and their descriptors.",
        hostcalls: &[
            "fd_write",
            "fd_read",
            "fd_seek",
            "fd_close",
            "fd_fdstat_get",
            "fd_fdstat_set_flags",
        ],
    },
    Family {
        name: "wasi_environ",
        doc: "WASI environment variables (plugins[].environment_variables).",
        hostcalls: &["environ_sizes_get", "environ_get"],
    },
    Family {
        name: "wasi_args",
        doc: "WASI command-line arguments (always none).",
        hostcalls: &["args_sizes_get", "args_get"],
    },
    Family {
        name: "wasi_clock",
        doc: "WASI clocks.",
        hostcalls: &["clock_time_get", "clock_res_get"],
    },
    Family {
        name: "wasi_random",
        doc: "WASI random bytes.",
        hostcalls: &["random_get"],
    },
    Family {
        name: "wasi_process",
        doc: "WASI exit, signals, yielding and polling.",
        hostcalls: &["proc_exit", "proc_raise", "sched_yield", "poll_oneoff"],
    },
    Family {
        name: "wasi_files",
        doc: "WASI files and directories (there are none: every call fails as in Envoy).",
        hostcalls: &[
            "fd_prestat_get",
            "fd_prestat_dir_name",
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
        ],
    },
    Family {
        name: "wasi_sockets",
        doc: "WASI sockets (there are none: every call fails).",
        hostcalls: &["sock_accept", "sock_recv", "sock_send", "sock_shutdown"],
    },
];

/// The family named `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The family `hostcall` belongs to; `None` for a toolchain helper or an unknown name.
pub fn family_of(hostcall: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.hostcalls.contains(&hostcall))
}

/// The catalogue hostcall named `name` that a capability can cover: any `env` or WASI
/// hostcall but the [`sections::RUNTIME`] helpers.
pub fn restrictable(name: &str) -> Option<&'static HostcallSpec> {
    HOSTCALLS
        .iter()
        .find(|h| h.name == name && h.section != sections::RUNTIME)
}

/// The hostcalls a capability name stands for: a family's, or the one hostcall so named.
pub fn expand(name: &str) -> Result<&'static [&'static str], UnknownCapability> {
    if let Some(f) = family(name) {
        return Ok(f.hostcalls);
    }
    if let Some(spec) = restrictable(name) {
        return Ok(std::slice::from_ref(&spec.name));
    }
    Err(if name.starts_with("proxy_on_") {
        UnknownCapability::Callback(name.to_string())
    } else if HOSTCALLS.iter().any(|h| h.name == name) {
        UnknownCapability::Helper(name.to_string())
    } else if name.starts_with("proxy_") {
        UnknownCapability::Hostcall {
            name: name.to_string(),
        }
    } else {
        UnknownCapability::Name {
            name: name.to_string(),
        }
    })
}

/// The hostcalls a plugin may not call: without `allowed`, those `denied` names; with it,
/// also every restrictable hostcall it does not name. `denied` wins over `allowed`.
pub fn denied_hostcalls<S: AsRef<str>>(
    allowed: Option<&[S]>,
    denied: &[S],
) -> Result<BTreeSet<&'static str>, UnknownCapability> {
    let mut out = BTreeSet::new();
    if let Some(allowed) = allowed {
        let mut kept: BTreeSet<&str> = BTreeSet::new();
        for name in allowed {
            kept.extend(expand(name.as_ref())?);
        }
        out.extend(
            FAMILIES
                .iter()
                .flat_map(|f| f.hostcalls.iter().copied())
                .filter(|h| !kept.contains(h)),
        );
    }
    for name in denied {
        out.extend(expand(name.as_ref())?);
    }
    Ok(out)
}

/// The family names, in table order.
pub fn family_names() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.name).collect()
}

/// The names of the `proxy_*` hostcalls, in catalogue order.
fn proxy_names() -> Vec<&'static str> {
    HOSTCALLS
        .iter()
        .filter(|h| h.namespace == Namespace::Env && h.name.starts_with("proxy_"))
        .map(|h| h.name)
        .collect()
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests;
