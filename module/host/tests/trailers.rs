//! Trailer callbacks: `proxy_on_response_trailers` runs after the last body chunk (whose
//! `end_of_stream` was false), the trailers are writable there, a body a plugin buffered
//! goes on once its trailer callback continued, and a PAUSE waits like a header pause.

mod common;

use common::{load, request};

use bytes::Bytes;
use wasmbridge_host::{BodyOutcome, FilterChain, HeaderList, HeadersOutcome, TrailersOutcome};

/// Buffers the response body until end of stream (which never comes when trailers
/// follow), adds `x-t: 1` to the response trailers, and pauses in the trailer callback
/// when there were two trailers.
const BUFFERING: &str = r#"(module
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-t")
  (data (i32.const 8) "1")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32) (param $eos i32) (result i32)
    (i32.eqz (local.get $eos)))
  (func (export "proxy_on_response_trailers") (param i32) (param $n i32) (result i32)
    (drop (call $add (i32.const 3) (i32.const 0) (i32.const 3) (i32.const 8) (i32.const 1)))
    (i32.eq (local.get $n) (i32.const 2))))"#;

fn response_started(stream: &mut wasmbridge_host::HttpStream) {
    assert_eq!(stream.on_request_headers(true), HeadersOutcome::Continue);
    let mut response = HeaderList::new();
    response.push(":status", Bytes::from_static(b"200"));
    stream.data_mut().response_headers = response;
    assert_eq!(stream.on_response_headers(false), HeadersOutcome::Continue);
}

#[test]
fn held_body_goes_on_when_the_trailer_callback_continues() {
    let plugin = load("buffering", BUFFERING.as_bytes(), 1).expect("load");
    let chain = FilterChain::new(vec![plugin]);
    let mut stream = chain.start(request("GET"));
    response_started(&mut stream);
    assert_eq!(
        stream.on_response_body(Bytes::from_static(b"ab"), false),
        BodyOutcome::Held
    );
    assert_eq!(
        stream.on_response_body(Bytes::from_static(b"cd"), false),
        BodyOutcome::Held
    );
    stream
        .data_mut()
        .response_trailers
        .push("grpc-status", Bytes::from_static(b"0"));
    assert_eq!(
        stream.on_response_trailers(),
        TrailersOutcome::Continue(Bytes::from_static(b"abcd"))
    );
    let trailers = &stream.data().response_trailers;
    assert_eq!(
        trailers.get(b"grpc-status").map(|v| &v[..]),
        Some(&b"0"[..])
    );
    assert_eq!(trailers.get(b"x-t").map(|v| &v[..]), Some(&b"1"[..]));
    stream.finish();
}

#[test]
fn a_pause_in_the_trailer_callback_waits_for_continue() {
    let plugin = load("buffering", BUFFERING.as_bytes(), 1).expect("load");
    let chain = FilterChain::new(vec![plugin]);
    let mut stream = chain.start(request("GET"));
    response_started(&mut stream);
    let trailers = &mut stream.data_mut().response_trailers;
    trailers.push("a", Bytes::from_static(b"1"));
    trailers.push("b", Bytes::from_static(b"2"));
    // Without a body the trailers come right after the headers.
    assert_eq!(stream.on_response_trailers(), TrailersOutcome::Paused);
    assert!(stream.is_paused());
    // Nothing resumed it.
    assert_eq!(stream.resume_trailers(), TrailersOutcome::Paused);
    stream.finish();
}
