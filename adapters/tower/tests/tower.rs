//! The tower adapter between a real HTTP client and real upstreams on loopback, with real
//! compiled filters: the gateway built from YAML, and an axum app with the layer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use wasmbridge_config::Config;
use wasmbridge_e2e::{Proto, Upstream, get, render, send, serve, with_trailers};
use wasmbridge_host::{FilterChain, Plugin, PluginSpec, Runtime};
use wasmbridge_tower::{Gateway, WasmLayer, start_root_drivers};

/// Builds the tower gateway from a YAML template (see `wasmbridge_e2e::render`) and serves
/// it on a loopback port.
async fn gateway(template: &str, upstream: Option<SocketAddr>) -> Result<(SocketAddr, WasmLayer)> {
    let unused: SocketAddr = "127.0.0.1:1".parse()?;
    let yaml = render(template, unused, unused, upstream);
    let config = Config::from_yaml_str(&yaml, Path::new("<test>"), Path::new("."))?;
    let gateway = Gateway::build(config)?;
    let layer = gateway.layer();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(gateway.serve_on(vec![listener], None));
    Ok((addr, layer))
}

/// Waits until every stream ended (`on_log`, `on_done`, `on_delete` ran).
async fn all_streams_end(layer: &WasmLayer) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while layer.open_streams() > 0 {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

fn text(body: &'static str) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_with_the_layer_gets_plugin_headers() -> Result<()> {
    use axum::routing::post;
    let runtime = Runtime::new()?;
    let module = runtime.compile_file("add_header", &wasmbridge_e2e::find_filter("add_header")?)?;
    let spec = PluginSpec {
        name: "add_header".into(),
        configuration: Bytes::from_static(
            br#"{"request_headers": {"x-from-wasm": "1"}, "response_headers": {"x-served-by": "wasmbridge"}}"#,
        ),
        replicas: 1,
        ..PluginSpec::default()
    };
    let plugin = Plugin::load(&runtime, &module, spec, None)?;
    start_root_drivers(std::slice::from_ref(&plugin));
    let layer = WasmLayer::new(FilterChain::new(vec![plugin]));
    let app = axum::Router::new()
        .route(
            "/hello",
            post(|headers: http::HeaderMap, body: String| async move {
                let seen = headers.get("x-from-wasm").is_some();
                format!("seen={seen} body={body}")
            }),
        )
        .layer(layer.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let req = Request::post("/hello")
        .header("host", "app")
        .body(wasmbridge_e2e::full("hi"))?;
    let reply = send(addr, Proto::H1, req).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-served-by"), "wasmbridge");
    assert_eq!(reply.body, "seen=true body=hi");
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_answers_with_a_local_reply_and_the_upstream_is_not_reached() -> Result<()> {
    let upstream = Upstream::start().await;
    let (addr, layer) = gateway(
        r#"
listeners: [{address: "{listen}"}]
clusters: [{name: backend, endpoints: ["{upstream}"]}]
plugins:
  - {name: deny, module: "{filters}/deny.wasm", configuration: {header: x-api-key}}
routes:
  - {match: {prefix: /}, cluster: backend, plugins: [deny]}
"#,
        Some(upstream.addr),
    )
    .await?;
    let denied = send(addr, Proto::H1, get(&format!("http://{addr}/x"), &[])).await?;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, "access denied\n");
    assert_eq!(denied.header("x-denied-by"), "deny");
    assert_eq!(upstream.requests(), 0);
    let allowed = send(
        addr,
        Proto::H1,
        get(&format!("http://{addr}/x"), &[("x-api-key", "k")]),
    )
    .await?;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("x-upstream"), "echo");
    assert_eq!(upstream.requests(), 1);
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_take_hosts_overrides_and_phases_from_the_yaml() -> Result<()> {
    let upstream = Upstream::start().await;
    let (addr, layer) = gateway(
        r#"
listeners: [{address: "{listen}"}]
clusters: [{name: backend, endpoints: ["{upstream}"]}]
plugins:
  - {name: add_header, module: "{filters}/add_header.wasm", configuration: {headers: {x-config: base}}}
  - name: first
    module: "{filters}/add_header.wasm"
    phase: AUTHN
    configuration: {request_headers: {x-order: first}}
routes:
  - match: {prefix: /, hosts: ["*.example.com"]}
    cluster: backend
    plugins: [{name: add_header, configuration: {headers: {x-config: example}, request_headers: {x-order: second}}}, first]
  - {match: {regex: "/v[0-9]+"}, cluster: backend, plugins: [add_header]}
"#,
        Some(upstream.addr),
    )
    .await?;
    let port = addr.port();
    let host = format!("www.example.com:{port}");
    let example = send(
        addr,
        Proto::H1,
        get(&format!("http://{host}/x"), &[("host", &host)]),
    )
    .await?;
    assert_eq!(example.status, 200);
    assert_eq!(example.header("x-config"), "example");
    assert_eq!(example.upstream_headers("x-order"), ["first", "second"]);
    let plain = send(addr, Proto::H1, get(&format!("http://{addr}/v2"), &[])).await?;
    assert_eq!(plain.header("x-config"), "base");
    let none = send(addr, Proto::H1, get(&format!("http://{addr}/v2/x"), &[])).await?;
    assert_eq!(none.status, 404);
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_auth_calls_out_to_a_real_authorization_server() -> Result<()> {
    let upstream = Upstream::start().await;
    let checks = Arc::new(AtomicUsize::new(0));
    let seen = checks.clone();
    let (auth, _task) = serve(move |req: Request<Incoming>| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let ok = req.headers().get("authorization").map(|v| v.as_bytes()) == Some(b"good");
            let mut resp = text(if ok { "ok" } else { "no" });
            if ok {
                resp.headers_mut()
                    .insert("x-auth-user", "alice".parse().expect("value"));
            } else {
                *resp.status_mut() = http::StatusCode::FORBIDDEN;
            }
            Ok::<_, Infallible>(resp)
        }
    })
    .await?;
    let template = format!(
        r#"
listeners: [{{address: "{{listen}}"}}]
clusters:
  - {{name: backend, endpoints: ["{{upstream}}"]}}
  - {{name: auth, endpoints: ["{auth}"]}}
plugins:
  - name: ext_auth
    module: "{{filters}}/ext_auth.wasm"
    configuration: {{cluster: auth, forward_headers: [authorization], allowed_headers: [x-auth-user]}}
routes:
  - {{match: {{prefix: /}}, cluster: backend, plugins: [ext_auth]}}
"#
    );
    let (addr, layer) = gateway(&template, Some(upstream.addr)).await?;
    let allowed = send(
        addr,
        Proto::H1,
        get(&format!("http://{addr}/a"), &[("authorization", "good")]),
    )
    .await?;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.upstream_header("x-auth-user").as_deref(),
        Some("alice")
    );
    let denied = send(
        addr,
        Proto::H1,
        get(&format!("http://{addr}/a"), &[("authorization", "bad")]),
    )
    .await?;
    assert_eq!(denied.status, 403);
    assert_eq!(checks.load(Ordering::SeqCst), 2);
    assert_eq!(upstream.requests(), 1);
    assert!(all_streams_end(&layer).await);
    Ok(())
}

/// An h2c upstream that answers with the request trailers it received (as JSON) and
/// response trailers of its own.
async fn trailer_echo(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    let collected = req.into_body().collect().await.ok();
    let trailers: Vec<(String, String)> = collected
        .as_ref()
        .and_then(|c| c.trailers())
        .map(wasmbridge_e2e::header_pairs)
        .unwrap_or_default();
    let body = collected.map(|c| c.to_bytes()).unwrap_or_default();
    let description =
        serde_json::json!({"body": String::from_utf8_lossy(&body), "trailers": trailers});
    let mut map = http::HeaderMap::new();
    map.insert("x-upstream-trailer", "1".parse().expect("value"));
    let out = Full::new(Bytes::from(description.to_string()))
        .with_trailers(async move { Some(Ok(map)) })
        .boxed();
    Ok(Response::new(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_trailers_reach_the_plugin_and_the_peers() -> Result<()> {
    let (upstream, _task) = serve(trailer_echo).await?;
    let (addr, layer) = gateway(
        r#"
listeners: [{address: "{listen}", http2: true}]
clusters: [{name: backend, endpoints: ["{upstream}"], http2: true}]
plugins:
  - name: probe
    module: "{filters}/hostcalls.wasm"
    configuration:
      on_request_trailers: [{call: add_header_map_value, map: request_trailers, key: x-plugin-saw, value: request}]
      on_response_trailers: [{call: add_header_map_value, map: response_trailers, key: x-plugin-saw, value: response}]
routes:
  - {match: {prefix: /}, cluster: backend, plugins: [probe]}
"#,
        Some(upstream),
    )
    .await?;
    let body = with_trailers(
        &[b"part one ", b"part two"],
        &[("x-client-trailer".into(), "c".into())],
    )?;
    let req = Request::post(format!("http://{addr}/t")).body(body)?;
    let reply = send(addr, Proto::H2c, req).await?;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["body"], "part one part two");
    let trailers = echo["trailers"].to_string();
    assert!(
        trailers.contains(r#"["x-client-trailer","c"]"#),
        "{trailers}"
    );
    assert!(
        trailers.contains(r#"["x-plugin-saw","request"]"#),
        "{trailers}"
    );
    let got = reply.trailers.expect("response trailers");
    assert_eq!(got["x-upstream-trailer"], "1");
    assert_eq!(got["x-plugin-saw"], "response");
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_pause_resumes_after_an_asynchronous_callout() -> Result<()> {
    let upstream = Upstream::start().await;
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let (slow, _task) = serve(move |_req: Request<Incoming>| {
        let count = count.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(text("later"))
        }
    })
    .await?;
    let template = format!(
        r#"
listeners: [{{address: "{{listen}}"}}]
clusters:
  - {{name: backend, endpoints: ["{{upstream}}"]}}
  - {{name: slow, endpoints: ["{slow}"]}}
plugins:
  - name: probe
    module: "{{filters}}/hostcalls.wasm"
    configuration:
      return: {{on_response_body: pause}}
      on_response_body:
        - {{call: http_call, upstream: slow, when: eos, headers: [[":method", GET], [":path", /slow], [":authority", slow]]}}
      on_http_call_response:
        - {{call: continue_stream, stream: response}}
routes:
  - {{match: {{prefix: /}}, cluster: backend, plugins: [probe]}}
"#
    );
    let (addr, layer) = gateway(&template, Some(upstream.addr)).await?;
    let started = Instant::now();
    let reply = send(
        addr,
        Proto::H1,
        get(
            &format!("http://{addr}/p"),
            &[("x-reply-body", "the whole body")],
        ),
    )
    .await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "the whole body");
    assert_eq!(answered.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_request_is_resumed_by_another_stream() -> Result<()> {
    let upstream = Upstream::start().await;
    let (addr, layer) = gateway(
        r#"
listeners: [{address: "{listen}"}]
server: {threads: 1}
clusters: [{name: backend, endpoints: ["{upstream}"]}]
plugins:
  - {name: pause, module: "{filters}/pause.wasm"}
routes:
  - {match: {prefix: /}, cluster: backend, plugins: [pause]}
"#,
        Some(upstream.addr),
    )
    .await?;
    let url = format!("http://{addr}/held");
    let held = tokio::spawn(send(addr, Proto::H1, get(&url, &[("x-pause", "hold")])));
    // Release only once the first request is held (the release answers `none` before).
    let mut released = String::new();
    for _ in 0..200 {
        let reply = send(addr, Proto::H1, get(&url, &[("x-release", "1")])).await?;
        released = reply.header("x-released").to_string();
        if released != "none" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(released, "none");
    let held = tokio::time::timeout(Duration::from_secs(10), held).await???;
    assert_eq!(held.status, 200);
    assert_eq!(
        held.upstream_header("x-pause-result").as_deref(),
        Some("resumed-by-other")
    );
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_when_the_client_goes_away_during_a_pause() -> Result<()> {
    let upstream = Upstream::start().await;
    let (addr, layer) = gateway(
        r#"
listeners: [{address: "{listen}"}]
clusters: [{name: backend, endpoints: ["{upstream}"]}]
plugins:
  - {name: pause, module: "{filters}/pause.wasm"}
routes:
  - {match: {prefix: /}, cluster: backend, plugins: [pause]}
"#,
        Some(upstream.addr),
    )
    .await?;
    let url = format!("http://{addr}/held");
    let held = tokio::spawn(send(addr, Proto::H1, get(&url, &[("x-pause", "hold")])));
    let deadline = Instant::now() + Duration::from_secs(10);
    while layer.open_streams() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(layer.open_streams(), 1);
    held.abort();
    assert!(
        all_streams_end(&layer).await,
        "on_log/on_done/on_delete did not run"
    );
    assert_eq!(upstream.requests(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_filter_gets_its_failure_policy_and_the_server_keeps_serving() -> Result<()> {
    let upstream = Upstream::start().await;
    let (addr, layer) = gateway(
        r#"
listeners: [{address: "{listen}"}]
clusters: [{name: backend, endpoints: ["{upstream}"]}]
plugins:
  - {name: closed, module: "{filters}/misbehave.wasm", failure_policy: fail_closed}
  - {name: open, module: "{filters}/misbehave.wasm", vm_id: other, failure_policy: fail_open}
routes:
  - {match: {prefix: /open}, cluster: backend, plugins: [open]}
  - {match: {prefix: /}, cluster: backend, plugins: [closed]}
"#,
        Some(upstream.addr),
    )
    .await?;
    let trap = [("x-misbehave", "trap-request-headers")];
    let closed = send(addr, Proto::H1, get(&format!("http://{addr}/c"), &trap)).await?;
    assert_eq!(closed.status, 503);
    let open = send(addr, Proto::H1, get(&format!("http://{addr}/open"), &trap)).await?;
    assert_eq!(open.status, 200);
    assert_eq!(open.header("x-upstream"), "echo");
    // A trapped replica is replaced: the next request is served normally.
    let fine = send(addr, Proto::H1, get(&format!("http://{addr}/c"), &[])).await?;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.header("x-misbehave"), "ok");
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continue_releases_a_held_response_chunk_before_the_next_one_arrives() -> Result<()> {
    use http_body_util::StreamBody;
    // The upstream sends one chunk, then the rest 1.5 s later.
    let (upstream, _up) = serve(|_req: Request<Incoming>| async move {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(2);
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(http_body::Frame::data(Bytes::from_static(b"first "))))
                .await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = tx
                .send(Ok(http_body::Frame::data(Bytes::from_static(b"second"))))
                .await;
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok::<_, Infallible>(Response::new(StreamBody::new(stream)))
    })
    .await?;
    let (slow, _task) = serve(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Infallible>(text("ok"))
    })
    .await?;
    let template = format!(
        r#"
listeners: [{{address: "{{listen}}"}}]
clusters:
  - {{name: backend, endpoints: ["{{upstream}}"]}}
  - {{name: slow, endpoints: ["{slow}"]}}
plugins:
  - name: probe
    module: "{{filters}}/hostcalls.wasm"
    configuration:
      return: {{on_response_body: pause_until_eos}}
      on_response_body:
        - {{call: http_call, upstream: slow, when: not_eos, nth: [1], headers: [[":method", GET], [":path", /slow], [":authority", slow]]}}
      on_http_call_response:
        - {{call: continue_stream, stream: response}}
routes:
  - {{match: {{prefix: /}}, cluster: backend, plugins: [probe]}}
"#
    );
    let (addr, layer) = gateway(&template, Some(upstream)).await?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let started = Instant::now();
    let resp = sender
        .send_request(get(&format!("http://{addr}/s"), &[("host", "x")]))
        .await?;
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let mut first_at = None;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            first_at.get_or_insert(started.elapsed());
            got.extend_from_slice(&data);
        }
    }
    assert_eq!(got, b"first second");
    let first_at = first_at.expect("a chunk");
    assert!(
        first_at < Duration::from_millis(1200),
        "the held chunk waited for the next one ({first_at:?})"
    );
    assert!(all_streams_end(&layer).await);
    Ok(())
}

#[test]
fn the_tower_gateway_refuses_tls_it_cannot_serve() {
    let yaml = "listeners:\n  - address: 127.0.0.1:8443\n    tls: {cert: gw.pem, key: gw.key}\nroutes:\n  - match: {prefix: /}\n    direct_response: {status: 200}\n";
    let config = Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new(".")).expect("valid");
    let err = Gateway::build(config).err().expect("refused");
    assert_eq!(
        err.to_string(),
        "gw.yaml: listeners[0].tls: a TLS listener is not supported by the tower gateway; use the Pingora gateway (`wasmbridge run`)"
    );
    let yaml = "listeners: [{address: 127.0.0.1:8080}]\nclusters: [{name: b, endpoints: [\"127.0.0.1:9\"], tls: {}}]\nroutes:\n  - match: {prefix: /}\n    cluster: b\n";
    let config = Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new(".")).expect("valid");
    let err = Gateway::build(config).err().expect("refused");
    assert!(
        err.to_string()
            .starts_with("gw.yaml: clusters[0].tls: TLS to the endpoints"),
        "{err}"
    );
}
