//! Modules shaped like the filters each toolchain produces — Go 1.24 `wasip1`
//! (proxy-wasm/proxy-wasm-go-sdk), TinyGo (tetratelabs/proxy-wasm-go-sdk), emscripten
//! (proxy-wasm-cpp-sdk) and AssemblyScript (solo-io/proxy-runtime) — link with exactly
//! their import sets, start through their entry points, and get the answers their runtimes
//! need when they call WASI the way those runtimes do at start-up.
//!
//! None of these toolchains can be installed on the CI machine, so hand-written fixtures in
//! `tests/fixtures/*.wat` stand in for compiled filters; each one names the sources its
//! import set comes from. A fixture's callback replies with a block of the errnos and
//! outputs it saw, which the test decodes; log lines are captured per test thread.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{fixture, load_spec, logged, request};
use wasmbridge_abi::{HOSTCALLS, HostcallSpec, Namespace};
use wasmbridge_host::{
    AbiVersion, EntryStyle, FailurePolicy, FilterChain, HeadersOutcome, Plugin, PluginSpec,
};

fn plugin(name: &str, bytes: &[u8], failure_policy: FailurePolicy) -> Arc<Plugin> {
    let spec = PluginSpec {
        name: name.into(),
        replicas: 1,
        failure_policy,
        ..PluginSpec::default()
    };
    load_spec(spec, bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs one bodyless request carrying `headers` through `chain`; returns the outcome of the
/// request-header round and the log.
fn exchange(chain: &FilterChain, headers: &[(&str, &'static str)]) -> (HeadersOutcome, String) {
    logged(tracing::Level::INFO, || {
        let mut data = request("GET");
        for (name, value) in headers {
            data.request_headers
                .push(name, Bytes::from_static(value.as_bytes()));
        }
        let mut stream = chain.start(data);
        let outcome = stream.on_request_headers(true);
        stream.finish();
        outcome
    })
}

/// The body of the 200 reply a fixture sends with its result block.
fn block(outcome: HeadersOutcome) -> Vec<u8> {
    match outcome {
        HeadersOutcome::LocalReply(reply) if reply.status == 200 => reply.body.to_vec(),
        other => panic!("expected the fixture's result block, got {other:?}"),
    }
}

fn u32_at(block: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(block: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// The one log line containing `needle`.
fn line<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line contains {needle:?}:\n{log}"))
}

/// The whole log entry (a multi-line one included: trap reasons carry backtraces) whose
/// first line contains `needle`.
fn entry<'a>(log: &'a str, needle: &str) -> &'a str {
    let at = log
        .find(needle)
        .unwrap_or_else(|| panic!("no log entry contains {needle:?}:\n{log}"));
    let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
    let rest = &log[start..];
    // The next entry starts on a new line with its timestamp.
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Every import is one the catalogue knows with this signature, and none is a stub except
/// the `proxy_*` hostcalls wasmbridge has not implemented yet.
fn assert_fully_linked(plugin: &Plugin) {
    let info = plugin.module_info();
    assert!(
        info.unknown_imports.is_empty(),
        "unknown imports: {:?}",
        info.unknown_imports
    );
    assert!(
        info.unimplemented_imports
            .iter()
            .all(|i| i.starts_with("env.proxy_")),
        "a WASI or toolchain import is stubbed: {:?}",
        info.unimplemented_imports
    );
}

#[test]
fn go_wasip1_reactor_links_and_its_runtime_start_up_gets_what_it_needs() {
    // Loading runs _initialize, which traps (as the Go runtime throws) when args, environ,
    // a clock, poll_oneoff, sched_yield or fd_write fails; proxy_on_configure returns
    // whether it got through.
    let plugin = plugin(
        "go-shape",
        &fixture("go_wasip1.wat"),
        FailurePolicy::FailClosed,
    );
    let info = plugin.module_info();
    assert_eq!(info.entry, EntryStyle::Initialize);
    assert_eq!(info.abi, AbiVersion::V0_2_0);
    assert_eq!(info.allocator, "proxy_on_memory_allocate");
    assert_fully_linked(&plugin);

    let chain = FilterChain::new(vec![plugin]);
    let before = now_ns();
    let (outcome, log) = exchange(&chain, &[]);
    let after = now_ns();
    let b = block(outcome);
    assert_eq!(b.len(), 104);
    let errnos = [
        (0, 0, "random_get(16)"),
        (1, 0, "args_sizes_get"),
        (2, 0, "environ_sizes_get"),
        (3, 0, "clock_time_get(realtime)"),
        (4, 0, "clock_time_get(monotonic)"),
        (5, 8, "fd_fdstat_get(0) is EBADF; SetNonblock(0) ignores it"),
        (6, 0, "fd_fdstat_get(1)"),
        (7, 0, "fd_fdstat_get(2)"),
        (8, 52, "fd_fdstat_set_flags is ENOSYS; stdio stays blocking"),
        (
            9,
            8,
            "fd_prestat_get(3) is EBADF, which ends the preopen scan",
        ),
        (10, 0, "poll_oneoff (usleep throws on failure)"),
        (11, 0, "sched_yield"),
        (12, 0, "fd_write(1)"),
        (13, 44, "path_open is ENOENT"),
        (14, 0, "fd_write(2)"),
        (15, 52, "fd_read(0) is ENOSYS"),
    ];
    for (at, want, what) in errnos {
        assert_eq!(b[at], want, "{what}");
    }
    assert_eq!((u32_at(&b, 16), u32_at(&b, 20)), (0, 0), "no arguments");
    assert_eq!((u32_at(&b, 24), u32_at(&b, 28)), (0, 0), "no environment");
    let realtime = u64_at(&b, 32);
    assert!(
        (before..=after).contains(&realtime),
        "realtime {realtime} outside [{before}, {after}]"
    );
    assert_ne!(u64_at(&b, 40), 0, "monotonic clock");
    // fdstat of stdout: character device (2), no flags, FD_WRITE (1 << 6) in the rights.
    assert_eq!(b[48], 2, "filetype");
    assert_eq!(u32_at(&b, 50) & 0xffff, 0, "fdflags");
    assert_ne!(u64_at(&b, 56) & (1 << 6), 0, "rights_base has FD_WRITE");
    assert_eq!(u64_at(&b, 64), 0, "rights_inheriting");
    assert_eq!(u32_at(&b, 72), 0, "poll_oneoff reports no event");
    assert_eq!(&b[96..104], &[0xab; 8], "and leaves the event buffer alone");
    assert_eq!(u32_at(&b, 76), 11, "fd_write(1) wrote every byte");
    assert_ne!(&b[80..96], &[0; 16], "random bytes were written");

    let stdout = line(&log, "go: stdout");
    assert!(
        stdout.contains("INFO") && stdout.contains("plugin=go-shape"),
        "{stdout}"
    );
    assert!(line(&log, "go: stderr").contains("ERROR"));
}

#[test]
fn tinygo_command_exits_zero_after_main_and_keeps_serving() {
    // _start runs main and ends with proc_exit(0), as TinyGo >= 0.34 does; that is a
    // finished start-up, not a failure.
    let plugin = plugin(
        "tinygo-shape",
        &fixture("tinygo_wasi.wat"),
        FailurePolicy::FailClosed,
    );
    let info = plugin.module_info();
    assert_eq!(info.entry, EntryStyle::Start);
    assert_eq!(info.abi, AbiVersion::V0_2_0);
    // TinyGo exports both allocators; the SDK's is the one the host must use.
    assert_eq!(info.allocator, "proxy_on_memory_allocate");
    assert_fully_linked(&plugin);
    assert!(info.unimplemented_imports.is_empty());

    let chain = FilterChain::new(vec![plugin]);
    for _ in 0..2 {
        let before = now_ns();
        let (outcome, log) = exchange(&chain, &[("x-tinygo", "tiny")]);
        let after = now_ns();
        let b = block(outcome);
        assert_eq!(b.len(), 40);
        assert_eq!(
            &b[36..40],
            &[0, 0, 0, 0],
            "start-up: random, args, clock, argc"
        );
        assert_eq!(b[0], 0, "fd_write(1)");
        assert_eq!(u32_at(&b, 8), 15, "nwritten");
        assert_eq!(b[1], 0, "poll_oneoff on clock 0 (time.Sleep)");
        assert_eq!(u32_at(&b, 12), 0, "no event reported");
        assert_eq!(b[2], 0, "clock_time_get(0, 1000)");
        let realtime = u64_at(&b, 16);
        assert!((before..=after).contains(&realtime), "{realtime}");
        assert_eq!(b[3], 0, "proxy_get_header_map_value");
        assert_eq!((&b[24..28], u32_at(&b, 32)), (&b"tiny"[..], 4));
        assert_eq!(
            (b[4], b[5]),
            (0, 1),
            "malloc unused, proxy_on_memory_allocate once"
        );
        assert!(line(&log, "tinygo: stdout").contains("plugin=tinygo-shape"));
    }
}

#[test]
fn emscripten_reactor_grows_memory_notifies_and_is_served_from_the_new_pages() {
    let plugin = plugin(
        "cpp-shape",
        &fixture("emscripten_cpp.wat"),
        FailurePolicy::FailClosed,
    );
    let info = plugin.module_info();
    assert_eq!(info.entry, EntryStyle::Initialize);
    assert_eq!(info.abi, AbiVersion::V0_2_1);
    assert_eq!(info.allocator, "malloc");
    assert_fully_linked(&plugin);
    assert!(info.unimplemented_imports.is_empty());

    let chain = FilterChain::new(vec![plugin]);
    let (outcome, log) = exchange(&chain, &[("x-cpp", "cpp")]);
    // The reply body lives in the page the callback grew: the host read grown memory.
    let b = block(outcome);
    assert_eq!(b.len(), 88);
    assert_eq!(
        (u32_at(&b, 0), u32_at(&b, 4)),
        (2, 3),
        "pages before / after"
    );
    assert_eq!(
        (u32_at(&b, 8), u32_at(&b, 12)),
        (0, 12),
        "fd_write(1), nwritten"
    );
    assert_eq!(u32_at(&b, 24), 0, "fd_seek logs and succeeds");
    assert!(line(&log, "fd_seek(1) is not supported").contains("ERROR"));
    assert_eq!(u32_at(&b, 28), 0, "clock_time_get(monotonic)");
    assert_ne!(u64_at(&b, 32), 0);
    assert_eq!(
        (u32_at(&b, 40), u32_at(&b, 44), u32_at(&b, 48)),
        (0, 0, 0),
        "environ_sizes_get: no variables, success"
    );
    assert_eq!((u32_at(&b, 52), u32_at(&b, 56)), (1, 0), "pthread_equal");
    // malloc grew memory from inside the hostcall; the value landed in that new page.
    assert_eq!(u32_at(&b, 68), 0, "proxy_get_header_map_value");
    assert_eq!(u32_at(&b, 60), 3 * 65536, "value pointer");
    assert_eq!((u32_at(&b, 64), &b[72..75]), (3, &b"cpp"[..]));
    assert_eq!(u32_at(&b, 80), 4, "pages at the end");
    assert_eq!(u32_at(&b, 84), 2, "emscripten_notify_memory_growth calls");
    assert!(line(&log, "cpp: stdout").contains("plugin=cpp-shape"));
}

fn assemblyscript(policy: FailurePolicy) -> FilterChain {
    let plugin = plugin("as-shape", &fixture("assemblyscript.wat"), policy);
    let info = plugin.module_info();
    assert_eq!(info.entry, EntryStyle::StartSection);
    assert_eq!(info.abi, AbiVersion::V0_2_0);
    assert_eq!(info.allocator, "malloc");
    assert_fully_linked(&plugin);
    assert!(info.unimplemented_imports.is_empty());
    FilterChain::new(vec![plugin])
}

#[test]
fn assemblyscript_abort_logs_its_message_and_fails_the_stream_closed() {
    let chain = assemblyscript(FailurePolicy::FailClosed);
    assert_eq!(exchange(&chain, &[]).0, HeadersOutcome::Continue);

    let (outcome, log) = exchange(&chain, &[("x-as-fail", "abort")]);
    let HeadersOutcome::LocalReply(reply) = outcome else {
        panic!("abort fails the stream closed, got {outcome:?}");
    };
    assert_eq!(reply.status, 503);
    let abort = line(&log, "abort: boom é at assembly/index.ts:42:7");
    assert!(
        abort.contains("ERROR") && abort.contains("plugin=as-shape"),
        "{abort}"
    );
    let failed = entry(&log, "plugin failed for this stream");
    assert!(
        failed.contains("abort: boom é"),
        "the trap names the abort: {failed}"
    );
    assert!(failed.contains("policy=fail_closed"), "{failed}");

    // Only that call failed: the replica is replaced and the next stream is served.
    assert_eq!(exchange(&chain, &[]).0, HeadersOutcome::Continue);
}

#[test]
fn assemblyscript_abort_skips_a_fail_open_plugin() {
    let chain = assemblyscript(FailurePolicy::FailOpen);
    let (outcome, log) = exchange(&chain, &[("x-as-fail", "abort")]);
    assert_eq!(outcome, HeadersOutcome::Continue);
    assert!(line(&log, "abort: boom é").contains("plugin=as-shape"));
    let failed = entry(&log, "plugin failed for this stream");
    assert!(failed.contains("abort: boom é"), "{failed}");
    assert!(failed.contains("policy=fail_open"), "{failed}");
}

#[test]
fn assemblyscript_abort_with_null_or_bad_strings_still_fails_cleanly() {
    let chain = assemblyscript(FailurePolicy::FailClosed);
    for (value, text) in [
        ("null", "abort: null at null:1:2"),
        (
            "bad",
            "abort: <unreadable string at 0x174> at <unreadable string at 0xfffffff0>:3:4",
        ),
    ] {
        let (outcome, log) = exchange(&chain, &[("x-as-fail", value)]);
        assert!(
            matches!(&outcome, HeadersOutcome::LocalReply(r) if r.status == 503),
            "{value}: {outcome:?}"
        );
        assert!(line(&log, text).contains("ERROR"), "{value}");
        let failed = entry(&log, "plugin failed for this stream");
        assert!(
            failed.contains(text),
            "{value}: the trap names the abort: {failed}"
        );
    }
    assert_eq!(exchange(&chain, &[]).0, HeadersOutcome::Continue);
}

#[test]
fn assemblyscript_runtime_abort_through_wasi_unstable_proc_exit_fails_the_stream() {
    let chain = assemblyscript(FailurePolicy::FailClosed);
    let (outcome, log) = exchange(&chain, &[("x-as-fail", "exit")]);
    assert!(
        matches!(&outcome, HeadersOutcome::LocalReply(r) if r.status == 503),
        "{outcome:?}"
    );
    let critical = line(&log, "boom é at: assembly/index.ts(42:7)");
    assert!(
        critical.contains("ERROR") && critical.contains("plugin=as-shape"),
        "{critical}"
    );
    assert!(entry(&log, "plugin failed for this stream").contains("proc_exit(255)"));
    assert_eq!(exchange(&chain, &[]).0, HeadersOutcome::Continue);
}

/// The errno reference §14.1 gives each WASI function called with all-zero arguments
/// (fd 0, null pointers, zero lengths, clock 0).
fn errno_with_zero_arguments(name: &str) -> u8 {
    match name {
        "fd_write" | "fd_fdstat_get" | "fd_prestat_get" | "fd_filestat_get" => 8,
        "fd_read" | "fd_fdstat_set_flags" | "fd_prestat_dir_name" | "fd_pread" => 52,
        "path_open" => 44,
        "fd_readdir" => 54,
        "path_filestat_get"
        | "fd_renumber"
        | "path_create_directory"
        | "path_remove_directory"
        | "path_unlink_file"
        | "path_rename"
        | "path_symlink"
        | "path_readlink"
        | "path_link"
        | "path_filestat_set_times"
        | "sock_accept"
        | "sock_recv"
        | "sock_send"
        | "sock_shutdown"
        | "proc_raise" => 58,
        "fd_seek"
        | "fd_close"
        | "environ_sizes_get"
        | "environ_get"
        | "args_sizes_get"
        | "args_get"
        | "clock_time_get"
        | "clock_res_get"
        | "random_get"
        | "sched_yield"
        | "poll_oneoff"
        | "fd_pwrite"
        | "fd_advise"
        | "fd_allocate"
        | "fd_datasync"
        | "fd_sync"
        | "fd_tell"
        | "fd_filestat_set_size"
        | "fd_filestat_set_times"
        | "fd_fdstat_set_rights" => 0,
        other => panic!("no expected errno for {other}; add it from reference §14.1"),
    }
}

fn wat_types(keyword: &str, types: &[wasmbridge_abi::ValType]) -> String {
    if types.is_empty() {
        return String::new();
    }
    let list: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    format!("({keyword} {})", list.join(" "))
}

#[test]
fn every_catalogue_wasi_function_is_linked_under_both_names_and_answers_alike() {
    // One module importing the catalogue's whole WASI set from both wasi_snapshot_preview1
    // and wasi_unstable; its callback calls each function (but proc_exit) with all-zero
    // arguments under both names and replies with the pairs of errnos.
    let wasi: Vec<&HostcallSpec> = HOSTCALLS
        .iter()
        .filter(|h| h.namespace == Namespace::Wasi)
        .collect();
    let mut imports = String::new();
    let mut calls = String::new();
    let mut called = Vec::new();
    for h in &wasi {
        let ty = format!(
            "{} {}",
            wat_types("param", h.params),
            wat_types("result", h.results)
        );
        for (tag, module) in [("p", "wasi_snapshot_preview1"), ("u", "wasi_unstable")] {
            imports.push_str(&format!(
                "  (import \"{module}\" \"{name}\" (func ${tag}_{name} {ty}))\n",
                name = h.name
            ));
        }
        if h.results.is_empty() {
            continue;
        }
        let args: Vec<String> = h
            .params
            .iter()
            .map(|t| format!("({}.const 0)", t.as_str()))
            .collect();
        let slot = 4096 + 2 * called.len();
        for (offset, tag) in [(0, "p"), (1, "u")] {
            calls.push_str(&format!(
                "    (i32.store8 (i32.const {}) (call ${tag}_{} {}))\n",
                slot + offset,
                h.name,
                args.join(" ")
            ));
        }
        called.push(h.name);
    }
    let module = format!(
        r#"(module
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
{imports}  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 8192))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
{calls}    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
      (i32.const 4096) (i32.const {len}) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#,
        len = 2 * called.len()
    );
    assert_eq!(wasi.len(), 46, "WASI preview1 has 46 functions");
    let plugin = plugin("wasi-all", module.as_bytes(), FailurePolicy::FailClosed);
    let info = plugin.module_info();
    assert!(
        info.unknown_imports.is_empty(),
        "{:?}",
        info.unknown_imports
    );
    assert!(
        info.unimplemented_imports.is_empty(),
        "{:?}",
        info.unimplemented_imports
    );

    let chain = FilterChain::new(vec![plugin]);
    let (outcome, _) = exchange(&chain, &[]);
    let b = block(outcome);
    assert_eq!(b.len(), 2 * called.len());
    for (i, name) in called.iter().enumerate() {
        let want = errno_with_zero_arguments(name);
        assert_eq!(
            (b[2 * i], b[2 * i + 1]),
            (want, want),
            "{name}: (wasi_snapshot_preview1, wasi_unstable)"
        );
    }
}
