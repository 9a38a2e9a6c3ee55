//! The real example filters, driven in-process.

use std::path::PathBuf;

use wasmbridge_host::HeadersOutcome;
use wasmbridge_testkit::{Emulator, Request};

fn filter(name: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run under cargo test"))
        .join("../../filters/target/wasm32-wasip1/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run `make filters`",
        path.display()
    );
    path
}

#[test]
fn add_header_adds_configured_headers() {
    let emu = Emulator::load(
        filter("add_header"),
        "add_header",
        r#"{"request_headers": {"x-req": "1"}, "headers": {"x-hello": "wasmbridge"}}"#,
    )
    .expect("load");
    let ex = emu.run(Request::get("/").header("host", "example.com"));
    assert_eq!(ex.request_outcome, HeadersOutcome::Continue);
    assert_eq!(ex.request_header("x-req"), Some("1"));
    assert_eq!(ex.response_header("x-hello"), Some("wasmbridge"));
}

#[test]
fn deny_replies_403_without_the_header_and_continues_with_it() {
    let emu = Emulator::load(filter("deny"), "deny", "{}").expect("load");
    let denied = emu.run(Request::get("/"));
    assert!(matches!(
        denied.request_outcome,
        HeadersOutcome::LocalReply(_)
    ));
    assert_eq!(denied.status, 403);
    assert_eq!(&denied.response_body[..], b"access denied\n");
    assert_eq!(denied.response_header("content-length"), Some("14"));
    let allowed = emu.run(Request::get("/").header("x-api-key", "k"));
    assert_eq!(allowed.request_outcome, HeadersOutcome::Continue);
    assert_eq!(allowed.status, 200);
}

#[test]
fn body_probe_rewrites_both_bodies() {
    let emu = Emulator::load(
        filter("body"),
        "body",
        r#"{"request_prefix": "<", "request_suffix": ">", "response_replace": "replaced"}"#,
    )
    .expect("load");
    let ex = emu.run(Request::post("/", "abc"));
    assert_eq!(ex.request_body.as_deref(), Some(&b"<abc>"[..]));
    assert_eq!(&ex.response_body[..], b"replaced");
}

#[test]
fn an_invalid_configuration_fails_the_load_with_the_plugin_name() {
    let err = match Emulator::load(filter("add_header"), "add_header", "{not json") {
        Ok(_) => panic!("a configuration the filter rejects must fail the load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("plugin `add_header`"), "{err}");
    assert!(err.contains("proxy_on_configure returned false"), "{err}");
}

/// Log-only mode: the denying plugin sees the request, its 403 is logged and counted as
/// `local_reply`, and the request goes on; `add_header`'s edits are logged, not applied.
#[test]
fn log_only_plugins_change_nothing_and_say_what_they_would_have_done() {
    use std::sync::{Arc, Mutex};
    use wasmbridge_testkit::PluginSource;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let emu = Emulator::chain_of(vec![
            PluginSource {
                log_only: true,
                ..PluginSource::file("deny", filter("deny"), "{}")
            },
            PluginSource {
                log_only: true,
                ..PluginSource::file(
                    "add_header",
                    filter("add_header"),
                    r#"{"request_headers": {"x-req": "1"}, "headers": {"x-hello": "wasmbridge"}}"#,
                )
            },
        ])
        .expect("load");
        let ex = emu.run(Request::get("/"));
        assert_eq!(ex.request_outcome, HeadersOutcome::Continue);
        assert_eq!(ex.status, 200, "the would-be 403 is not sent");
        assert_eq!(ex.request_header("x-req"), None);
        assert_eq!(ex.response_header("x-hello"), None);
    });
    let log = String::from_utf8_lossy(&lines.0.lock().expect("lines")).into_owned();
    assert!(
        log.contains("log-only: the plugin would send a local reply 403"),
        "{log}"
    );
    assert!(
        log.contains("would change request_headers: +x-req: 1"),
        "{log}"
    );
    assert!(
        log.contains("would change response_headers: +x-hello: wasmbridge"),
        "{log}"
    );
}

/// A log-only plugin that traps is skipped for the stream, whatever its failure policy:
/// log-only never changes the traffic.
#[test]
fn a_failing_log_only_plugin_is_skipped() {
    use wasmbridge_host::FailurePolicy;
    use wasmbridge_testkit::PluginSource;

    let emu = Emulator::chain_of(vec![PluginSource {
        log_only: true,
        failure_policy: FailurePolicy::FailClosed,
        ..PluginSource::file("misbehave", filter("misbehave"), "")
    }])
    .expect("load");
    assert_eq!(
        emu.chain().plugins()[0].failure_policy(),
        FailurePolicy::FailOpen
    );
    let ex = emu.run(Request::get("/").header("x-misbehave", "trap-request-headers"));
    assert_eq!(ex.request_outcome, HeadersOutcome::Continue);
    assert_eq!(ex.status, 200);
}

/// `vm_share` plugin `name` with configuration `name` in VM `vm_id`.
fn vm_share(name: &str, vm_id: &str) -> wasmbridge_testkit::PluginSource {
    wasmbridge_testkit::PluginSource {
        root_id: format!("root-{name}"),
        vm_id: vm_id.to_string(),
        ..wasmbridge_testkit::PluginSource::file(name, filter("vm_share"), name)
    }
}

#[test]
fn plugins_with_the_same_vm_id_and_module_share_a_vm_with_a_root_context_each() {
    let emu = Emulator::chain_of(vec![
        vm_share("a", "shared"),
        vm_share("b", "shared"),
        vm_share("c", "own"),
    ])
    .expect("load");
    let tenants: Vec<Vec<&str>> = emu
        .chain()
        .plugins()
        .iter()
        .map(|p| p.vm_tenants())
        .collect();
    assert_eq!(tenants, [vec!["a", "b"], vec!["a", "b"], vec!["c"]]);

    // One VM holds the roots of a and b (root contexts 1 and 2) and counts the streams of
    // both; c's VM holds its root alone.
    let ex = emu.run(Request::get("/"));
    assert_eq!(ex.status, 200);
    assert_eq!(
        ex.response_header("x-vm-share-a"),
        Some("roots=2 streams=1 root=1")
    );
    assert_eq!(
        ex.response_header("x-vm-share-b"),
        Some("roots=2 streams=2 root=2")
    );
    assert_eq!(
        ex.response_header("x-vm-share-c"),
        Some("roots=1 streams=1 root=1")
    );
    let ex = emu.run(Request::get("/"));
    assert_eq!(
        ex.response_header("x-vm-share-a"),
        Some("roots=2 streams=3 root=1")
    );
    assert_eq!(
        ex.response_header("x-vm-share-b"),
        Some("roots=2 streams=4 root=2")
    );
    assert_eq!(
        ex.response_header("x-vm-share-c"),
        Some("roots=1 streams=2 root=1")
    );
}

#[test]
fn a_trap_in_a_shared_vm_fails_the_streams_of_every_plugin_in_it_and_the_vm_is_rebuilt_with_all_roots()
 {
    use wasmbridge_host::FailurePolicy;
    let open = |p: wasmbridge_testkit::PluginSource| wasmbridge_testkit::PluginSource {
        failure_policy: FailurePolicy::FailOpen,
        ..p
    };
    let emu = Emulator::chain_of(vec![
        open(vm_share("a", "shared")),
        open(vm_share("b", "shared")),
        open(vm_share("c", "own")),
    ])
    .expect("load");
    assert_eq!(emu.run(Request::get("/")).status, 200);

    // b traps in its request headers: the VM it shares with a dies, so both are skipped
    // (fail_open) for the rest of the stream; c, in a VM of its own, is untouched.
    let ex = emu.run(Request::get("/").header("x-vm-share-trap", "b"));
    assert_eq!(ex.status, 200);
    assert_eq!(ex.response_header("x-vm-share-a"), None);
    assert_eq!(ex.response_header("x-vm-share-b"), None);
    assert_eq!(
        ex.response_header("x-vm-share-c"),
        Some("roots=1 streams=2 root=1")
    );

    // The next stream gets a fresh VM with both roots again; its counters start over.
    let ex = emu.run(Request::get("/"));
    assert_eq!(
        ex.response_header("x-vm-share-a"),
        Some("roots=2 streams=1 root=1")
    );
    assert_eq!(
        ex.response_header("x-vm-share-b"),
        Some("roots=2 streams=2 root=2")
    );
    assert_eq!(
        ex.response_header("x-vm-share-c"),
        Some("roots=1 streams=3 root=1")
    );
}

#[test]
fn plugins_with_the_same_module_but_another_vm_id_or_isolation_keep_their_own_vms() {
    use wasmbridge_host::{Isolation, PoolOptions};
    let emu = Emulator::chain_of(vec![
        vm_share("a", "one"),
        vm_share("b", "two"),
        wasmbridge_testkit::PluginSource {
            pool: PoolOptions {
                isolation: Isolation::PerStream,
                ..PoolOptions::default()
            },
            ..vm_share("c", "one")
        },
    ])
    .expect("load");
    for plugin in emu.chain().plugins() {
        assert_eq!(plugin.vm_tenants(), [plugin.name()]);
    }
    let ex = emu.run(Request::get("/"));
    for name in ["a", "b", "c"] {
        assert_eq!(
            ex.response_header(&format!("x-vm-share-{name}")),
            Some("roots=1 streams=1 root=1"),
            "{name}"
        );
    }
}

/// A plugin's fuel and stack size reach the emulator's engine: each plugin runs on the
/// engine its limits need, beside one on the base engine. A recursion `n` calls deep takes
/// the `misbehave` probe about 35 units of fuel and 64 bytes of wasm stack per call.
#[test]
fn limits_with_fuel_and_a_stack_size_pick_their_engine() {
    use wasmbridge_host::{Limits, LocalReply};
    use wasmbridge_testkit::{PluginSource, capture_logs};

    let emu = Emulator::chain_of(vec![
        PluginSource {
            limits: Limits {
                fuel: Some(100_000),
                ..Limits::default()
            },
            ..PluginSource::file("fuelled", filter("misbehave"), "")
        },
        PluginSource {
            limits: Limits {
                stack_bytes: 64 << 10,
                ..Limits::default()
            },
            ..PluginSource::file("small", filter("misbehave"), "")
        },
        PluginSource::file(
            "plain",
            filter("add_header"),
            r#"{"headers": {"x-hello": "1"}}"#,
        ),
    ])
    .expect("load");
    let run = |depth: u32| {
        let mode = format!("recurse-{depth}");
        let (ex, logs) = capture_logs(|| emu.run(Request::get("/").header("x-misbehave", &mode)));
        let recursed: Vec<String> = logs
            .iter()
            .filter(|l| {
                l.message
                    .starts_with(&format!("misbehave: recursed {depth} calls"))
            })
            .map(|l| l.plugin.clone())
            .collect();
        let failed = matches!(
            &ex.request_outcome,
            HeadersOutcome::LocalReply(LocalReply { status: 503, .. })
        );
        (failed, recursed, ex)
    };
    // 4000 calls need more fuel than the first plugin has: it fails there (in microseconds:
    // not the 100 ms CPU deadline).
    let (failed, recursed, _) = run(4000);
    assert!(failed);
    assert!(recursed.is_empty(), "{recursed:?}");
    // 2000 calls fit in the fuel, not in the second plugin's 64 KiB stack.
    let (failed, recursed, _) = run(2000);
    assert!(failed);
    assert_eq!(recursed, ["fuelled"]);
    // 100 calls fit everywhere.
    let (failed, recursed, ex) = run(100);
    assert!(!failed, "{:?}", ex.request_outcome);
    assert_eq!(recursed, ["fuelled", "small"]);
    assert_eq!(ex.response_header("x-hello"), Some("1"));
}
