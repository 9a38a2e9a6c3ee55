//! Fetching over real loopback sockets from a scripted HTTP server: which answers are
//! retried, what is cached, what is refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmbridge_fetch::{Digest, FetchErrorKind, FetchOptions, Fetcher, check_url};

const MODULE: &[u8] = b"\0asm\x01\0\0\0 pretend this is a filter";

/// An HTTP/1.1 server that answers each connection with the next scripted status (the
/// last one repeats), the body for 200, and `Connection: close`.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Scripted {
    fn start(script: &[u16]) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&connections);
        let script = script.to_vec();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = script[n.min(script.len() - 1)];
                // Read the request head.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let body: &[u8] = if status == 200 { MODULE } else { b"nope" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        Scripted { addr, connections }
    }

    fn url(&self) -> String {
        format!("http://{}/filter.wasm", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn fetcher(name: &str, retries: u32) -> Fetcher {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "wasmbridge-fetch-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = FetchOptions::new(dir);
    options.retries = retries;
    options.backoff = Duration::from_millis(5);
    options.ca_file = None;
    Fetcher::new(options).expect("fetcher")
}

#[test]
fn server_errors_and_rate_limits_are_retried_until_the_module_comes() {
    let server = Scripted::start(&[503, 429, 500, 200]);
    let fetcher = fetcher("retried", 3);
    let fetched = fetcher
        .fetch_https(&server.url(), &Digest::of(MODULE))
        .expect("fetched on the fourth attempt");
    assert_eq!(fetched.bytes, MODULE);
    assert!(!fetched.from_cache);
    assert_eq!(server.connections(), 4);
    assert_eq!(std::fs::read(&fetched.path).expect("cached"), MODULE);
}

#[test]
fn client_errors_are_not_retried() {
    let server = Scripted::start(&[404, 200]);
    let err = fetcher("not-retried", 3)
        .fetch_https(&server.url(), &Digest::of(MODULE))
        .expect_err("404");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(server.connections(), 1);

    let server = Scripted::start(&[403, 200]);
    let err = fetcher("forbidden", 3)
        .fetch_https(&server.url(), &Digest::of(MODULE))
        .expect_err("403");
    assert!(
        matches!(err.kind(), FetchErrorKind::Status { status: 403, .. }),
        "{err}"
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn retries_are_bounded() {
    let server = Scripted::start(&[503]);
    let err = fetcher("bounded", 2)
        .fetch_https(&server.url(), &Digest::of(MODULE))
        .expect_err("always 503");
    assert!(
        matches!(err.kind(), FetchErrorKind::Status { status: 503, .. }),
        "{err}"
    );
    assert_eq!(server.connections(), 3);
}

#[test]
fn a_wrong_digest_is_refused_and_nothing_is_cached() {
    let server = Scripted::start(&[200]);
    let fetcher = fetcher("wrong", 0);
    let wanted = Digest::of(b"another module");
    let err = fetcher
        .fetch_https(&server.url(), &wanted)
        .expect_err("mismatch");
    assert!(err.is_hash_mismatch());
    assert_eq!(err.origin(), server.url());
    let text = err.to_string();
    assert!(
        text.contains(&format!("expected {wanted}, got {}", Digest::of(MODULE))),
        "{text}"
    );
    assert!(!fetcher.cache().path(&Digest::of(MODULE)).exists());
    assert!(!fetcher.cache().path(&wanted).exists());
}

#[test]
fn a_cached_module_needs_no_server() {
    let server = Scripted::start(&[200]);
    let fetcher = fetcher("cached", 0);
    fetcher
        .fetch_https(&server.url(), &Digest::of(MODULE))
        .expect("first");
    // Nothing listens on port 9 of loopback; the cache answers before any connection.
    let again = fetcher
        .fetch_https("http://127.0.0.1:9/elsewhere.wasm", &Digest::of(MODULE))
        .expect("from the cache");
    assert!(again.from_cache);
    assert_eq!(again.bytes, MODULE);
    assert_eq!(server.connections(), 1);
    assert_eq!(
        fetcher.cache().lookup(&server.url()),
        Some(Digest::of(MODULE))
    );
}

#[test]
fn cleartext_only_to_loopback() {
    assert!(check_url("https://example.com/a.wasm", false).is_ok());
    assert!(check_url("http://127.0.0.1:8080/a.wasm", false).is_ok());
    assert!(check_url("http://localhost/a.wasm", false).is_ok());
    assert!(check_url("http://[::1]/a.wasm", false).is_ok());
    let err = check_url("http://example.com/a.wasm", false).expect_err("remote cleartext");
    assert!(err.contains("only for loopback"), "{err}");
    assert!(check_url("http://example.com/a.wasm", true).is_ok());
    assert!(check_url("ftp://example.com/a.wasm", true).is_err());
    assert!(check_url("https://", false).is_err());
    assert!(check_url("no scheme", false).is_err());
    let err = fetcher("refused", 0)
        .fetch_https("http://example.com/a.wasm", &Digest::of(MODULE))
        .expect_err("refused before any connection");
    assert!(matches!(err.kind(), FetchErrorKind::Refused(_)), "{err}");
}
