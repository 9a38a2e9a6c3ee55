//! The wasmbridge gateway between a real client and a real upstream, with real filters.

use http::Request;
use wasmbridge_e2e::{
    Gateway, Proto, Upstream, chunked, filter, full, get, send, upstream_headers,
};

fn proxied(plugins_yaml: &str, route_plugins: &str) -> String {
    format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
{plugins_yaml}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [{route_plugins}]
"#
    )
}

fn plugin(name: &str, module: &str, configuration: &str) -> String {
    format!(
        "  - name: {name}\n    root_id: {name}\n    module: {}\n    configuration: '{configuration}'\n",
        filter(module)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_header_adds_request_and_response_headers() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = proxied(
        &plugin(
            "add_header",
            "add_header",
            r#"{"request_headers": {"x-req": "from-wasm"}, "headers": {"x-hello": "wasmbridge"}}"#,
        ),
        "add_header",
    );
    let gw = Gateway::start("add-header", &yaml, Some(upstream.addr)).await?;
    for proto in [Proto::H1, Proto::H2c] {
        let reply = send(gw.addr, proto, get(&gw.url("/hi?x=1"), &[])).await?;
        assert_eq!(reply.status, 200, "{proto:?}: {}", gw.log_text());
        assert_eq!(reply.header("x-hello"), "wasmbridge", "{proto:?}");
        assert_eq!(reply.header("x-upstream"), "echo");
        assert_eq!(reply.upstream_header("x-req").as_deref(), Some("from-wasm"));
        assert_eq!(reply.json()["path"], "/hi?x=1");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_replies_locally_with_the_filters_body_and_headers() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = proxied(
        &plugin(
            "deny",
            "deny",
            r#"{"header": "x-api-key", "status": 403, "body": "denied: missing x-api-key\n", "response_headers": {"x-denied-by": "wasmbridge-deny"}}"#,
        ),
        "deny",
    );
    let gw = Gateway::start("deny", &yaml, Some(upstream.addr)).await?;
    for proto in [Proto::H1, Proto::H2c] {
        let denied = send(gw.addr, proto, get(&gw.url("/secret"), &[])).await?;
        assert_eq!(denied.status, 403, "{proto:?}");
        assert_eq!(&denied.body[..], b"denied: missing x-api-key\n");
        assert_eq!(denied.header("x-denied-by"), "wasmbridge-deny");
        assert_eq!(denied.header("content-type"), "text/plain");
        assert_eq!(denied.header("content-length"), "26");
        assert_eq!(
            denied.header("x-upstream"),
            "",
            "the upstream must not be reached"
        );
        let allowed = send(
            gw.addr,
            proto,
            get(&gw.url("/secret"), &[("x-api-key", "k")]),
        )
        .await?;
        assert_eq!(allowed.status, 200);
        assert_eq!(allowed.header("x-upstream"), "echo");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_reply_runs_the_response_callbacks_of_the_chain() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let plugins = format!(
        "{}{}",
        plugin(
            "add_header",
            "add_header",
            r#"{"headers": {"x-hello": "wasmbridge"}}"#
        ),
        plugin("deny", "deny", "{}")
    );
    let gw = Gateway::start(
        "deny-chain",
        &proxied(&plugins, "add_header, deny"),
        Some(upstream.addr),
    )
    .await?;
    let denied = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(denied.status, 403);
    assert_eq!(&denied.body[..], b"access denied\n");
    assert_eq!(
        denied.header("x-hello"),
        "wasmbridge",
        "add_header's response callback ran on the local reply"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_requests_continue_when_the_filter_resumes_them() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = proxied(&plugin("pause", "pause", "{}"), "pause");
    let gw = Gateway::start("pause", &yaml, Some(upstream.addr)).await?;

    // Resumed by the same callback (deferred until it returned).
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/self"), &[("x-pause", "self")]),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(
        reply.upstream_header("x-pause-result").as_deref(),
        Some("resumed-self")
    );
    assert_eq!(
        reply.header("x-pause-eos"),
        "true",
        "a bodyless request has end_of_stream on headers"
    );
    assert_eq!(
        reply.header("x-pause-body-calls"),
        "0",
        "no body callback for a bodyless request"
    );

    // Held until another request releases it through set_effective_context + continue.
    let held = tokio::spawn({
        let addr = gw.addr;
        let url = gw.url("/held");
        async move { send(addr, Proto::H1, get(&url, &[("x-pause", "hold")])).await }
    });
    let mut attempts = 0;
    let released = loop {
        attempts += 1;
        assert!(
            attempts < 10_000,
            "the held request never reached its paused state"
        );
        let r = send(
            gw.addr,
            Proto::H1,
            get(&gw.url("/release"), &[("x-release", "1")]),
        )
        .await?;
        assert_eq!(r.status, 200);
        if r.header("x-released") != "none" {
            break r;
        }
        assert!(
            !held.is_finished(),
            "the held request finished before it was released"
        );
        tokio::task::yield_now().await;
    };
    assert!(released.header("x-released").parse::<u32>().is_ok());
    let held = held.await??;
    assert_eq!(held.status, 200);
    assert_eq!(
        held.upstream_header("x-pause-result").as_deref(),
        Some("resumed-by-other")
    );

    // A local reply sent while paused ends the wait.
    let replied = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/r"), &[("x-pause", "reply")]),
    )
    .await?;
    assert_eq!(replied.status, 202);
    assert_eq!(&replied.body[..], b"replied while paused\n");
    assert_eq!(replied.header("x-paused-reply"), "1");
    Ok(())
}

fn body_yaml() -> String {
    proxied(
        &plugin(
            "body",
            "body",
            r#"{"request_prefix": "<<", "request_suffix": ">>", "response_prefix": "[", "response_suffix": "]"}"#,
        ),
        "body",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_rewritten_with_consistent_framing() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start("body-req", &body_yaml(), Some(upstream.addr)).await?;
    for proto in [Proto::H1, Proto::H2c] {
        for (label, body, parts) in [
            ("content-length", Some(b"hello world".as_slice()), None),
            (
                "chunked",
                None,
                Some([b"hello ".as_slice(), b"wor".as_slice(), b"ld".as_slice()]),
            ),
        ] {
            let req = Request::post(gw.url("/upload")).header("content-type", "text/plain");
            let req = match (body, parts) {
                (Some(b), _) => req.body(full(b.to_vec()))?,
                (_, Some(p)) => req.body(chunked(&p))?,
                _ => unreachable!(),
            };
            let reply = send(gw.addr, proto, req).await?;
            assert_eq!(reply.status, 200, "{proto:?} {label}: {}", gw.log_text());
            // The response body is the echo, wrapped by the response rewrite.
            assert!(
                reply.body.starts_with(b"[") && reply.body.ends_with(b"]"),
                "{proto:?} {label}"
            );
            let echo: serde_json::Value =
                serde_json::from_slice(&reply.body[1..reply.body.len() - 1])?;
            assert_eq!(echo["body"], "<<hello world>>", "{proto:?} {label}");
            assert_eq!(echo["body_len"], 15);
            let framing = echo["framing"].as_str().unwrap_or("");
            let cl = upstream_headers(&echo, "content-length").into_iter().next();
            assert!(
                framing == "chunked"
                    || cl.as_deref() == Some("15")
                    || (framing == "none" && echo["version"] == "HTTP/2.0"),
                "{proto:?} {label}: upstream framing {framing}, content-length {cl:?}"
            );
            assert_ne!(
                cl.as_deref(),
                Some("11"),
                "a stale content-length must not reach the upstream"
            );
            assert_eq!(
                reply.header("x-body-request-bytes"),
                "11",
                "{proto:?} {label}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_rewritten_for_length_and_chunked_upstream_replies()
-> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start("body-resp", &body_yaml(), Some(upstream.addr)).await?;
    for proto in [Proto::H1, Proto::H2c] {
        for chunked_reply in [false, true] {
            let mut headers = vec![("x-reply-body", "upstream says hi")];
            if chunked_reply {
                headers.push(("x-reply-chunked", "1"));
            }
            let reply = send(gw.addr, proto, get(&gw.url("/"), &headers)).await?;
            assert_eq!(reply.status, 200);
            assert_eq!(
                &reply.body[..],
                b"[upstream says hi]",
                "{proto:?} chunked={chunked_reply}"
            );
            let cl = reply.header("content-length");
            assert!(
                cl.is_empty() || cl == "18",
                "content-length {cl} does not match the rewritten body"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_leaves_the_body_alone_keeps_the_content_length() -> anyhow::Result<()> {
    // The Rust SDK exports the body callbacks of every filter; a Content-Length the plugins
    // leave in place stays, as in Envoy, and the response is not switched to chunked.
    let upstream = Upstream::start().await;
    let yaml = proxied(&plugin("noop", "noop", ""), "noop");
    let gw = Gateway::start("keep-length", &yaml, Some(upstream.addr)).await?;
    for proto in [Proto::H1, Proto::H2c] {
        let reply = send(
            gw.addr,
            proto,
            get(&gw.url("/"), &[("x-reply-body", "upstream says hi")]),
        )
        .await?;
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(&reply.body[..], b"upstream says hi", "{proto:?}");
        assert_eq!(reply.header("content-length"), "16", "{proto:?}");
        assert_eq!(reply.header("transfer-encoding"), "", "{proto:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_whose_length_changes_under_a_kept_content_length_aborts_the_stream()
-> anyhow::Result<()> {
    // The probe replaces the response body with a shorter one without removing its
    // Content-Length (Envoy then truncates or stalls): the gateway never sends the
    // mismatched framing; the stream fails and the log says what the plugin must do.
    let upstream = Upstream::start().await;
    let configuration = r#"{"on_response_body": [{"call": "set_buffer_bytes", "buffer": "response_body", "start": 0, "size": 4294967295, "value": "short"}]}"#;
    let yaml = proxied(
        &plugin("hostcalls", "hostcalls", configuration),
        "hostcalls",
    );
    let gw = Gateway::start("stale-length", &yaml, Some(upstream.addr)).await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-reply-body", "upstream says hi")]),
    )
    .await;
    if let Ok(reply) = &reply {
        assert!(
            reply.status != 200,
            "a 200 with a body that does not match its framing: {:?} {:?}",
            reply.header("content-length"),
            reply.body
        );
    }
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    assert!(
        log.contains("left its Content-Length in place") && log.contains("hostcalls"),
        "{log}"
    );
    // The gateway keeps serving, and a rewrite that keeps the length is sent as it is.
    let same_length = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-reply-body", "12345")]),
    )
    .await?;
    assert_eq!(same_length.status, 200);
    assert_eq!(&same_length.body[..], b"short");
    assert_eq!(same_length.header("content-length"), "5");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugin_gets_a_503_and_the_next_request_is_served() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = proxied(&plugin("misbehave", "misbehave", "{}"), "misbehave");
    let gw = Gateway::start("trap", &yaml, Some(upstream.addr)).await?;
    for mode in ["trap-request-headers", "trap-response-headers", "abort"] {
        let trapped = send(
            gw.addr,
            Proto::H1,
            get(&gw.url("/"), &[("x-misbehave", mode)]),
        )
        .await?;
        assert_eq!(trapped.status, 503, "{mode}");
        let next = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
        assert_eq!(next.status, 200, "{mode}: the next request must be served");
        assert_eq!(next.header("x-misbehave"), "ok");
    }
    let log = gw.log_text();
    assert!(
        log.contains("misbehave: trap in request headers"),
        "the trap message is logged:\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_open_plugin_is_skipped_after_a_trap() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = proxied(
        &format!(
            "{}    failure_policy: fail_open\n",
            plugin("misbehave", "misbehave", "{}")
        ),
        "misbehave",
    );
    let gw = Gateway::start("fail-open", &yaml, Some(upstream.addr)).await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-misbehave", "trap-request-headers")]),
    )
    .await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), "echo");
    assert_eq!(
        reply.header("x-misbehave"),
        "",
        "the failed plugin no longer runs for this stream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_health_and_metrics() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = proxied(&plugin("add_header", "add_header", "{}"), "add_header");
    let gw = Gateway::start("admin", &yaml, Some(upstream.addr)).await?;
    send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    let health = send(
        gw.admin,
        Proto::H1,
        get(&format!("http://{}/healthz", gw.admin), &[]),
    )
    .await?;
    assert_eq!(health.status, 200);
    // The request is counted in Pingora's `logging` phase, after the reply was written:
    // poll the page until it shows up (a readiness check, not a timed wait for a result).
    let counted = r#"wasmbridge_http_requests_total{route="route0",status="200"} 1"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let metrics = send(
            gw.admin,
            Proto::H1,
            get(&format!("http://{}/metrics", gw.admin), &[]),
        )
        .await?;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        if text.contains(counted) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(text.contains(counted), "{text}");
    assert!(
        text.contains(r#"wasmbridge_plugin_callbacks_total{callback="proxy_on_request_headers",plugin="add_header"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("wasmbridge_plugin_callback_duration_seconds_bucket"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_use_envoys_names_and_encodings() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = proxied(&plugin("props", "properties", "{}"), "props");
    let gw = Gateway::start("properties", &yaml, Some(upstream.addr)).await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(
            &gw.url("/a/b?q=1"),
            &[("x-probe", "probe-value"), ("x-request-id", "rid-7")],
        ),
    )
    .await?;
    assert_eq!(reply.status, 200);
    let prop = |name: &str| reply.header(&format!("x-prop-{name}")).to_string();
    assert_eq!(prop("request.path"), "/a/b?q=1");
    assert_eq!(prop("request.url_path"), "/a/b");
    assert_eq!(prop("request.query"), "q=1");
    assert_eq!(prop("request.host"), gw.addr.to_string());
    assert_eq!(prop("request.scheme"), "http");
    assert_eq!(prop("request.method"), "GET");
    assert_eq!(prop("request.protocol"), "HTTP/1.1");
    assert_eq!(prop("request.id"), "rid-7");
    assert_eq!(prop("request.headers.x-probe"), "probe-value");
    let count: usize = prop("request.headers.count").parse()?;
    assert!(
        count >= 6,
        "pseudo-headers and the two request headers: {count}"
    );
    assert_eq!(prop("destination.address"), gw.addr.to_string());
    assert_eq!(
        prop("destination.port"),
        gw.addr.port().to_string(),
        "an 8-byte little-endian integer"
    );
    let source = prop("source.address");
    assert!(source.starts_with("127.0.0.1:"), "{source}");
    assert_eq!(
        source.rsplit(':').next(),
        Some(prop("source.port").as_str())
    );
    assert_eq!(prop("response.code"), "200");
    assert_eq!(prop("plugin_name"), "props");
    assert_eq!(prop("plugin_root_id"), "props");
    // The vm_id is empty; the Rust SDK reports an empty value as absent.
    assert_eq!(prop("plugin_vm_id"), "<missing>");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_callbacks_run_in_route_order_and_response_callbacks_in_reverse()
-> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let plugins = format!(
        "{}{}",
        plugin(
            "first",
            "add_header",
            r#"{"request_headers": {"x-order": "first"}, "headers": {"x-order": "first"}}"#
        ),
        plugin(
            "second",
            "add_header",
            r#"{"request_headers": {"x-order": "second"}, "headers": {"x-order": "second"}}"#
        ),
    );
    let gw = Gateway::start(
        "order",
        &proxied(&plugins, "first, second"),
        Some(upstream.addr),
    )
    .await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200);
    let seen_upstream = reply.upstream_headers("x-order");
    assert_eq!(
        seen_upstream,
        ["first", "second"],
        "request callbacks in route order"
    );
    let on_response: Vec<&str> = reply
        .headers
        .get_all("x-order")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(
        on_response,
        ["second", "first"],
        "response callbacks in reverse order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_connection_is_readable_in_on_log() -> anyhow::Result<()> {
    // Nobody listens on this port: connecting to it is refused.
    let dead: std::net::SocketAddr =
        format!("127.0.0.1:{}", wasmbridge_e2e::free_port()).parse()?;
    let config = r#"{"on_log": [{"call": "get_property", "path": "upstream.transport_failure_reason"}, {"call": "get_property", "path": "upstream.address"}]}"#;
    let gw = Gateway::start(
        "refused",
        &proxied(&plugin("probe", "hostcalls", config), "probe"),
        Some(dead),
    )
    .await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 502, "{}", gw.log_text());
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    let reason = log
        .lines()
        .find(|l| l.contains("probe on_log get_property -> Ok") && l.contains("refused"))
        .map(str::to_string);
    assert!(
        reason.is_some(),
        "the connect error's text is the reason:\n{log}"
    );
    assert!(
        log.contains(&format!("probe on_log get_property -> Ok \"{dead}\"")),
        "the upstream picked is known though the connection failed:\n{log}"
    );
    Ok(())
}
