//! Modules of every shape real SDKs produce load and start: `_initialize` (+ `main`),
//! `_start`, a wasm start section; `malloc` or `proxy_on_memory_allocate`; ABI 0.1.0 to
//! 0.2.1. Unknown imports are linked to stubs that return UNIMPLEMENTED.
//!
//! Each module's `proxy_on_configure` returns true only when its start-up code ran and the
//! unknown import answered UNIMPLEMENTED (12), so a successful load proves both.

mod common;

use wasmbridge_host::{AbiVersion, EntryStyle, Plugin};

fn module(marker: &str, allocator: &str, entry: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_secret" (func $secret (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $ready (mut i32) (i32.const 0))
  (func (export "{marker}"))
  (func (export "{allocator}") (param i32) (result i32) (i32.const 1024))
  (func $init (global.set $ready (i32.const 1)))
  {entry}
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.and (global.get $ready)
             (i32.eq (call $secret (i32.const 0) (i32.const 0)) (i32.const 12)))))"#
    );
    wat::parse_str(text).expect("valid wat")
}

fn load(bytes: &[u8]) -> Result<std::sync::Arc<Plugin>, wasmbridge_host::LoadError> {
    common::load("shape", bytes, 2)
}

#[test]
fn every_entry_style_runs_before_configure() {
    let cases = [
        (
            r#"(func (export "_initialize") (call $init))"#,
            EntryStyle::Initialize,
        ),
        (
            r#"(func (export "_initialize")) (func (export "main") (param i32 i32) (result i32) (call $init) (i32.const 0))"#,
            EntryStyle::InitializeAndMain,
        ),
        (
            r#"(func (export "_start") (call $init))"#,
            EntryStyle::Start,
        ),
        (r#"(start $init)"#, EntryStyle::StartSection),
    ];
    for (entry, style) in cases {
        let plugin = load(&module(
            "proxy_abi_version_0_2_1",
            "proxy_on_memory_allocate",
            entry,
        ))
        .unwrap_or_else(|e| panic!("{style}: {e}"));
        let info = plugin.module_info();
        assert_eq!(info.entry, style);
        assert_eq!(
            info.unknown_imports,
            vec!["env.proxy_get_secret".to_string()]
        );
        assert_eq!(plugin.replica_count(), 2);
    }
}

#[test]
fn abi_versions_and_allocators_are_detected() {
    for (marker, version) in [
        ("proxy_abi_version_0_1_0", AbiVersion::V0_1_0),
        ("proxy_abi_version_0_2_0", AbiVersion::V0_2_0),
        ("proxy_abi_version_0_2_1", AbiVersion::V0_2_1),
    ] {
        let plugin = load(&module(marker, "malloc", r#"(start $init)"#)).expect("loads");
        assert_eq!(plugin.module_info().abi, version);
        assert_eq!(plugin.module_info().allocator, "malloc");
    }
}

fn load_error(bytes: &[u8]) -> String {
    load(bytes)
        .expect_err("the module must be refused")
        .to_string()
}

#[test]
fn missing_or_unknown_markers_and_allocators_are_clear_errors() {
    let err = load_error(&module("not_a_marker", "malloc", ""));
    assert!(err.contains("plugin `shape`"), "{err}");
    assert!(
        err.contains("proxy_abi_version_0_2_1"),
        "lists supported markers: {err}"
    );
    let err = load_error(&module("proxy_abi_version_0_2_100", "malloc", ""));
    assert!(err.contains("proxy_abi_version_0_2_100"), "{err}");
    let err = load_error(&module("proxy_abi_version_0_2_1", "not_an_allocator", ""));
    assert!(err.contains("allocator"), "{err}");
}

#[test]
fn a_module_whose_start_up_does_not_run_fails_configure() {
    // No entry at all: the global stays 0 and proxy_on_configure returns false.
    let err = load_error(&module("proxy_abi_version_0_2_1", "malloc", ""));
    assert!(err.contains("proxy_on_configure returned false"), "{err}");
}

#[test]
fn a_known_import_with_the_wrong_signature_is_a_load_error() {
    let bytes = wat::parse_str(
        r#"(module
  (import "env" "proxy_log" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 8)))"#,
    )
    .expect("wat");
    let err = load_error(&bytes);
    assert!(err.contains("env.proxy_log"), "{err}");
}
