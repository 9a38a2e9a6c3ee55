//! HTTP callouts from a filter through the gateway to real servers: the answer, a 404, a
//! server that never answers (the call's timeout), a cluster with nothing listening, and a
//! body streamed in chunks — each delivered to `proxy_on_http_call_response` as Envoy does.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use wasmbridge_e2e::{
    Gateway, Proto, Upstream, callouts_total, filter, free_port, get, scrape, send, serve,
};

/// The auth service: `/ok` allows, `/slow-body` streams its body in two chunks, `/stall`
/// never answers, anything else is 404.
async fn auth(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    let path = req.uri().path().to_string();
    let user = req
        .headers()
        .get("x-user")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let _ = req.into_body().collect().await;
    let body = match path.as_str() {
        "/ok" => wasmbridge_e2e::full(format!("hello {user}")),
        "/slow-body" => wasmbridge_e2e::chunked(&[b"first half, ", b"second half"]),
        "/stall" => std::future::pending().await,
        _ => {
            return Ok(Response::builder()
                .status(404)
                .body(wasmbridge_e2e::full("no such check"))
                .expect("response"));
        }
    };
    Ok(Response::builder()
        .status(200)
        .header("x-auth", "yes")
        .body(body)
        .expect("response"))
}

/// A plugin that calls `cluster` at `path` from the request headers, pauses, and on the
/// answer logs status, a header and the body, then resumes the request.
fn caller(name: &str, cluster: &str, path: &str, timeout_ms: u32) -> String {
    let config = format!(
        r#"{{"on_request_headers": [{{"call": "http_call", "upstream": "{cluster}", "timeout": {timeout_ms}, "headers": [[":method", "GET"], [":path", "{path}"], [":authority", "auth"], ["x-user", "{name}"]]}}],
            "on_http_call_response": [
              {{"call": "get_header_map_value", "map": "http_call_response_headers", "key": ":status"}},
              {{"call": "get_header_map_value", "map": "http_call_response_headers", "key": "x-auth"}},
              {{"call": "get_buffer_bytes", "buffer": "http_call_response_body"}},
              {{"call": "get_status"}},
              {{"call": "continue_stream", "stream": "request"}}],
            "return": {{"on_request_headers": "pause"}}}}"#
    );
    format!(
        "  - name: {name}\n    module: {}\n    configuration: '{}'\n",
        filter("hostcalls"),
        config.replace('\n', " ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callouts_deliver_answers_and_failures_like_envoy() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let (auth_addr, _auth) = serve(auth).await?;
    let dead = format!("127.0.0.1:{}", free_port());
    let cases = [
        ("ok", "auth", "/ok", 5000),
        ("missing", "auth", "/nothing", 5000),
        ("slow_body", "auth", "/slow-body", 5000),
        ("stall", "auth", "/stall", 300),
        ("dead", "dead", "/ok", 5000),
    ];
    let mut plugins = String::new();
    let mut routes = String::new();
    for (name, cluster, path, timeout) in cases {
        plugins.push_str(&caller(name, cluster, path, timeout));
        routes.push_str(&format!(
            "  - match: {{prefix: /{name}}}\n    cluster: backend\n    plugins: [{name}]\n"
        ));
    }
    let yaml = format!(
        r#"
server: {{threads: 2}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters:
  - {{name: backend, endpoints: ["{{upstream}}"]}}
  - {{name: auth, endpoints: ["{auth_addr}"]}}
  - {{name: dead, endpoints: ["{dead}"]}}
plugins:
{plugins}
routes:
{routes}"#
    );
    let gw = Gateway::start("callouts", &yaml, Some(upstream.addr)).await?;
    for (name, ..) in cases {
        let reply = send(gw.addr, Proto::H1, get(&gw.url(&format!("/{name}")), &[])).await?;
        // Every answer, failures included, resumes the request: it reaches the backend.
        assert_eq!(reply.status, 200, "{name}: {}", gw.log_text());
        assert_eq!(reply.json()["path"], format!("/{name}"));
    }
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    let expect = |needle: &str| assert!(log.contains(needle), "missing {needle:?} in\n{log}");
    expect(r#"get_header_map_value -> Ok "200""#);
    expect(r#"get_buffer_bytes -> Ok "hello ok""#);
    expect(r#"get_header_map_value -> Ok "yes""#);
    expect(r#"get_header_map_value -> Ok "404""#);
    expect(r#"get_buffer_bytes -> Ok "no such check""#);
    expect(r#"get_buffer_bytes -> Ok "first half, second half""#);
    // A timeout is Envoy's synthesized 504, a refused connection its 503.
    expect(r#"get_header_map_value -> Ok "504""#);
    expect(r#"get_buffer_bytes -> Ok "upstream request timeout""#);
    expect(r#"get_header_map_value -> Ok "503""#);
    expect("upstream connect error or disconnect/reset before headers");
    expect(r#"get_status -> Ok code=0 message="""#);

    // Each outcome is counted by plugin, cluster and kind on the admin /metrics page (the
    // count is made before the answer is delivered, so it is there once the stream ended).
    let text = scrape(&gw).await?;
    for (plugin, cluster, outcome) in [
        ("ok", "auth", "response"),
        ("missing", "auth", "response"),
        ("slow_body", "auth", "response"),
        ("stall", "auth", "timeout"),
        ("dead", "dead", "connect_failure"),
    ] {
        let count = callouts_total(&text, plugin, cluster, "http", outcome);
        assert_eq!(count.as_deref(), Some("1"), "{plugin} {outcome}:\n{text}");
    }
    Ok(())
}
