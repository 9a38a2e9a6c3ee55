//! The one table of every hostcall the host provides and every callback it may call.
//!
//! [`HOSTCALLS`] drives linker registration (each entry is linked once per module name of
//! its [`Namespace`]), the stubs for what is not implemented and the load-time compatibility
//! report. [`CALLBACKS`] lists the guest exports the host looks up, with the signatures it
//! accepts and whether it calls them. Both tables, with the properties, are rendered into
//! `docs/support.md` by the conformance suite (`tests/conformance`), next to the cases that
//! exercise each entry.
//!
//! Signatures are wasm32 core types: pointers and sizes are `i32`; `proxy_*` hostcalls
//! return one `i32` status, WASI functions one `i32` errno.

use std::fmt;

use crate::version::AbiVersion;

use ValType::{I32, I64};

/// A wasm core value type as it appears in a hostcall or callback signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValType {
    /// `i32`: pointers, sizes, enums, ids, statuses.
    I32,
    /// `i64`: metric values, WASI timestamps, offsets and file sizes.
    I64,
}

/// A set of ABI versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versions(u8);

/// How much of a hostcall, a callback or a property the host implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Support {
    /// Implemented as Envoy behaves.
    Full,
    /// Implemented in part; the text says what is missing (for a callback: when the host
    /// does not call it).
    Partial(&'static str),
    /// Linked as a stub per the unknown-import policy, or for a callback never called; the
    /// text says why and which later work adds it.
    Unimplemented(&'static str),
}

/// The wasm import module a hostcall lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `env`: the `proxy_*` hostcalls and a few toolchain helpers.
    Env,
    /// WASI preview1, linked under both `wasi_snapshot_preview1` and `wasi_unstable`.
    Wasi,
}

/// How often real filters use a hostcall or callback (reference legend C / O / R).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Usage {
    /// Used by most filters.
    Common,
    /// Used by specific classes of filters.
    Occasional,
    /// Rare or legacy.
    Rare,
}

/// One host function a module may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostcallSpec {
    /// The import field name, e.g. `proxy_log` or `fd_write`.
    pub name: &'static str,
    /// The import module(s) it is linked under.
    pub namespace: Namespace,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types: one `i32` status/errno, or none (`proc_exit`,
    /// `emscripten_notify_memory_growth`, `abort`).
    pub results: &'static [ValType],
    /// The ABI versions for which Envoy links it.
    pub versions: Versions,
    /// What wasmbridge implements.
    pub support: Support,
    /// The reference section, one of [`sections`].
    pub section: &'static str,
    /// How often filters use it.
    pub usage: Usage,
    /// What it does, the statuses it returns and any difference from Envoy.
    pub doc: &'static str,
}

/// One guest export the host may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackSpec {
    /// The export name.
    pub name: &'static str,
    /// Parameter types for ABI 0.2.x; see [`callback_params`] for 0.1.0 differences.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
    /// The ABI versions in which the callback exists (Envoy looks it up).
    pub versions: Versions,
    /// Whether the host calls it: `Full` as Envoy does, `Partial` in some contexts only,
    /// `Unimplemented` never.
    pub support: Support,
    /// How often filters export it.
    pub usage: Usage,
    /// For an alias export, the canonical callback name it stands for.
    pub alias_of: Option<&'static str>,
    /// When it is called, what its arguments and result mean.
    pub doc: &'static str,
}

/// The section labels used in [`HostcallSpec::section`], after the reference's sections.
pub mod sections {
    /// Reference §5.1.
    pub const LOGGING: &str = "5.1 Logging, time, timers";
    /// Reference §5.2.
    pub const CONTEXT: &str = "5.2 Configuration and context control";
    /// Reference §5.3.
    pub const BUFFERS: &str = "5.3 Buffers";
    /// Reference §5.4.
    pub const HEADER_MAPS: &str = "5.4 Header maps";
    /// Reference §5.5.
    pub const PROPERTIES: &str = "5.5 Properties";
    /// Reference §5.6.
    pub const STREAM_CONTROL: &str = "5.6 Stream control, local replies";
    /// Reference §5.7.
    pub const CALLOUTS: &str = "5.7 Callouts";
    /// Reference §5.8.
    pub const SHARED: &str = "5.8 Shared data, queues, metrics, foreign functions";
    /// Reference §14.1, the `env` imports that are not `proxy_*`.
    pub const RUNTIME: &str = "14.1 Non-proxy env imports";
    /// Reference §14.1, WASI preview1.
    pub const WASI: &str = "14.1 WASI";
}

impl ValType {
    /// The wasm text name, `"i32"` or `"i64"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
        }
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Versions {
    /// No version.
    pub const NONE: Versions = Versions(0);
    /// ABI 0.1.0 only.
    pub const V0_1_0: Versions = Versions(1);
    /// ABI 0.2.0 only.
    pub const V0_2_0: Versions = Versions(2);
    /// ABI 0.2.1 only.
    pub const V0_2_1: Versions = Versions(4);
    /// ABI 0.2.0 and 0.2.1.
    pub const V0_2_X: Versions = Versions(2 | 4);
    /// Every supported version.
    pub const ALL: Versions = Versions(1 | 2 | 4);

    /// The set holding only `version`.
    pub const fn only(version: AbiVersion) -> Versions {
        Versions(Versions::bit(version))
    }

    /// Whether `version` is in the set.
    pub const fn contains(self, version: AbiVersion) -> bool {
        self.0 & Versions::bit(version) != 0
    }

    /// The union of two sets.
    pub const fn union(self, other: Versions) -> Versions {
        Versions(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The versions in the set, oldest first.
    pub fn iter(self) -> impl Iterator<Item = AbiVersion> {
        AbiVersion::ALL
            .into_iter()
            .filter(move |v| self.contains(*v))
    }

    /// `"all"` for every version, else the versions joined by `", "` (e.g.
    /// `"0.2.0, 0.2.1"`); `"none"` for the empty set.
    pub fn describe(self) -> String {
        if self == Versions::ALL {
            return "all".to_owned();
        }
        if self.is_empty() {
            return "none".to_owned();
        }
        self.iter()
            .map(AbiVersion::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    const fn bit(version: AbiVersion) -> u8 {
        match version {
            AbiVersion::V0_1_0 => 1,
            AbiVersion::V0_2_0 => 2,
            AbiVersion::V0_2_1 => 4,
        }
    }
}

impl Support {
    /// `"full"`, `"partial"` or `"unimplemented"`.
    pub const fn label(self) -> &'static str {
        match self {
            Support::Full => "full",
            Support::Partial(_) => "partial",
            Support::Unimplemented(_) => "unimplemented",
        }
    }

    /// What is missing, for `Partial` and `Unimplemented`.
    pub const fn note(self) -> Option<&'static str> {
        match self {
            Support::Full => None,
            Support::Partial(note) | Support::Unimplemented(note) => Some(note),
        }
    }

    /// Whether the host has a real implementation (`Full` or `Partial`).
    pub const fn is_implemented(self) -> bool {
        !matches!(self, Support::Unimplemented(_))
    }
}

impl Namespace {
    /// The wasm import module names this namespace is linked under.
    pub fn module_names(self) -> &'static [&'static str] {
        match self {
            Namespace::Env => &["env"],
            Namespace::Wasi => &["wasi_snapshot_preview1", "wasi_unstable"],
        }
    }

    /// The namespace of a wasm import module name, if it is one the host links.
    pub fn from_module(module: &str) -> Option<Namespace> {
        [Namespace::Env, Namespace::Wasi]
            .into_iter()
            .find(|ns| ns.module_names().contains(&module))
    }
}

impl Usage {
    /// The reference legend letter: `"C"`, `"O"` or `"R"`.
    pub const fn letter(self) -> &'static str {
        match self {
            Usage::Common => "C",
            Usage::Occasional => "O",
            Usage::Rare => "R",
        }
    }
}

impl HostcallSpec {
    /// The signature in wasm text style, e.g. `(i32, i64) -> i32`.
    pub fn signature(&self) -> String {
        signature(self.params, self.results)
    }

    /// Whether an import with these types matches this hostcall exactly.
    pub fn matches(&self, params: &[ValType], results: &[ValType]) -> bool {
        self.params == params && self.results == results
    }
}

impl CallbackSpec {
    /// The name of the callback this export stands for: [`CallbackSpec::alias_of`], or its
    /// own name.
    pub fn canonical_name(&self) -> &'static str {
        self.alias_of.unwrap_or(self.name)
    }

    /// The signature for ABI 0.2.x in wasm text style, e.g. `(i32, i32) -> i32`.
    pub fn signature(&self) -> String {
        signature(self.params, self.results)
    }
}

/// Formats a signature in wasm text style, e.g. `(i32, i64) -> i32` or `(i32) -> ()`.
pub fn signature(params: &[ValType], results: &[ValType]) -> String {
    let join = |types: &[ValType]| {
        types
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match results {
        [single] => format!("({}) -> {}", join(params), single),
        _ => format!("({}) -> ({})", join(params), join(results)),
    }
}

/// The hostcall linked as `module.name`, where `module` is the wasm import module name
/// (`"env"`, `"wasi_snapshot_preview1"` or `"wasi_unstable"`).
pub fn hostcall(module: &str, name: &str) -> Option<&'static HostcallSpec> {
    let namespace = Namespace::from_module(module)?;
    HOSTCALLS
        .iter()
        .find(|h| h.namespace == namespace && h.name == name)
}

/// The callback exported under `name` (aliases included).
pub fn callback(name: &str) -> Option<&'static CallbackSpec> {
    CALLBACKS.iter().find(|c| c.name == name)
}

/// The context callbacks the host calls (fully or partly): every `proxy_on_*` export of
/// [`CALLBACKS`] but the allocator. The host resolves per-callback metric handles for these.
pub fn called_callbacks() -> impl Iterator<Item = &'static CallbackSpec> {
    CALLBACKS.iter().filter(|c| {
        c.support.is_implemented()
            && c.alias_of.is_none()
            && c.name.starts_with("proxy_on_")
            && c.name != "proxy_on_memory_allocate"
    })
}

/// The parameters the host passes to callback `name` under ABI `version`, or `None` if the
/// callback is unknown or not called in that version.
///
/// Only the request/response headers callbacks differ: `(ctx, num_headers)` in 0.1.0,
/// `(ctx, num_headers, end_of_stream)` in 0.2.x.
pub fn callback_params(name: &str, version: AbiVersion) -> Option<&'static [ValType]> {
    let spec = callback(name)?;
    if !spec.versions.contains(version) {
        return None;
    }
    let headers = matches!(
        spec.name,
        "proxy_on_request_headers" | "proxy_on_response_headers"
    );
    if headers && version == AbiVersion::V0_1_0 {
        return Some(&[I32, I32]);
    }
    Some(spec.params)
}

/// A `proxy_*`-style `env` hostcall returning one `i32` status.
const fn env(
    name: &'static str,
    params: &'static [ValType],
    versions: Versions,
    support: Support,
    section: &'static str,
    usage: Usage,
    doc: &'static str,
) -> HostcallSpec {
    HostcallSpec {
        name,
        namespace: Namespace::Env,
        params,
        results: &[I32],
        versions,
        support,
        section,
        usage,
        doc,
    }
}

/// A WASI preview1 function: all versions, fully supported as reference §14.1 describes.
const fn wasi(
    name: &'static str,
    params: &'static [ValType],
    results: &'static [ValType],
    usage: Usage,
    doc: &'static str,
) -> HostcallSpec {
    HostcallSpec {
        name,
        namespace: Namespace::Wasi,
        params,
        results,
        versions: Versions::ALL,
        support: Support::Full,
        section: sections::WASI,
        usage,
        doc,
    }
}

/// A callback; `results` empty for `() -> ()`-style callbacks.
const fn cb(
    name: &'static str,
    params: &'static [ValType],
    results: &'static [ValType],
    versions: Versions,
    support: Support,
    usage: Usage,
    doc: &'static str,
) -> CallbackSpec {
    CallbackSpec {
        name,
        params,
        results,
        versions,
        support,
        usage,
        alias_of: None,
        doc,
    }
}

const ALL: Versions = Versions::ALL;
const FULL: Support = Support::Full;
const C: Usage = Usage::Common;
const O: Usage = Usage::Occasional;
const R: Usage = Usage::Rare;
const NO_VALUES: &[ValType] = &[];

const ROOTS_NOT_SHUT_DOWN: &str =
    "called for HTTP stream contexts; root contexts are not shut down yet, so never for a root";
const TCP_NOT_SUPPORTED: &str = "HTTP filters only: TCP stream contexts are not supported";
const NO_METADATA: &str = "HTTP/2 METADATA frames are not delivered to filters";

/// Every hostcall: each `env.proxy_*` import of ABI 0.1.0, 0.2.0 and 0.2.1, the non-proxy
/// `env` helpers and every WASI preview1 function. Each (namespace, name) appears once.
pub static HOSTCALLS: &[HostcallSpec] = &[
    // 5.1 Logging, time, timers
    env(
        "proxy_log",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::LOGGING,
        C,
        "proxy_log(level, message_ptr, message_size): logs the message at level 0..5. \
         OK; BAD_ARGUMENT for a level above 5; INVALID_MEMORY_ACCESS for a bad pointer. \
         Envoy prefixes the line with the plugin name, root id and vm id.",
    ),
    env(
        "proxy_get_log_level",
        &[I32],
        Versions::V0_2_1,
        FULL,
        sections::LOGGING,
        O,
        "proxy_get_log_level(ret_level_ptr): writes the host's current level 0..5 as a u32, \
         never 6 (off). OK; INVALID_MEMORY_ACCESS. ABI 0.2.1 only.",
    ),
    env(
        "proxy_get_current_time_nanoseconds",
        &[I32],
        ALL,
        FULL,
        sections::LOGGING,
        C,
        "proxy_get_current_time_nanoseconds(ret_u64_ptr): writes the wall clock in \
         nanoseconds since the Unix epoch as a u64. OK; INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_set_tick_period_milliseconds",
        &[I32],
        ALL,
        FULL,
        sections::LOGGING,
        C,
        "proxy_set_tick_period_milliseconds(period_ms): sets the tick period of the caller's \
         root context (also when called from a stream context); 0 disables. OK.",
    ),
    // 5.2 Configuration and context control
    env(
        "proxy_get_configuration",
        &[I32, I32],
        Versions::V0_1_0,
        FULL,
        sections::CONTEXT,
        R,
        "proxy_get_configuration(ret_ptr_ptr, ret_size_ptr): the plugin configuration during \
         proxy_on_configure, else the VM configuration; empty is 0/0. OK; \
         INVALID_MEMORY_ACCESS. ABI 0.1.0 only (0.2.x reads buffers 6 and 7).",
    ),
    env(
        "proxy_set_effective_context",
        &[I32],
        ALL,
        FULL,
        sections::CONTEXT,
        C,
        "proxy_set_effective_context(context_id): later hostcalls in the current callback act \
         on that context; reset at every host-to-guest call. OK; BAD_ARGUMENT for an unknown \
         context id.",
    ),
    env(
        "proxy_done",
        &[],
        ALL,
        Support::Partial(
            "roots are not shut down with on_done yet, so nothing is ever pending: NOT_FOUND",
        ),
        sections::CONTEXT,
        R,
        "proxy_done(): completes a root context's shutdown that its proxy_on_done deferred \
         by returning false; proxy_on_delete follows after the callback. OK; NOT_FOUND when \
         nothing is pending (the Rust SDK panics on it).",
    ),
    // 5.3 Buffers
    env(
        "proxy_get_buffer_bytes",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::BUFFERS,
        C,
        "proxy_get_buffer_bytes(type, start, max_size, ret_ptr_ptr, ret_size_ptr): copies up \
         to max_size bytes from start, clamped to the buffer; start past the end gives OK and \
         empty. Range arithmetic is 64-bit (SDKs pass max_size 0xFFFFFFFF). OK; NOT_FOUND if \
         the buffer is not available now; BAD_ARGUMENT for a type above 8; \
         INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_get_buffer_status",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::BUFFERS,
        R,
        "proxy_get_buffer_status(type, ret_size_ptr, ret_flags_ptr): writes the buffer size \
         and flags (always 0, as Envoy). OK; NOT_FOUND; BAD_ARGUMENT; INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_set_buffer_bytes",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::BUFFERS,
        C,
        "proxy_set_buffer_bytes(type, start, size, data_ptr, data_size): Envoy's edit modes: \
         start 0 size 0 prepends, start 0 replaces the first size bytes (all when size >= \
         length), start >= length appends. OK; NOT_FOUND; BAD_ARGUMENT for a bad or read-only \
         type or a mid-buffer start; INVALID_MEMORY_ACCESS. Envoy leaves content-length alone.",
    ),
    // 5.4 Header maps
    env(
        "proxy_get_header_map_pairs",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::HEADER_MAPS,
        C,
        "proxy_get_header_map_pairs(type, ret_ptr_ptr, ret_size_ptr): every pair in wire \
         order, one per occurrence, serialized (reference 7.2), without the request headers \
         the plugin's redaction hides; empty is 0/0. OK (an unavailable map is OK and empty); BAD_ARGUMENT for a type above 7; \
         INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_set_header_map_pairs",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::HEADER_MAPS,
        C,
        "proxy_set_header_map_pairs(type, map_ptr, map_size): drops every entry, pseudo-headers \
         included, and adds the given pairs with lower-cased keys; request headers the plugin's \
         redaction hides stay. OK; BAD_ARGUMENT if the map is unavailable or read-only; \
         INTERNAL_FAILURE if a pair names a redacted header; INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_get_header_map_value",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::HEADER_MAPS,
        C,
        "proxy_get_header_map_value(type, key_ptr, key_size, ret_ptr_ptr, ret_size_ptr): the \
         first value of the key, case-insensitively; a redacted request header is missing. OK; \
         NOT_FOUND for a missing key (0.2.x; 0.1.0 gives OK and empty); BAD_ARGUMENT if the map is unavailable in this phase \
         (NOT_FOUND during on_log); INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_add_header_map_value",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::HEADER_MAPS,
        C,
        "proxy_add_header_map_value(type, key_ptr, key_size, value_ptr, value_size): appends \
         an occurrence. OK; BAD_ARGUMENT if the map is unavailable or read-only; \
         INTERNAL_FAILURE for a redacted request header; INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_replace_header_map_value",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::HEADER_MAPS,
        C,
        "proxy_replace_header_map_value(type, key_ptr, key_size, value_ptr, value_size): \
         leaves exactly one entry for the key, adding it if absent. OK; BAD_ARGUMENT; \
         INTERNAL_FAILURE for a redacted request header; INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_remove_header_map_value",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::HEADER_MAPS,
        C,
        "proxy_remove_header_map_value(type, key_ptr, key_size): removes every occurrence. \
         OK, also when absent; BAD_ARGUMENT; INTERNAL_FAILURE for a redacted request header; \
         INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_get_header_map_size",
        &[I32, I32],
        ALL,
        FULL,
        sections::HEADER_MAPS,
        R,
        "proxy_get_header_map_size(type, ret_size_ptr): the summed byte length of keys and \
         values, as Envoy (the spec says the serialized size), redacted request headers left \
         out. OK; BAD_ARGUMENT; INVALID_MEMORY_ACCESS.",
    ),
    // 5.5 Properties
    env(
        "proxy_get_property",
        &[I32, I32, I32, I32],
        ALL,
        Support::Partial(
            "request.*, source.*, destination.*, response.code, plugin_* ; see PROPERTIES",
        ),
        sections::PROPERTIES,
        C,
        "proxy_get_property(path_ptr, path_size, ret_ptr_ptr, ret_size_ptr): the value at a \
         NUL-separated path, encoded as Envoy does (reference 13). OK; NOT_FOUND (also for \
         what the plugin's redaction covers); SERIALIZATION_FAILURE; INTERNAL_FAILURE; \
         INVALID_MEMORY_ACCESS.",
    ),
    env(
        "proxy_set_property",
        &[I32, I32, I32, I32],
        ALL,
        Support::Partial("per-stream values readable back; no declare_property schema"),
        sections::PROPERTIES,
        O,
        "proxy_set_property(path_ptr, path_size, value_ptr, value_size): stores an opaque \
         per-stream value, readable back with proxy_get_property and by later filters. OK; \
         NOT_FOUND without a stream (e.g. in a root context); BAD_ARGUMENT if rejected; \
         INTERNAL_FAILURE for a path the plugin's redaction covers; INVALID_MEMORY_ACCESS.",
    ),
    // 5.6 Stream control, local replies
    env(
        "proxy_continue_stream",
        &[I32],
        Versions::V0_2_X,
        FULL,
        sections::STREAM_CONTROL,
        C,
        "proxy_continue_stream(stream_type): resumes a paused stream after the callback \
         returns; harmless if not paused. OK; BAD_ARGUMENT for a type above 3; UNIMPLEMENTED \
         for UPSTREAM. ABI 0.2.x.",
    ),
    env(
        "proxy_close_stream",
        &[I32],
        Versions::V0_2_X,
        Support::Partial("HTTP resets the stream; TCP not supported"),
        sections::STREAM_CONTROL,
        O,
        "proxy_close_stream(stream_type): resets an HTTP stream or closes a TCP connection \
         after the callback returns. OK; BAD_ARGUMENT. ABI 0.2.x.",
    ),
    env(
        "proxy_continue_request",
        &[],
        Versions::V0_1_0,
        FULL,
        sections::STREAM_CONTROL,
        R,
        "proxy_continue_request(): 0.1.0 form of proxy_continue_stream(HTTP_REQUEST). OK. The \
         0.1.0 spec text says it returns nothing; SDKs and cpp-host declare an i32 status.",
    ),
    env(
        "proxy_continue_response",
        &[],
        Versions::V0_1_0,
        FULL,
        sections::STREAM_CONTROL,
        R,
        "proxy_continue_response(): 0.1.0 form of proxy_continue_stream(HTTP_RESPONSE). OK. \
         Returns an i32 status although the 0.1.0 spec text says nothing.",
    ),
    env(
        "proxy_clear_route_cache",
        &[],
        Versions::V0_1_0,
        FULL,
        sections::STREAM_CONTROL,
        R,
        "proxy_clear_route_cache(): asks for route selection to run again. OK. Returns an i32 \
         status although the 0.1.0 spec text says nothing. ABI 0.1.0 only.",
    ),
    env(
        "proxy_send_local_response",
        &[I32, I32, I32, I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::STREAM_CONTROL,
        C,
        "proxy_send_local_response(status_code, details_ptr, details_size, body_ptr, \
         body_size, headers_ptr, headers_size, grpc_status): replies instead of proxying, \
         after the callback returns, and forces the callback result to stop; headers are a \
         serialized map applied over the defaults; grpc_status -1 means plain HTTP. A second \
         call for the same stream is a no-op. OK; INVALID_MEMORY_ACCESS.",
    ),
    // 5.7 Callouts
    env(
        "proxy_http_call",
        &[I32, I32, I32, I32, I32, I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::CALLOUTS,
        C,
        "proxy_http_call(upstream_ptr, upstream_size, headers_ptr, headers_size, body_ptr, \
         body_size, trailers_ptr, trailers_size, timeout_ms, ret_token_ptr): an async HTTP \
         call to a named upstream, answered by proxy_on_http_call_response on the root. OK; \
         BAD_ARGUMENT for an unknown upstream, a negative timeout or a missing :method, :path \
         or :authority; INTERNAL_FAILURE if sending fails at once, or for a cluster outside \
         the plugin's capabilities.clusters (a wasmbridge setting).",
    ),
    env(
        "proxy_grpc_call",
        &[I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::CALLOUTS,
        O,
        "proxy_grpc_call(upstream_ptr, upstream_size, service_ptr, service_size, method_ptr, \
         method_size, metadata_ptr, metadata_size, message_ptr, message_size, timeout_ms, \
         ret_token_ptr): a unary gRPC call. OK; PARSE_FAILURE for an upstream that is neither \
         a GrpcService nor a known cluster; BAD_ARGUMENT; INTERNAL_FAILURE (also for a \
         cluster outside the plugin's capabilities.clusters).",
    ),
    env(
        "proxy_grpc_stream",
        &[I32, I32, I32, I32, I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::CALLOUTS,
        O,
        "proxy_grpc_stream(upstream_ptr, upstream_size, service_ptr, service_size, method_ptr, \
         method_size, metadata_ptr, metadata_size, ret_token_ptr): opens a bidirectional gRPC \
         stream. Statuses as proxy_grpc_call.",
    ),
    env(
        "proxy_grpc_send",
        &[I32, I32, I32, I32],
        ALL,
        FULL,
        sections::CALLOUTS,
        O,
        "proxy_grpc_send(token, message_ptr, message_size, end_stream): sends a message on a \
         gRPC stream. OK; BAD_ARGUMENT if the token is not a stream; NOT_FOUND.",
    ),
    env(
        "proxy_grpc_cancel",
        &[I32],
        ALL,
        FULL,
        sections::CALLOUTS,
        O,
        "proxy_grpc_cancel(token): cancels a gRPC call or resets a stream; no more callbacks. \
         OK; NOT_FOUND; BAD_ARGUMENT.",
    ),
    env(
        "proxy_grpc_close",
        &[I32],
        ALL,
        FULL,
        sections::CALLOUTS,
        O,
        "proxy_grpc_close(token): half-closes a gRPC stream (cancels a call). OK; NOT_FOUND; \
         BAD_ARGUMENT.",
    ),
    env(
        "proxy_get_status",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::CALLOUTS,
        O,
        "proxy_get_status(ret_code_ptr, ret_message_ptr_ptr, ret_message_size_ptr): the gRPC \
         status and message in proxy_on_grpc_close, or (11, \"reset\") after a failed HTTP \
         call. OK.",
    ),
    // 5.8 Shared data, queues, metrics, foreign functions
    env(
        "proxy_get_shared_data",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        C,
        "proxy_get_shared_data(key_ptr, key_size, ret_value_ptr_ptr, ret_value_size_ptr, \
         ret_cas_ptr): the value and its u32 CAS. OK; NOT_FOUND.",
    ),
    env(
        "proxy_set_shared_data",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        C,
        "proxy_set_shared_data(key_ptr, key_size, value_ptr, value_size, cas): stores the \
         value; cas 0 is unconditional, else it must match. OK; CAS_MISMATCH.",
    ),
    env(
        "proxy_register_shared_queue",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        O,
        "proxy_register_shared_queue(name_ptr, name_size, ret_queue_id_ptr): creates or opens \
         the queue (vm_id, name); the caller's root receives proxy_on_queue_ready. OK.",
    ),
    env(
        "proxy_resolve_shared_queue",
        &[I32, I32, I32, I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        O,
        "proxy_resolve_shared_queue(vm_id_ptr, vm_id_size, name_ptr, name_size, \
         ret_queue_id_ptr): looks a queue up; an empty vm_id means the caller's. OK; NOT_FOUND.",
    ),
    env(
        "proxy_enqueue_shared_queue",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        O,
        "proxy_enqueue_shared_queue(queue_id, value_ptr, value_size): appends and notifies the \
         owner. OK; NOT_FOUND.",
    ),
    env(
        "proxy_dequeue_shared_queue",
        &[I32, I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        O,
        "proxy_dequeue_shared_queue(queue_id, ret_ptr_ptr, ret_size_ptr): pops the front. OK; \
         EMPTY; NOT_FOUND.",
    ),
    env(
        "proxy_define_metric",
        &[I32, I32, I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        C,
        "proxy_define_metric(type, name_ptr, name_size, ret_metric_id_ptr): defines or finds \
         a process-wide metric by type and name (exported as wasmcustom_<name>). OK; \
         BAD_ARGUMENT for a type above 2.",
    ),
    env(
        "proxy_increment_metric",
        &[I32, I64],
        ALL,
        FULL,
        sections::SHARED,
        C,
        "proxy_increment_metric(metric_id, delta: i64): adds delta (gauges may go down). OK; \
         NOT_FOUND; BAD_ARGUMENT for a counter delta <= 0 or a histogram.",
    ),
    env(
        "proxy_record_metric",
        &[I32, I64],
        ALL,
        FULL,
        sections::SHARED,
        C,
        "proxy_record_metric(metric_id, value: i64 read as u64): sets a gauge, records a \
         histogram sample, adds to a counter. OK; NOT_FOUND.",
    ),
    env(
        "proxy_get_metric",
        &[I32, I32],
        ALL,
        FULL,
        sections::SHARED,
        O,
        "proxy_get_metric(metric_id, ret_u64_ptr): the current value. OK; NOT_FOUND; \
         BAD_ARGUMENT for a histogram.",
    ),
    env(
        "proxy_call_foreign_function",
        &[I32, I32, I32, I32, I32, I32],
        ALL,
        Support::Partial(
            "clear_route_cache; other names (set_envoy_filter_state, declare_property, ...) \
             answer NOT_FOUND",
        ),
        sections::SHARED,
        R,
        "proxy_call_foreign_function(name_ptr, name_size, args_ptr, args_size, ret_ptr_ptr, \
         ret_size_ptr): calls a named host extension; ret_ptr_ptr may be 0. OK; NOT_FOUND for \
         an unknown function; function-specific statuses.",
    ),
    // 14.1 Non-proxy env imports
    HostcallSpec {
        name: "envoy_resolve_dns",
        namespace: Namespace::Env,
        params: &[I32, I32, I32],
        results: &[I32],
        versions: ALL,
        support: Support::Unimplemented(
            "Envoy-only async DNS; linked as a stub so modules load, envoy_on_resolve_dns is \
             never called",
        ),
        section: sections::RUNTIME,
        usage: R,
        doc: "envoy_resolve_dns(address_ptr, address_size, ret_token_ptr): Envoy-only \
              asynchronous DNS lookup answered by envoy_on_resolve_dns. OK in Envoy.",
    },
    HostcallSpec {
        name: "emscripten_notify_memory_growth",
        namespace: Namespace::Env,
        params: &[I32],
        results: NO_VALUES,
        versions: ALL,
        support: FULL,
        section: sections::RUNTIME,
        usage: C,
        doc: "emscripten_notify_memory_growth(memory_index): imported by every C++ (emscripten) \
              module; a no-op.",
    },
    HostcallSpec {
        name: "pthread_equal",
        namespace: Namespace::Env,
        params: &[I32, I32],
        results: &[I32],
        versions: ALL,
        support: FULL,
        section: sections::RUNTIME,
        usage: O,
        doc: "pthread_equal(left, right): non-zero when the two thread ids are equal; imported \
              by some C++ modules.",
    },
    HostcallSpec {
        name: "abort",
        namespace: Namespace::Env,
        params: &[I32, I32, I32, I32],
        results: NO_VALUES,
        versions: ALL,
        support: FULL,
        section: sections::RUNTIME,
        usage: O,
        doc: "abort(message_ptr, file_name_ptr, line, column): AssemblyScript's default abort \
              (std/assembly/builtins.ts), imported by every AS module built without \
              `--use abort=`; AS calls it on a failed assertion or an unreachable path. The \
              strings are UTF-16LE with their byte length in the u32 before them (0 = null). \
              Logs an error naming the plugin with the decoded message and position, then \
              traps: the callback fails and the plugin's failure policy applies. Not provided \
              by Envoy, where such a module fails to load.",
    },
    // 14.1 WASI preview1
    wasi(
        "fd_write",
        &[I32, I32, I32, I32],
        &[I32],
        C,
        "fd_write(fd, iovs, iovs_len, ret_nwritten): fd 1 logs at info, fd 2 at error (one \
         trailing newline stripped); other fds BADF (8).",
    ),
    wasi(
        "fd_read",
        &[I32, I32, I32, I32],
        &[I32],
        R,
        "fd_read(fd, iovs, iovs_len, ret_nread): NOSYS (52).",
    ),
    wasi(
        "fd_seek",
        &[I32, I64, I32, I32],
        &[I32],
        R,
        "fd_seek(fd, offset: i64, whence, ret_newoffset): logs an error, returns 0.",
    ),
    wasi(
        "fd_close",
        &[I32],
        &[I32],
        R,
        "fd_close(fd): logs an error, returns 0.",
    ),
    wasi(
        "fd_fdstat_get",
        &[I32, I32],
        &[I32],
        O,
        "fd_fdstat_get(fd, ret_fdstat): fd 1 and 2 get a zeroed 24-byte fdstat with the write \
         right; other fds BADF (8). Needed by Go and Rust std.",
    ),
    wasi(
        "fd_fdstat_set_flags",
        &[I32, I32],
        &[I32],
        R,
        "fd_fdstat_set_flags(fd, flags): NOSYS (52).",
    ),
    wasi(
        "fd_prestat_get",
        &[I32, I32],
        &[I32],
        C,
        "fd_prestat_get(fd, ret_prestat): BADF (8), which ends wasi-libc's pre-opened \
         directory scan at start-up.",
    ),
    wasi(
        "fd_prestat_dir_name",
        &[I32, I32, I32],
        &[I32],
        R,
        "fd_prestat_dir_name(fd, path, path_len): NOSYS (52).",
    ),
    wasi(
        "environ_sizes_get",
        &[I32, I32],
        &[I32],
        C,
        "environ_sizes_get(ret_count, ret_buf_size): 0 variables, 0 bytes: the plugin \
         environment (Envoy's vm_config.environment_variables) has no configuration key yet.",
    ),
    wasi(
        "environ_get",
        &[I32, I32],
        &[I32],
        C,
        "environ_get(environ, environ_buf): writes the plugin environment as KEY=VALUE\\0 \
         strings; with no variables yet it writes nothing and succeeds.",
    ),
    wasi(
        "args_sizes_get",
        &[I32, I32],
        &[I32],
        C,
        "args_sizes_get(ret_argc, ret_buf_size): 0 arguments, 0 bytes.",
    ),
    wasi(
        "args_get",
        &[I32, I32],
        &[I32],
        C,
        "args_get(argv, argv_buf): no arguments; success.",
    ),
    wasi(
        "clock_time_get",
        &[I32, I64, I32],
        &[I32],
        C,
        "clock_time_get(clock_id, precision: i64, ret_time): clock 0 realtime, 1 monotonic, \
         in nanoseconds; other clocks NOTSUP (58).",
    ),
    wasi(
        "clock_res_get",
        &[I32, I32],
        &[I32],
        R,
        "clock_res_get(clock_id, ret_resolution): the clock resolution in nanoseconds.",
    ),
    wasi(
        "random_get",
        &[I32, I32],
        &[I32],
        C,
        "random_get(buf, buf_len): random bytes, at most 64 KiB per call; more is INVAL (28).",
    ),
    wasi(
        "proc_exit",
        &[I32],
        NO_VALUES,
        R,
        "proc_exit(code): fails the VM (Envoy logs an error); a live filter must never exit.",
    ),
    wasi(
        "sched_yield",
        &[],
        &[I32],
        O,
        "sched_yield(): success. Used by Go.",
    ),
    wasi(
        "poll_oneoff",
        &[I32, I32, I32, I32],
        &[I32],
        O,
        "poll_oneoff(in, out, nsubscriptions, ret_nevents): reports 0 events, success (Go \
         needs success).",
    ),
    wasi(
        "path_open",
        &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
        &[I32],
        O,
        "path_open(fd, dirflags, path, path_len, oflags, rights_base: i64, \
         rights_inheriting: i64, fdflags, ret_fd): NOENT (44).",
    ),
    wasi(
        "fd_filestat_get",
        &[I32, I32],
        &[I32],
        O,
        "fd_filestat_get(fd, ret_filestat): BADF (8).",
    ),
    wasi(
        "path_filestat_get",
        &[I32, I32, I32, I32, I32],
        &[I32],
        O,
        "path_filestat_get(fd, flags, path, path_len, ret_filestat): NOTSUP (58).",
    ),
    wasi(
        "fd_pread",
        &[I32, I32, I32, I64, I32],
        &[I32],
        O,
        "fd_pread(fd, iovs, iovs_len, offset: i64, ret_nread): NOSYS (52).",
    ),
    wasi(
        "fd_pwrite",
        &[I32, I32, I32, I64, I32],
        &[I32],
        O,
        "fd_pwrite(fd, iovs, iovs_len, offset: i64, ret_nwritten): trivial success.",
    ),
    wasi(
        "fd_readdir",
        &[I32, I32, I32, I64, I32],
        &[I32],
        O,
        "fd_readdir(fd, buf, buf_len, cookie: i64, ret_bufused): NOTDIR (54).",
    ),
    wasi(
        "fd_renumber",
        &[I32, I32],
        &[I32],
        O,
        "fd_renumber(fd, to): NOTSUP (58).",
    ),
    wasi(
        "fd_advise",
        &[I32, I64, I64, I32],
        &[I32],
        O,
        "fd_advise(fd, offset: i64, len: i64, advice): trivial success.",
    ),
    wasi(
        "fd_allocate",
        &[I32, I64, I64],
        &[I32],
        O,
        "fd_allocate(fd, offset: i64, len: i64): trivial success.",
    ),
    wasi(
        "fd_datasync",
        &[I32],
        &[I32],
        O,
        "fd_datasync(fd): trivial success.",
    ),
    wasi(
        "fd_sync",
        &[I32],
        &[I32],
        O,
        "fd_sync(fd): trivial success.",
    ),
    wasi(
        "fd_tell",
        &[I32, I32],
        &[I32],
        O,
        "fd_tell(fd, ret_offset): trivial success.",
    ),
    wasi(
        "fd_filestat_set_size",
        &[I32, I64],
        &[I32],
        O,
        "fd_filestat_set_size(fd, size: i64): trivial success.",
    ),
    wasi(
        "fd_filestat_set_times",
        &[I32, I64, I64, I32],
        &[I32],
        O,
        "fd_filestat_set_times(fd, atim: i64, mtim: i64, fst_flags): trivial success.",
    ),
    wasi(
        "fd_fdstat_set_rights",
        &[I32, I64, I64],
        &[I32],
        O,
        "fd_fdstat_set_rights(fd, rights_base: i64, rights_inheriting: i64): trivial success.",
    ),
    wasi(
        "path_create_directory",
        &[I32, I32, I32],
        &[I32],
        O,
        "path_create_directory(fd, path, path_len): NOTSUP (58).",
    ),
    wasi(
        "path_remove_directory",
        &[I32, I32, I32],
        &[I32],
        O,
        "path_remove_directory(fd, path, path_len): NOTSUP (58).",
    ),
    wasi(
        "path_unlink_file",
        &[I32, I32, I32],
        &[I32],
        O,
        "path_unlink_file(fd, path, path_len): NOTSUP (58).",
    ),
    wasi(
        "path_rename",
        &[I32, I32, I32, I32, I32, I32],
        &[I32],
        O,
        "path_rename(fd, old_path, old_path_len, new_fd, new_path, new_path_len): NOTSUP (58).",
    ),
    wasi(
        "path_symlink",
        &[I32, I32, I32, I32, I32],
        &[I32],
        O,
        "path_symlink(old_path, old_path_len, fd, new_path, new_path_len): NOTSUP (58).",
    ),
    wasi(
        "path_readlink",
        &[I32, I32, I32, I32, I32, I32],
        &[I32],
        O,
        "path_readlink(fd, path, path_len, buf, buf_len, ret_bufused): NOTSUP (58).",
    ),
    wasi(
        "path_link",
        &[I32, I32, I32, I32, I32, I32, I32],
        &[I32],
        O,
        "path_link(old_fd, old_flags, old_path, old_path_len, new_fd, new_path, \
         new_path_len): NOTSUP (58).",
    ),
    wasi(
        "path_filestat_set_times",
        &[I32, I32, I32, I32, I64, I64, I32],
        &[I32],
        O,
        "path_filestat_set_times(fd, flags, path, path_len, atim: i64, mtim: i64, \
         fst_flags): NOTSUP (58).",
    ),
    wasi(
        "sock_accept",
        &[I32, I32, I32],
        &[I32],
        O,
        "sock_accept(fd, flags, ret_fd): NOTSUP (58).",
    ),
    wasi(
        "sock_recv",
        &[I32, I32, I32, I32, I32, I32],
        &[I32],
        O,
        "sock_recv(fd, ri_data, ri_data_len, ri_flags, ret_datalen, ret_flags): NOTSUP (58).",
    ),
    wasi(
        "sock_send",
        &[I32, I32, I32, I32, I32],
        &[I32],
        O,
        "sock_send(fd, si_data, si_data_len, si_flags, ret_datalen): NOTSUP (58).",
    ),
    wasi(
        "sock_shutdown",
        &[I32, I32],
        &[I32],
        O,
        "sock_shutdown(fd, how): NOTSUP (58).",
    ),
    wasi(
        "proc_raise",
        &[I32],
        &[I32],
        R,
        "proc_raise(signal): NOTSUP (58); a filter cannot signal the proxy.",
    ),
];

/// Every guest export the host may call: the `proxy_on_*` callbacks, the allocators, the
/// WASI start-up entry points, the AssemblyScript alias and the Envoy-only callbacks.
///
/// The ABI version markers are exports too but are never called; see
/// [`crate::version::ABI_MARKERS`].
pub static CALLBACKS: &[CallbackSpec] = &[
    // Start-up and allocator (reference §3)
    cb(
        "_initialize",
        &[],
        &[],
        ALL,
        FULL,
        C,
        "WASI reactor initialisation; called first if exported.",
    ),
    cb(
        "main",
        &[I32, I32],
        &[I32],
        ALL,
        FULL,
        O,
        "main(argc, argv): called as main(0, 0) after _initialize, only if _initialize \
         exists.",
    ),
    cb(
        "__main_void",
        &[],
        &[I32],
        ALL,
        FULL,
        R,
        "The argument-less main of newer wasi-libc; tried after _initialize when main is \
         absent.",
    ),
    cb(
        "_start",
        &[],
        &[],
        ALL,
        FULL,
        C,
        "WASI command entry; called only if _initialize is absent. Must not exit.",
    ),
    cb(
        "proxy_on_memory_allocate",
        &[I32],
        &[I32],
        ALL,
        FULL,
        C,
        "proxy_on_memory_allocate(size) -> ptr: the guest allocator, preferred over malloc; \
         ptr 0 means failure.",
    ),
    cb(
        "malloc",
        &[I32],
        &[I32],
        ALL,
        FULL,
        C,
        "malloc(size) -> ptr: the legacy allocator, used when proxy_on_memory_allocate is \
         absent (TinyGo's malloc pins memory).",
    ),
    // Root context lifecycle
    cb(
        "proxy_on_context_create",
        &[I32, I32],
        &[],
        ALL,
        FULL,
        C,
        "proxy_on_context_create(context_id, parent_context_id): parent 0 creates a root \
         context.",
    ),
    cb(
        "proxy_on_vm_start",
        &[I32, I32],
        &[I32],
        ALL,
        FULL,
        C,
        "proxy_on_vm_start(root_context_id, vm_configuration_size) -> bool: the first \
         argument is the root id, never 0; false fails the VM start.",
    ),
    cb(
        "proxy_on_configure",
        &[I32, I32],
        &[I32],
        ALL,
        FULL,
        C,
        "proxy_on_configure(root_context_id, plugin_configuration_size) -> bool: false \
         rejects the configuration.",
    ),
    cb(
        "proxy_validate_configuration",
        &[I32, I32],
        &[I32],
        ALL,
        Support::Unimplemented("never called, as in Envoy"),
        R,
        "proxy_validate_configuration(root_context_id, configuration_size) -> bool: exported \
         by C++ SDK modules; Envoy never calls it.",
    ),
    cb(
        "proxy_on_tick",
        &[I32],
        &[],
        ALL,
        FULL,
        C,
        "proxy_on_tick(root_context_id): the root's tick timer fired.",
    ),
    cb(
        "proxy_on_queue_ready",
        &[I32, I32],
        &[],
        ALL,
        FULL,
        O,
        "proxy_on_queue_ready(root_context_id, queue_id): one call per enqueue, on the \
         owning root.",
    ),
    cb(
        "proxy_on_done",
        &[I32],
        &[I32],
        ALL,
        Support::Partial(ROOTS_NOT_SHUT_DOWN),
        C,
        "proxy_on_done(context_id) -> bool: false means the guest will call proxy_done; \
         honoured for roots only.",
    ),
    cb(
        "proxy_on_log",
        &[I32],
        &[],
        ALL,
        FULL,
        C,
        "proxy_on_log(context_id): access-log time; before on_done for HTTP streams.",
    ),
    cb(
        "proxy_on_delete",
        &[I32],
        &[],
        ALL,
        Support::Partial(ROOTS_NOT_SHUT_DOWN),
        C,
        "proxy_on_delete(context_id): the context is gone; once per context.",
    ),
    // TCP streams
    cb(
        "proxy_on_new_connection",
        &[I32],
        &[I32],
        ALL,
        Support::Unimplemented(TCP_NOT_SUPPORTED),
        O,
        "proxy_on_new_connection(context_id) -> action: a TCP connection was accepted.",
    ),
    cb(
        "proxy_on_downstream_data",
        &[I32, I32, I32],
        &[I32],
        ALL,
        Support::Unimplemented(TCP_NOT_SUPPORTED),
        O,
        "proxy_on_downstream_data(context_id, data_size, end_of_stream) -> action: \
         DOWNSTREAM_DATA is readable.",
    ),
    cb(
        "proxy_on_upstream_data",
        &[I32, I32, I32],
        &[I32],
        ALL,
        Support::Unimplemented(TCP_NOT_SUPPORTED),
        O,
        "proxy_on_upstream_data(context_id, data_size, end_of_stream) -> action: \
         UPSTREAM_DATA is readable.",
    ),
    cb(
        "proxy_on_downstream_connection_close",
        &[I32, I32],
        &[],
        ALL,
        Support::Unimplemented(TCP_NOT_SUPPORTED),
        O,
        "proxy_on_downstream_connection_close(context_id, peer_type).",
    ),
    cb(
        "proxy_on_upstream_connection_close",
        &[I32, I32],
        &[],
        ALL,
        Support::Unimplemented(TCP_NOT_SUPPORTED),
        O,
        "proxy_on_upstream_connection_close(context_id, peer_type).",
    ),
    // HTTP streams
    cb(
        "proxy_on_request_headers",
        &[I32, I32, I32],
        &[I32],
        ALL,
        FULL,
        C,
        "proxy_on_request_headers(context_id, num_headers, end_of_stream) -> action; ABI \
         0.1.0 passes (context_id, num_headers) only, see callback_params.",
    ),
    cb(
        "proxy_on_request_body",
        &[I32, I32, I32],
        &[I32],
        ALL,
        FULL,
        C,
        "proxy_on_request_body(context_id, body_size, end_of_stream) -> action; never called \
         for a bodyless request.",
    ),
    cb(
        "proxy_on_request_trailers",
        &[I32, I32],
        &[I32],
        ALL,
        FULL,
        O,
        "proxy_on_request_trailers(context_id, num_trailers) -> action: after the last \
         request body chunk (whose end_of_stream was false); the request trailers are \
         readable and writable; PAUSE stops until proxy_continue_stream(HTTP_REQUEST).",
    ),
    cb(
        "proxy_on_request_metadata",
        &[I32, I32],
        &[I32],
        ALL,
        Support::Unimplemented(NO_METADATA),
        R,
        "proxy_on_request_metadata(context_id, num_elements) -> u32: HTTP/2 METADATA (C++ \
         SDK); the result is ignored.",
    ),
    cb(
        "proxy_on_response_headers",
        &[I32, I32, I32],
        &[I32],
        ALL,
        FULL,
        C,
        "proxy_on_response_headers(context_id, num_headers, end_of_stream) -> action; ABI \
         0.1.0 passes (context_id, num_headers) only, see callback_params.",
    ),
    cb(
        "proxy_on_response_body",
        &[I32, I32, I32],
        &[I32],
        ALL,
        FULL,
        C,
        "proxy_on_response_body(context_id, body_size, end_of_stream) -> action.",
    ),
    cb(
        "proxy_on_response_trailers",
        &[I32, I32],
        &[I32],
        ALL,
        FULL,
        O,
        "proxy_on_response_trailers(context_id, num_trailers) -> action: after the last \
         response body chunk (whose end_of_stream was false); the response trailers are \
         readable and writable; PAUSE stops until proxy_continue_stream(HTTP_RESPONSE); a \
         local reply resets the stream (the response has started).",
    ),
    cb(
        "proxy_on_response_metadata",
        &[I32, I32],
        &[I32],
        ALL,
        Support::Unimplemented(NO_METADATA),
        R,
        "proxy_on_response_metadata(context_id, num_elements) -> u32: HTTP/2 METADATA (C++ \
         SDK); the result is ignored.",
    ),
    // Callouts
    cb(
        "proxy_on_http_call_response",
        &[I32, I32, I32, I32, I32],
        &[],
        ALL,
        FULL,
        C,
        "proxy_on_http_call_response(root_context_id, token, num_headers, body_size, \
         num_trailers): the answer to proxy_http_call, on the calling root; 0/0/0 after a \
         reset.",
    ),
    cb(
        "proxy_on_grpc_receive_initial_metadata",
        &[I32, I32, I32],
        &[],
        ALL,
        FULL,
        O,
        "proxy_on_grpc_receive_initial_metadata(root_context_id, token, num_elements): gRPC \
         streams only.",
    ),
    cb(
        "proxy_on_grpc_receive",
        &[I32, I32, I32],
        &[],
        ALL,
        FULL,
        O,
        "proxy_on_grpc_receive(root_context_id, token, message_size): GRPC_RECEIVE_BUFFER is \
         readable.",
    ),
    cb(
        "proxy_on_grpc_receive_trailing_metadata",
        &[I32, I32, I32],
        &[],
        ALL,
        FULL,
        O,
        "proxy_on_grpc_receive_trailing_metadata(root_context_id, token, num_elements): gRPC \
         streams only.",
    ),
    CallbackSpec {
        name: "proxy_on_grpc_trailing_metadata",
        params: &[I32, I32, I32],
        results: NO_VALUES,
        versions: ALL,
        support: FULL,
        usage: R,
        alias_of: Some("proxy_on_grpc_receive_trailing_metadata"),
        doc: "AssemblyScript runtimes export this name for \
              proxy_on_grpc_receive_trailing_metadata.",
    },
    cb(
        "proxy_on_grpc_close",
        &[I32, I32, I32],
        &[],
        ALL,
        FULL,
        O,
        "proxy_on_grpc_close(root_context_id, token, grpc_status): the call or stream ended.",
    ),
    cb(
        "proxy_on_foreign_function",
        &[I32, I32, I32],
        &[],
        Versions::V0_2_X,
        Support::Unimplemented(
            "no foreign function completes asynchronously; foreign functions come later",
        ),
        R,
        "proxy_on_foreign_function(context_id, function_id, arguments_size): an asynchronous \
         foreign function completed; CALL_DATA holds the result. ABI 0.2.x.",
    ),
    // Envoy-only
    cb(
        "envoy_on_resolve_dns",
        &[I32, I32, I32],
        &[],
        ALL,
        Support::Unimplemented("Envoy-only; envoy_resolve_dns is a stub that never answers"),
        R,
        "envoy_on_resolve_dns(root_context_id, token, data_size): answers envoy_resolve_dns.",
    ),
    cb(
        "envoy_on_stats_update",
        &[I32, I32],
        &[],
        ALL,
        Support::Unimplemented("Envoy-only stats-sink updates; never called"),
        R,
        "envoy_on_stats_update(root_context_id, data_size): Envoy stats-sink updates.",
    ),
];

#[cfg(test)]
mod tests;
