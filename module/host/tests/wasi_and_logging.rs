//! WASI preview1 and the logging hostcalls, called one by one from a guest.
//!
//! The module's `on_request_headers` makes each call, stores every errno and output value
//! in a fixed block of its memory, and replies with that block as the body; the test
//! decodes the block. Log lines are captured by a `tracing` subscriber installed for the
//! test's thread (hostcalls run on the caller's thread).

mod common;

use common::{load, logged, request};
use wasmbridge_host::{FilterChain, HeadersOutcome};

/// Result block at 512, 64 bytes:
/// 0 log level · 1 fd_write(1) errno · 2 bytes written · 3 fd_write(7) errno ·
/// 4/5/6 clock_time_get(0/1/2) errno · 7 random_get(16) errno · 8 random_get(65537) errno ·
/// 9 environ_sizes_get errno · 10 args_sizes_get errno · 11 fd_prestat_get(3) errno ·
/// 12 fd_write(2) errno · 13 clock_res_get(1) errno · 16..24 realtime ns ·
/// 24..32 monotonic ns · 32..48 random bytes · 48..56 environ count/size ·
/// 56..64 args count/size.
const PROBE: &str = r#"(module
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $log_level (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ (param i32 i32) (result i32)))
  (import "wasi_unstable" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  ;; iovec tables at 64 and 80; texts at 128 and 160
  (data (i32.const 64) "\80\00\00\00\06\00\00\00\86\00\00\00\07\00\00\00")
  (data (i32.const 80) "\a0\00\00\00\0c\00\00\00")
  (data (i32.const 128) "hello stdout\n")
  (data (i32.const 160) "oops stderr\n")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32) (param $eos i32) (result i32)
    ;; a request with a body exits the process
    (if (i32.eqz (local.get $eos)) (then (call $exit (i32.const 3))))
    (drop (call $log_level (i32.const 600)))
    (i32.store8 (i32.const 512) (i32.load (i32.const 600)))
    ;; two iovecs, "hello " and "stdout\n", to fd 1; nwritten at 604
    (i32.store8 (i32.const 513) (call $fd_write (i32.const 1) (i32.const 64) (i32.const 2) (i32.const 604)))
    (i32.store8 (i32.const 514) (i32.load (i32.const 604)))
    (i32.store8 (i32.const 515) (call $fd_write (i32.const 7) (i32.const 64) (i32.const 2) (i32.const 604)))
    (i32.store8 (i32.const 516) (call $clock (i32.const 0) (i64.const 1) (i32.const 528)))
    (i32.store8 (i32.const 517) (call $clock (i32.const 1) (i64.const 1) (i32.const 536)))
    (i32.store8 (i32.const 518) (call $clock (i32.const 2) (i64.const 1) (i32.const 608)))
    (i32.store8 (i32.const 519) (call $random (i32.const 544) (i32.const 16)))
    (i32.store8 (i32.const 520) (call $random (i32.const 8192) (i32.const 65537)))
    ;; poison the size outputs so a host that does not write them is caught
    (i64.store (i32.const 560) (i64.const -1))
    (i64.store (i32.const 568) (i64.const -1))
    (i32.store8 (i32.const 521) (call $environ (i32.const 560) (i32.const 564)))
    (i32.store8 (i32.const 522) (call $args (i32.const 568) (i32.const 572)))
    (i32.store8 (i32.const 523) (call $prestat (i32.const 3) (i32.const 608)))
    (i32.store8 (i32.const 524) (call $fd_write (i32.const 2) (i32.const 80) (i32.const 1) (i32.const 604)))
    (i32.store8 (i32.const 525) (call $clock_res (i32.const 1) (i32.const 608)))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
                       (i32.const 512) (i32.const 64) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#;

fn chain() -> FilterChain {
    FilterChain::new(vec![load("wasi-probe", PROBE.as_bytes(), 1).expect("load")])
}

fn u32_at(block: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(block: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"))
}

/// Runs one stream under a subscriber at `level` and returns the result block and the log.
fn probe(chain: &FilterChain, level: tracing::Level) -> (Vec<u8>, String) {
    logged(level, || {
        let mut stream = chain.start(request("GET"));
        let HeadersOutcome::LocalReply(reply) = stream.on_request_headers(true) else {
            panic!("the probe replies with its result block");
        };
        stream.finish();
        reply.body.to_vec()
    })
}

#[test]
fn wasi_calls_answer_like_envoy() {
    let chain = chain();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let (block, log) = probe(&chain, tracing::Level::INFO);
    assert_eq!(block.len(), 64);

    // fd_write: stdout joins the iovecs into one info line (trailing newline dropped),
    // stderr goes to the error log, any other descriptor is EBADF.
    assert_eq!(block[1], 0, "fd_write(1) errno");
    assert_eq!(block[2], 13, "fd_write(1) reports every byte written");
    assert_eq!(block[3], 8, "fd_write(7) is EBADF");
    assert_eq!(block[12], 0, "fd_write(2) errno");
    let stdout_line = log
        .lines()
        .find(|l| l.contains("hello stdout"))
        .unwrap_or_else(|| panic!("stdout line missing from the log:\n{log}"));
    assert!(stdout_line.contains("INFO"), "{stdout_line}");
    assert!(stdout_line.contains("plugin=wasi-probe"), "{stdout_line}");
    assert!(
        stdout_line.contains("hello stdout plugin="),
        "one line, trailing newline dropped: {stdout_line}"
    );
    let stderr_line = log
        .lines()
        .find(|l| l.contains("oops stderr"))
        .unwrap_or_else(|| panic!("stderr line missing from the log:\n{log}"));
    assert!(stderr_line.contains("ERROR"), "{stderr_line}");

    // clocks: realtime is the wall clock in ns, monotonic works, any other clock ENOTSUP.
    assert_eq!(block[4], 0, "clock_time_get(realtime) errno");
    assert_eq!(block[5], 0, "clock_time_get(monotonic) errno");
    assert_eq!(block[6], 58, "clock_time_get(2) is ENOTSUP");
    assert_eq!(block[13], 0, "clock_res_get(monotonic) errno");
    let realtime = u64_at(&block, 16);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    assert!(
        (before..=after).contains(&realtime),
        "realtime {realtime} outside [{before}, {after}]"
    );
    let monotonic = u64_at(&block, 24);

    // random: 16 bytes filled; more than 64 KiB in one call is EINVAL.
    assert_eq!(block[7], 0, "random_get(16) errno");
    assert_ne!(&block[32..48], &[0u8; 16], "random bytes were written");
    assert_eq!(block[8], 28, "random_get(65537) is EINVAL");

    // no environment, no arguments, no preopened directories.
    assert_eq!(block[9], 0, "environ_sizes_get errno");
    assert_eq!((u32_at(&block, 48), u32_at(&block, 52)), (0, 0));
    assert_eq!(block[10], 0, "args_sizes_get errno (wasi_unstable)");
    assert_eq!((u32_at(&block, 56), u32_at(&block, 60)), (0, 0));
    assert_eq!(block[11], 8, "fd_prestat_get(3) is EBADF");

    // A later stream sees the monotonic clock move forward and different random bytes.
    let (again, _) = probe(&chain, tracing::Level::INFO);
    assert!(u64_at(&again, 24) >= monotonic, "monotonic clock went back");
    assert_ne!(&again[32..48], &block[32..48], "random bytes repeat");
}

#[test]
fn log_level_follows_the_subscriber() {
    let chain = chain();
    // Proxy-Wasm levels: 0 trace, 1 debug, 2 info, 3 warn, 4 error.
    for (level, code) in [
        (tracing::Level::TRACE, 0),
        (tracing::Level::DEBUG, 1),
        (tracing::Level::INFO, 2),
        (tracing::Level::WARN, 3),
        (tracing::Level::ERROR, 4),
    ] {
        let (block, _) = probe(&chain, level);
        assert_eq!(block[0], code, "proxy_get_log_level under {level}");
    }
}

#[test]
fn proc_exit_fails_only_that_stream() {
    let chain = chain();
    // A bodyless request runs the checks; a request with a body calls proc_exit.
    let (first, _) = probe(&chain, tracing::Level::INFO);
    assert_eq!(first[1], 0);
    let (outcome, log) = logged(tracing::Level::INFO, || {
        let mut stream = chain.start(request("GET"));
        let outcome = stream.on_request_headers(false);
        stream.finish();
        outcome
    });
    let HeadersOutcome::LocalReply(reply) = outcome else {
        panic!("a VM that exits fails the stream closed, got {outcome:?}");
    };
    assert_eq!(reply.status, 503);
    assert!(
        log.contains("proc_exit(3)"),
        "the reason names proc_exit:\n{log}"
    );
    // The replica is rebuilt: the next stream is served again.
    let (next, _) = probe(&chain, tracing::Level::INFO);
    assert_eq!(next.len(), 64);
    assert_eq!(next[1], 0);
}
