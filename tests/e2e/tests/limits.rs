//! Resource limits and failure containment through the gateway: a plugin that loops, eats
//! memory, overflows its stack, runs out of fuel or traps is stopped; only its replica is
//! replaced; the gateway keeps serving; `/metrics` counts each poisoning by reason. Plugins
//! with fuel or their own stack size run on engines of their own beside the others. A plugin that buffers
//! a body past `limits.body` gets the request a 413 and the response a 503 (or, once the
//! response headers went out, an aborted response); header maps, callouts and log lines
//! are capped too; `/metrics` counts each hit by limit.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, mpsc};
use wasmbridge_e2e::{
    Gateway, Proto, Upstream, filter, full, get, one_trap_in_ten, sample, scrape, send, serve,
};

/// A gateway on `threads` workers whose only route runs the `misbehave` probe with
/// `limits` (YAML flow mapping) and `failure_policy`.
fn yaml(threads: usize, limits: &str, policy: &str) -> String {
    format!(
        r#"
server: {{threads: {threads}}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: misbehave
    module: {}
    failure_policy: {policy}
    limits: {limits}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [misbehave]
"#,
        filter("misbehave")
    )
}

/// `wasmbridge_plugin_poisonings_total` of the `misbehave` plugin for `reason`.
async fn poisonings(gw: &Gateway, reason: &str) -> anyhow::Result<Option<String>> {
    poisonings_of(gw, "misbehave", reason).await
}

/// `wasmbridge_plugin_poisonings_total` of `plugin` for `reason`.
async fn poisonings_of(gw: &Gateway, plugin: &str, reason: &str) -> anyhow::Result<Option<String>> {
    let text = scrape(gw).await?;
    Ok(sample(
        &text,
        &format!(r#"wasmbridge_plugin_poisonings_total{{plugin="{plugin}",reason="{reason}"}}"#),
    ))
}

/// Asserts the poisoning count for `reason` (`None`: never counted).
async fn assert_poisoned(gw: &Gateway, reason: &str, count: Option<&str>) -> anyhow::Result<()> {
    let found = poisonings(gw, reason).await?;
    assert_eq!(found.as_deref(), count, "{reason}:\n{}", gw.log_text());
    Ok(())
}

/// Sends one request with `x-misbehave: mode`, expects the failure policy's 503, then one
/// well-behaved request, which the replaced VM serves.
async fn stopped_then_served(gw: &Gateway, mode: &str) -> anyhow::Result<()> {
    let failed = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-misbehave", mode)]),
    )
    .await?;
    assert_eq!(failed.status, 503, "{mode}: {}", gw.log_text());
    let next = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(next.status, 200, "{mode}: the next request is served");
    assert_eq!(next.header("x-misbehave"), "ok", "{mode}: by the plugin");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_at_the_cpu_deadline() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-loop",
        &yaml(1, "{cpu: 20ms}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "loop").await?;
    let log = gw.log_text();
    assert!(
        log.contains("ran past its CPU deadline (20ms"),
        "the reason is logged:\n{log}"
    );
    assert_poisoned(&gw, "deadline", Some("1")).await?;
    assert_poisoned(&gw, "trap", None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_profile_stops_a_loop_within_milliseconds() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-strict",
        &yaml(1, "{profile: strict}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "loop").await?;
    let log = gw.log_text();
    assert!(log.contains("ran past its CPU deadline (1ms"), "{log}");
    assert_poisoned(&gw, "deadline", Some("1")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_the_cap() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-memory",
        &yaml(1, "{memory: 8MiB}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "memory-bomb").await?;
    let log = gw.log_text();
    assert!(
        log.contains("after its memory reached the cap of 8388608 bytes"),
        "{log}"
    );
    assert_poisoned(&gw, "memory", Some("1")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_is_contained() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-stack",
        &yaml(1, "{}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "stack-overflow").await?;
    assert_poisoned(&gw, "stack_overflow", Some("1")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_is_stopped_when_its_fuel_runs_out() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-fuel",
        &yaml(1, "{fuel: 100000}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "loop").await?;
    let log = gw.log_text();
    assert!(
        log.contains(
            "a callback used up its fuel (100000 per call unless overridden; plugins[].limits.fuel)"
        ),
        "the reason is logged:\n{log}"
    );
    assert_poisoned(&gw, "fuel", Some("1")).await?;
    assert_poisoned(&gw, "deadline", None).await?;
    Ok(())
}

/// A recursion `DEPTH` calls deep: about 250 KiB of wasm stack and 140 000 units of fuel
/// in the `misbehave` probe.
const DEPTH: u32 = 4000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_plugin_runs_with_its_own_stack_and_fuel() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let module = filter("misbehave");
    let yaml = format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - {{name: small, module: {module}, limits: {{stack: 64KiB}}}}
  - {{name: plain, module: {module}}}
  - name: fuelled
    module: {module}
    limits: {{fuel: 1000000, stack: 1MiB, callbacks: {{on_response_headers: {{fuel: 20000}}}}}}
  - {{name: starved, module: {module}, limits: {{callbacks: {{on_request_headers: {{fuel: 50000}}}}}}}}
routes:
  - {{match: {{prefix: /small}}, cluster: backend, plugins: [small]}}
  - {{match: {{prefix: /plain}}, cluster: backend, plugins: [plain]}}
  - {{match: {{prefix: /fuelled}}, cluster: backend, plugins: [fuelled]}}
  - {{match: {{prefix: /starved}}, cluster: backend, plugins: [starved]}}
"#
    );
    let gw = Gateway::start("limits-engines", &yaml, Some(upstream.addr)).await?;
    let deep = format!("recurse-{DEPTH}");
    let ask = |path: &str, mode: &str| {
        let req = get(&gw.url(path), &[("x-misbehave", mode)]);
        send(gw.addr, Proto::H1, req)
    };

    // 64 KiB cannot hold the recursion; the default 512 KiB and 1 MiB can.
    let reply = ask("/small", &deep).await?;
    assert_eq!(reply.status, 503, "{}", gw.log_text());
    assert!(
        gw.log_text()
            .contains("its wasm stack overflowed (65536 bytes; plugins[].limits.stack)"),
        "{}",
        gw.log_text()
    );
    assert_eq!(
        poisonings_of(&gw, "small", "stack_overflow")
            .await?
            .as_deref(),
        Some("1")
    );
    let reply = ask("/small", "recurse-100").await?;
    assert_eq!(reply.status, 200, "a shallow one fits: {}", gw.log_text());
    assert_eq!(reply.header("x-misbehave"), "recursed 100");
    for path in ["/plain", "/fuelled"] {
        let reply = ask(path, &deep).await?;
        assert_eq!(reply.status, 200, "{path}: {}", gw.log_text());
        assert_eq!(
            reply.header("x-misbehave"),
            format!("recursed {DEPTH}"),
            "{path}"
        );
        assert_eq!(reply.header("x-upstream"), "echo", "{path}");
    }

    // Fuel for one callback only: the recursion in on_request_headers is stopped there,
    // a request that does not recurse is served.
    let reply = ask("/starved", &deep).await?;
    assert_eq!(reply.status, 503, "{}", gw.log_text());
    assert_eq!(
        poisonings_of(&gw, "starved", "fuel").await?.as_deref(),
        Some("1")
    );
    let reply = ask("/starved", "none").await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(reply.header("x-misbehave"), "ok");
    for plugin in ["plain", "fuelled"] {
        for reason in ["fuel", "stack_overflow"] {
            assert_eq!(
                poisonings_of(&gw, plugin, reason).await?,
                None,
                "{plugin} {reason}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_open_loop_is_skipped_for_its_stream() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-open",
        &yaml(1, "{cpu: 20ms}", "fail_open"),
        Some(upstream.addr),
    )
    .await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-misbehave", "loop")]),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(reply.header("x-upstream"), "echo");
    assert_eq!(
        reply.header("x-misbehave"),
        "",
        "skipped after the deadline"
    );
    assert_poisoned(&gw, "deadline", Some("1")).await?;
    Ok(())
}

/// One request in ten traps, from ten concurrent clients on two worker threads. Each trap
/// gets the 503; a stream that shared the trapped VM at that moment loses its context
/// with it and gets the policy too (Envoy does the same), and the gateway logs each such
/// stream; every other request succeeds, and the metric counts exactly the traps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trap_in_ten_under_load_fails_only_its_replica() -> anyhow::Result<()> {
    const CLIENTS: usize = 10;
    const EACH: usize = CLIENTS;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-load",
        &yaml(2, "{}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    let mut traps = 0;
    let mut ok = 0;
    let mut bystanders_failed = 0;
    for reply in one_trap_in_ten(&gw, CLIENTS).await? {
        match (reply.trap, reply.status) {
            (true, 503) => traps += 1,
            (false, 200) => ok += 1,
            (false, 503) => bystanders_failed += 1,
            _ => panic!("unexpected {reply:?}:\n{}", gw.log_text()),
        }
    }
    assert_eq!(
        traps, CLIENTS,
        "every trapping request gets the policy's 503"
    );
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    // Streams that lost their VM, whether before their reply (then a 503) or after it
    // (in on_log or on_done, with the reply already sent).
    let lost = log.matches("the VM of this stream failed earlier").count()
        + log
            .matches("plugin failed for this stream: the VM is gone")
            .count();
    assert!(
        bystanders_failed <= lost,
        "only streams of a trapped VM fail besides the traps ({bystanders_failed} > {lost}):\n{log}"
    );
    assert_eq!(ok + bystanders_failed, CLIENTS * (EACH - 1));
    assert_eq!(
        poisonings(&gw, "trap").await?,
        Some(CLIENTS.to_string()),
        "{log}"
    );
    // Still serving.
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200);
    Ok(())
}

// ---- body, header, callout and log line caps ------------------------------------------

/// `wasmbridge_plugin_limit_exceeded_total` of `plugin` for `limit`.
async fn exceeded(gw: &Gateway, plugin: &str, limit: &str) -> anyhow::Result<Option<String>> {
    let text = scrape(gw).await?;
    Ok(sample(
        &text,
        &format!(r#"wasmbridge_plugin_limit_exceeded_total{{limit="{limit}",plugin="{plugin}"}}"#),
    ))
}

/// A body whose chunks a test feeds through a channel; it ends when the sender is dropped.
struct Fed(mpsc::Receiver<Bytes>);

impl Body for Fed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Sends `req` on a new HTTP/1.1 connection and returns the response once its head is in,
/// its body still to read.
async fn send_head<B>(gw: &Gateway, req: Request<B>) -> anyhow::Result<Response<Incoming>>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// What an upstream saw of the requests that reached it.
#[derive(Default)]
struct Seen {
    /// Requests whose head arrived.
    heads: AtomicUsize,
    /// Body bytes that arrived, over all requests.
    body_bytes: AtomicUsize,
    /// Requests whose body arrived to its end.
    complete: AtomicUsize,
}

/// An upstream that reads each request body frame by frame, recording what arrived, and
/// answers 200 `done` once it ended (a broken body ends the exchange).
async fn counting_upstream()
-> anyhow::Result<(std::net::SocketAddr, Arc<Seen>, tokio::task::JoinHandle<()>)> {
    let seen = Arc::new(Seen::default());
    let counted = Arc::clone(&seen);
    let (addr, task) = serve(move |req: Request<Incoming>| {
        let seen = Arc::clone(&counted);
        async move {
            seen.heads.fetch_add(1, Ordering::SeqCst);
            let mut body = req.into_body();
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let n = frame.data_ref().map_or(0, Bytes::len);
                        seen.body_bytes.fetch_add(n, Ordering::SeqCst);
                    }
                    Some(Err(_)) => break,
                    None => {
                        seen.complete.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            }
            Ok::<_, Infallible>(Response::new(full("done")))
        }
    })
    .await?;
    Ok((addr, seen, task))
}

/// A gateway whose only route runs the `body` probe (buffering request bodies until their
/// end) with `limits: {body: 64KiB}`.
fn body_yaml() -> String {
    format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: body
    module: {}
    configuration: {{request_suffix: "!"}}
    limits: {{body: 64KiB}}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [body]
"#,
        filter("body")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_cap_gets_413_and_no_body_reaches_the_upstream()
-> anyhow::Result<()> {
    let (addr, seen, _upstream) = counting_upstream().await?;
    let gw = Gateway::start("limits-body-request", &body_yaml(), Some(addr)).await?;

    // 80 KiB in two chunks, the stream kept open: the plugin buffers the first, and the
    // second would take it past 64 KiB. (Pingora reads at most 64 KiB at a time, so the
    // plugin never sees the whole body at once.) The client stops sending there, so the
    // gateway closes a connection with nothing unread.
    let (chunks, rx) = mpsc::channel(2);
    chunks.send(Bytes::from(vec![b'a'; 40 << 10])).await?;
    chunks.send(Bytes::from(vec![b'b'; 40 << 10])).await?;
    let req = Request::post(gw.url("/upload")).body(Fed(rx))?;
    let resp = send_head(&gw, req).await?;
    assert_eq!(resp.status(), 413, "{}", gw.log_text());
    let body = resp.into_body().collect().await?.to_bytes();
    assert_eq!(&body[..], b"Payload Too Large");
    drop(chunks);

    gw.wait_for_stream_end().await;
    // Pingora sends the request head upstream before the first body chunk (as Envoy's
    // router does once the filter let the headers through); no body byte follows it.
    assert_eq!(
        seen.heads.load(Ordering::SeqCst),
        1,
        "only the head went upstream"
    );
    assert_eq!(
        seen.body_bytes.load(Ordering::SeqCst),
        0,
        "no body byte went upstream"
    );
    assert_eq!(
        seen.complete.load(Ordering::SeqCst),
        0,
        "no request reached its end"
    );
    let log = gw.log_text();
    assert!(
        log.contains("the plugin buffered 81920 bytes of the request body; the stream gets 413 request_payload_too_large (plugins[].limits.body is 65536)"),
        "{log}"
    );
    assert_eq!(exceeded(&gw, "body", "body").await?.as_deref(), Some("1"));

    // The gateway keeps serving, and a body within the cap is buffered and rewritten.
    let reply = send(
        gw.addr,
        Proto::H1,
        Request::post(gw.url("/small")).body(full("small body"))?,
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(&reply.body[..], b"done");
    assert_eq!(seen.complete.load(Ordering::SeqCst), 1);
    assert_eq!(seen.body_bytes.load(Ordering::SeqCst), "small body!".len());
    Ok(())
}

/// An upstream for the response-side tests: `/whole` answers a 2 KiB body in one piece
/// with its length, `/late` sends 100 bytes and the rest (4 KiB) only once `more` is
/// notified, anything else answers `small`.
async fn response_upstream(
    more: Arc<Notify>,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    Ok(serve(move |req: Request<Incoming>| {
        let more = Arc::clone(&more);
        async move {
            let body = match req.uri().path() {
                "/whole" => full(vec![b'w'; 2 << 10]),
                "/late" => {
                    let (tx, rx) = mpsc::channel(2);
                    tokio::spawn(async move {
                        let _ = tx.send(Bytes::from(vec![b'e'; 100])).await;
                        more.notified().await;
                        let _ = tx.send(Bytes::from(vec![b'l'; 4 << 10])).await;
                    });
                    Fed(rx).boxed()
                }
                _ => full("small"),
            };
            Ok::<_, Infallible>(Response::new(body))
        }
    })
    .await?)
}

/// A gateway whose only route runs the `hostcalls` probe pausing every response body
/// callback (so that it buffers all of a response), with `limits: {body: 1KiB}`.
fn response_yaml() -> String {
    format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: holder
    module: {}
    configuration: '{{"return": {{"on_response_body": "pause"}}}}'
    limits: {{body: 1KiB}}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [holder]
"#,
        filter("hostcalls")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_over_the_cap_gets_503_while_its_headers_are_unsent() -> anyhow::Result<()>
{
    let (addr, _upstream) = response_upstream(Arc::new(Notify::new())).await?;
    let gw = Gateway::start("limits-body-response", &response_yaml(), Some(addr)).await?;
    // Head and body arrive in one read: Pingora filters them together before writing the
    // head, so the 503 can replace the response.
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/whole"), &[])).await?;
    assert_eq!(reply.status, 503, "{}", gw.log_text());
    assert_eq!(&reply.body[..], b"Service Unavailable");
    assert_eq!(reply.header("content-type"), "text/plain");
    let log = gw.log_text();
    assert!(
        log.contains("the plugin buffered 2048 bytes of the response body; the stream gets 503 response_payload_too_large (plugins[].limits.body is 1024)"),
        "{log}"
    );
    assert_eq!(exceeded(&gw, "holder", "body").await?.as_deref(), Some("1"));

    // Still serving: a response within the cap is held to its end, then sent on.
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/small"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(&reply.body[..], b"small");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_over_the_cap_after_its_headers_went_out_is_aborted() -> anyhow::Result<()>
{
    let more = Arc::new(Notify::new());
    let (addr, _upstream) = response_upstream(Arc::clone(&more)).await?;
    let gw = Gateway::start("limits-body-abort", &response_yaml(), Some(addr)).await?;
    let resp = send_head(&gw, get(&gw.url("/late"), &[])).await?;
    // The head is out; only now does the upstream send what takes the plugin over 1 KiB.
    assert_eq!(resp.status(), 200);
    more.notify_one();
    let body = resp.into_body().collect().await;
    assert!(
        body.is_err(),
        "the response is cut short, not ended normally: {body:?}"
    );
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    assert!(
        log.contains("the plugin buffered 4196 bytes of the response body"),
        "{log}"
    );
    assert!(
        log.contains("the response headers went out already, so the local reply cannot be sent: the stream is aborted"),
        "{log}"
    );
    assert_eq!(exceeded(&gw, "holder", "body").await?.as_deref(), Some("1"));

    let reply = send(gw.addr, Proto::H1, get(&gw.url("/small"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(&reply.body[..], b"small");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_callout_and_log_line_caps_hold_through_the_gateway() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let big = "v".repeat(2000);
    let message = "m".repeat(300);
    let call = r#"{"call": "http_call", "upstream": "backend", "headers": [[":method", "GET"], [":path", "/side"], [":authority", "side"]]}"#;
    let config = format!(
        r#"{{"on_request_headers": [
              {{"call": "add_header_map_value", "map": "request_headers", "key": "x-small", "value": "1"}},
              {{"call": "add_header_map_value", "map": "request_headers", "key": "x-big", "value": "{big}"}},
              {{"call": "log", "message": "{message}"}},
              {call}, {call}],
            "on_http_call_response": [{{"call": "continue_stream", "stream": "request"}}],
            "return": {{"on_request_headers": "pause"}}}}"#
    )
    .replace('\n', " ");
    let yaml = format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: capped
    module: {}
    configuration: '{config}'
    limits: {{headers: {{bytes: 1KiB}}, callouts: 1, log_line: 128B}}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [capped]
"#,
        filter("hostcalls")
    );
    let gw = Gateway::start("limits-caps", &yaml, Some(upstream.addr)).await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(reply.upstream_header("x-small").as_deref(), Some("1"));
    assert_eq!(
        reply.upstream_header("x-big"),
        None,
        "the add past 1 KiB was refused"
    );
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    let expect = |needle: &str| assert!(log.contains(needle), "missing {needle:?} in\n{log}");
    expect("probe on_request_headers add_header_map_value -> Ok");
    expect("probe on_request_headers add_header_map_value -> BadArgument");
    expect("probe on_request_headers http_call -> Ok token=");
    expect("probe on_request_headers http_call -> InternalFailure");
    expect(&format!("{}…[172 bytes cut]", &message[..128]));
    for (limit, count) in [("header_bytes", "1"), ("callouts", "1"), ("log_line", "1")] {
        assert_eq!(
            exceeded(&gw, "capped", limit).await?.as_deref(),
            Some(count),
            "{limit}"
        );
    }
    assert_eq!(exceeded(&gw, "capped", "header_pairs").await?, None);
    Ok(())
}
