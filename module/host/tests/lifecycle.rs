//! Callback order, as Envoy runs it: root context create → `on_vm_start` → `on_configure`;
//! per stream create → request headers → request body → response headers → response body
//! → `on_log` → `on_done` → `on_delete`; no body callback for a bodyless request.
//!
//! The module records each callback as one letter in its memory; the next stream replies
//! with that record, so the order is read back through the host's own local-reply path.

mod common;

use common::{load, request};

use bytes::Bytes;
use wasmbridge_host::{BodyOutcome, FilterChain, HeaderList, HeadersOutcome};

const RECORDER: &str = r#"(module
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (func $rec (param i32)
    (i32.store8 (i32.add (i32.const 256) (global.get $n)) (local.get 0))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32) (call $rec (i32.const 67)))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (call $rec (i32.const 86)) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (call $rec (i32.const 71)) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32) (param $eos i32) (result i32)
    (call $rec (i32.const 72))
    ;; the third context (the second stream) replies with everything recorded so far
    (if (i32.eq (local.get $ctx) (i32.const 3))
      (then (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
                               (i32.const 256) (global.get $n) (i32.const 0) (i32.const 0) (i32.const -1)))))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (call $rec (i32.const 66)) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (call $rec (i32.const 82)) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (call $rec (i32.const 83)) (i32.const 0))
  (func (export "proxy_on_log") (param i32) (call $rec (i32.const 76)))
  (func (export "proxy_on_done") (param i32) (result i32) (call $rec (i32.const 68)) (i32.const 1))
  (func (export "proxy_on_delete") (param i32) (call $rec (i32.const 88))))"#;

#[test]
fn callbacks_run_in_envoys_order() {
    let plugin = load("recorder", RECORDER.as_bytes(), 1).expect("load");
    let chain = FilterChain::new(vec![plugin]);

    // A request with a body, proxied.
    let mut first = chain.start(request("POST"));
    assert_eq!(first.on_request_headers(false), HeadersOutcome::Continue);
    assert_eq!(
        first.on_request_body(Bytes::from_static(b"x"), true),
        BodyOutcome::Forward(Bytes::from_static(b"x"))
    );
    let mut response = HeaderList::new();
    response.push(":status", Bytes::from_static(b"200"));
    first.data_mut().response_headers = response;
    assert_eq!(first.on_response_headers(false), HeadersOutcome::Continue);
    assert_eq!(
        first.on_response_body(Bytes::from_static(b"y"), true),
        BodyOutcome::Forward(Bytes::from_static(b"y"))
    );
    first.finish();

    // A bodyless request: its headers callback replies with the record.
    let mut second = chain.start(request("GET"));
    let HeadersOutcome::LocalReply(reply) = second.on_request_headers(true) else {
        panic!("the recorder replies on the second stream");
    };
    let record = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(
        record,
        concat!("CVG", "CHBRSLDX", "CH"), // root; first stream; second stream so far
        "C=create V=vm_start G=configure H=request headers B=request body R=response headers \
         S=response body L=log D=done X=delete"
    );
    // The local reply runs the response callbacks, then the stream ends in order.
    let resp = second.local_response(reply);
    assert_eq!(resp.status, 200);
    second.finish();
}
