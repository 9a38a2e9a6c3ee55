//! gRPC callouts through the whole host: the `grpc` probe filter (Rust SDK, wasm32-wasip1)
//! in the gateway binary calls tonic's `test.Echo` (`wasmbridge_e2e::grpc`) from an HTTP
//! stream, then writes what it saw into request headers and resumes the request, so the
//! echo upstream shows exactly what the filter saw. The callback order comes from the
//! filter's log lines.

use std::net::SocketAddr;

use wasmbridge_e2e::grpc::{Seen, Sightings, serve_echo};
use wasmbridge_e2e::{
    Gateway, Proto, Reply, Upstream, callouts_total, filter, free_port, get, scrape, send,
};

/// A gateway on two worker threads with clusters `backend` (the echo upstream), `grpc`
/// (tonic, h2c) and `dead` (nothing listens), and one route `/<name>` per `(name,
/// configuration)` running the `grpc` probe with that configuration.
async fn gateway(
    name: &str,
    upstream: &Upstream,
    grpc: SocketAddr,
    plugins: &[(&str, &str)],
) -> anyhow::Result<Gateway> {
    let dead = format!("127.0.0.1:{}", free_port());
    let mut yaml = format!(
        "server: {{threads: 2}}\n\
         listeners: [{{address: \"{{listen}}\"}}]\n\
         admin: {{address: \"{{admin}}\"}}\n\
         clusters:\n\
         \x20 - {{name: backend, endpoints: [\"{{upstream}}\"]}}\n\
         \x20 - {{name: grpc, endpoints: [\"{grpc}\"], http2: true}}\n\
         \x20 - {{name: dead, endpoints: [\"{dead}\"], http2: true}}\n\
         plugins:\n"
    );
    for (plugin, configuration) in plugins {
        yaml.push_str(&format!(
            "  - name: {plugin}\n    module: {}\n    configuration: '{configuration}'\n",
            filter("grpc")
        ));
    }
    yaml.push_str("routes:\n");
    for (plugin, _) in plugins {
        yaml.push_str(&format!(
            "  - match: {{prefix: /{plugin}}}\n    cluster: backend\n    plugins: [{plugin}]\n"
        ));
    }
    Gateway::start(name, &yaml, Some(upstream.addr)).await
}

/// One request to `/<route>` with `x-message: message`, and the lines the route's plugin
/// logged meanwhile (`grpc ...`, the message only). Requests are sent one at a time and
/// every gRPC line is logged before the request resumes, so these lines are all its own.
async fn request(gw: &Gateway, route: &str, message: &str) -> anyhow::Result<(Reply, Vec<String>)> {
    let before = gw.log_text().len();
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url(&format!("/{route}")), &[("x-message", message)]),
    )
    .await?;
    let lines = probe_lines(&gw.log_text()[before..], route);
    Ok((reply, lines))
}

/// The `grpc ...` messages that `plugin` logged in a stretch of the gateway log.
fn probe_lines(log: &str, plugin: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let line = &line[line.find(" grpc ")? + 1..];
            // The tracing fields (plugin, root id, context id) follow the message.
            let (message, fields) = line.split_once(" plugin=")?;
            (fields.split(' ').next() == Some(plugin)).then(|| message.to_owned())
        })
        .collect()
}

/// A probe line with the value of a `date="..."` word replaced by `*`.
fn mask_date(line: &str) -> String {
    let Some(start) = line.find(r#"date=""#).map(|i| i + 6) else {
        return line.to_owned();
    };
    let end = line[start..].find('"').map_or(line.len(), |i| start + i);
    format!("{}*{}", &line[..start], &line[end..])
}

/// The callbacks among probe lines, in order.
fn callbacks(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|name| name.starts_with("on_"))
        .collect()
}

/// The one value of a request header the upstream saw.
fn seen_header(reply: &Reply, name: &str) -> Option<String> {
    let mut values = reply.upstream_headers(name);
    assert!(values.len() <= 1, "{name} given {} times", values.len());
    values.pop()
}

/// The names of the headers the upstream saw that start with `prefix`.
fn seen_names(reply: &Reply, prefix: &str) -> Vec<String> {
    reply.json()["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| pair[0].as_str())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The next call the server saw: its method and request metadata.
async fn next_call(seen: &mut Sightings) -> (String, Vec<(String, String)>) {
    match seen.next().await {
        Some(Seen::Call { method, metadata }) => (method, metadata),
        other => panic!("a call, got {other:?}"),
    }
}

fn metadata_value<'a>(metadata: &'a [(String, String)], name: &str) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_answers_once_with_the_reply() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let (grpc, _server, mut seen) = serve_echo().await?;
    let gw = gateway(
        "grpc-unary",
        &upstream,
        grpc,
        &[("unary", r#"{"method": "Unary", "timeout_ms": 5000}"#)],
    )
    .await?;

    let (reply, lines) = request(&gw, "unary", "world").await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(
        seen_header(&reply, "x-grpc-reply").as_deref(),
        Some("hello, world")
    );
    assert_eq!(
        seen_header(&reply, "x-grpc-end").as_deref(),
        Some("on_grpc_call_response")
    );
    assert_eq!(seen_header(&reply, "x-grpc-status").as_deref(), Some("0"));
    assert_eq!(
        seen_header(&reply, "x-grpc-status-code").as_deref(),
        Some("0")
    );
    assert_eq!(seen_header(&reply, "x-grpc-message").as_deref(), Some(""));
    // Envoy delivers no metadata to a unary call, so the server's `x-server` (initial)
    // metadata and its trailers never reach the filter.
    assert_eq!(seen_names(&reply, "x-grpc-initial-"), Vec::<String>::new());
    assert_eq!(seen_names(&reply, "x-grpc-trailing-"), Vec::<String>::new());
    assert_eq!(seen_header(&reply, "x-grpc-messages"), None);

    assert_eq!(callbacks(&lines), ["on_grpc_call_response"], "{lines:#?}");
    let token = lines[0]
        .strip_prefix("grpc dispatch_grpc_call token=")
        .and_then(|rest| rest.strip_suffix(r#" message="world""#))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(
        lines[1..],
        [
            format!("grpc on_grpc_call_response token={token} status=0 size=12"),
            r#"grpc get_status code=0 message="""#.to_owned(),
        ],
    );

    let (method, metadata) = next_call(&mut seen).await;
    assert_eq!(method, "Unary");
    assert_eq!(metadata_value(&metadata, "x-client"), Some("wasm"));
    assert_eq!(metadata_value(&metadata, "grpc-timeout"), Some("5000000u"));
    assert_eq!(metadata_value(&metadata, "te"), Some("trailers"));
    assert_eq!(
        metadata_value(&metadata, "content-type"),
        Some("application/grpc")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_failures_close_with_the_status_and_message() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let (grpc, _server, mut seen) = serve_echo().await?;
    let gw = gateway(
        "grpc-unary-errors",
        &upstream,
        grpc,
        &[
            ("fail", r#"{"method": "Fail"}"#),
            ("stall", r#"{"method": "Stall", "timeout_ms": 300}"#),
            ("nope", r#"{"method": "Nope"}"#),
            ("dead", r#"{"cluster": "dead"}"#),
            ("unknown", r#"{"cluster": "unknown"}"#),
        ],
    )
    .await?;

    // (route, status, get_status message): each resumes the request once.
    let cases = [
        ("fail", "5", "no such thing: 100%"),
        ("stall", "4", "deadline exceeded"),
        ("nope", "12", "no such method"),
    ];
    for (route, status, message) in cases {
        let (reply, lines) = request(&gw, route, "x").await?;
        assert_eq!(reply.status, 200, "{route}: {}", gw.log_text());
        assert_eq!(reply.json()["path"], format!("/{route}"));
        assert_eq!(
            seen_header(&reply, "x-grpc-end").as_deref(),
            Some("on_grpc_call_response"),
            "{route}"
        );
        assert_eq!(
            seen_header(&reply, "x-grpc-status").as_deref(),
            Some(status),
            "{route}"
        );
        assert_eq!(
            seen_header(&reply, "x-grpc-status-code").as_deref(),
            Some(status),
            "{route}"
        );
        assert_eq!(
            seen_header(&reply, "x-grpc-message").as_deref(),
            Some(message),
            "{route}"
        );
        assert_eq!(seen_header(&reply, "x-grpc-reply"), None, "{route}");
        // The SDK reports `proxy_on_grpc_close` of a unary call as on_grpc_call_response
        // with the status and no body.
        assert_eq!(callbacks(&lines), ["on_grpc_call_response"], "{lines:#?}");
        assert!(
            lines[1].ends_with(&format!(" status={status} size=0")),
            "{lines:#?}"
        );
        assert_eq!(
            lines[2],
            format!(r#"grpc get_status code={status} message="{message}""#)
        );
        let (method, _) = next_call(&mut seen).await;
        assert_eq!(route.to_lowercase(), method.to_lowercase());
    }

    // Nothing listens: UNAVAILABLE, with the transport's reason.
    let (reply, lines) = request(&gw, "dead", "x").await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(seen_header(&reply, "x-grpc-status").as_deref(), Some("14"));
    let message = seen_header(&reply, "x-grpc-message").unwrap_or_default();
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert_eq!(callbacks(&lines), ["on_grpc_call_response"], "{lines:#?}");

    // An unknown cluster: the dispatch fails (PARSE_FAILURE) and the filter replies itself.
    let (reply, lines) = request(&gw, "unknown", "x").await?;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body,
        "grpc: dispatch_grpc_call failed: ParseFailure\n"
    );
    assert_eq!(callbacks(&lines), Vec::<&str>::new(), "{lines:#?}");

    // Each ending is counted on /metrics by plugin, cluster and gRPC status.
    let text = scrape(&gw).await?;
    for (plugin, cluster, outcome) in [
        ("fail", "grpc", "not_found"),
        ("stall", "grpc", "deadline_exceeded"),
        ("nope", "grpc", "unimplemented"),
        ("dead", "dead", "unavailable"),
        ("unknown", "(unknown)", "unknown_cluster"),
    ] {
        let count = callouts_total(&text, plugin, cluster, "grpc", outcome);
        assert_eq!(count.as_deref(), Some("1"), "{plugin} {outcome}:\n{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidirectional_stream_carries_messages_both_ways() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let (grpc, _server, mut seen) = serve_echo().await?;
    let gw = gateway(
        "grpc-stream",
        &upstream,
        grpc,
        &[
            ("chat", r#"{"mode": "stream", "method": "Chat"}"#),
            (
                "close",
                r#"{"mode": "stream", "method": "Chat", "finish": "close"}"#,
            ),
        ],
    )
    .await?;

    for route in ["chat", "close"] {
        let (reply, lines) = request(&gw, route, "a,b,c").await?;
        assert_eq!(reply.status, 200, "{route}: {}", gw.log_text());
        assert_eq!(
            seen_header(&reply, "x-grpc-messages").as_deref(),
            Some("echo:a,echo:b,echo:c,bye"),
            "{route}"
        );
        assert_eq!(
            seen_header(&reply, "x-grpc-initial-x-chat").as_deref(),
            Some("ready")
        );
        assert_eq!(
            seen_names(&reply, "x-grpc-initial-"),
            ["x-grpc-initial-x-chat", "x-grpc-initial-date"]
        );
        assert_eq!(
            seen_header(&reply, "x-grpc-trailing-x-chat-end").as_deref(),
            Some("bye")
        );
        // grpc-status and grpc-message are the close's, not trailing metadata.
        assert_eq!(
            seen_names(&reply, "x-grpc-trailing-"),
            ["x-grpc-trailing-x-chat-end"]
        );
        assert_eq!(
            seen_header(&reply, "x-grpc-end").as_deref(),
            Some("on_grpc_stream_close")
        );
        assert_eq!(seen_header(&reply, "x-grpc-status").as_deref(), Some("0"));
        assert_eq!(
            seen_header(&reply, "x-grpc-status-code").as_deref(),
            Some("0")
        );
        assert_eq!(seen_header(&reply, "x-grpc-message").as_deref(), Some(""));

        // Each message goes after the previous one's answer; the callbacks come in
        // Envoy's order.
        let token = lines[0]
            .strip_prefix("grpc open_grpc_stream token=")
            .unwrap_or_else(|| panic!("{lines:#?}"))
            .to_owned();
        let last = if route == "chat" {
            format!(r#"grpc send_grpc_stream_message token={token} message="c" end_stream=true"#)
        } else {
            format!(r#"grpc send_grpc_stream_message token={token} message="c" end_stream=false"#)
        };
        let mut expected = vec![
            format!("grpc open_grpc_stream token={token}"),
            format!(r#"grpc send_grpc_stream_message token={token} message="a" end_stream=false"#),
            // hyper adds `date` to the server's headers.
            format!(
                r#"grpc on_grpc_stream_initial_metadata token={token} n=2 x-chat="ready" date="*""#
            ),
            format!(r#"grpc on_grpc_stream_message token={token} message="echo:a""#),
            format!(r#"grpc send_grpc_stream_message token={token} message="b" end_stream=false"#),
            format!(r#"grpc on_grpc_stream_message token={token} message="echo:b""#),
            last,
            format!(r#"grpc on_grpc_stream_message token={token} message="echo:c""#),
        ];
        if route == "close" {
            expected.push(format!("grpc close_grpc_stream token={token}"));
        }
        expected.extend([
            format!(r#"grpc on_grpc_stream_message token={token} message="bye""#),
            format!(r#"grpc on_grpc_stream_trailing_metadata token={token} n=1 x-chat-end="bye""#),
            format!("grpc on_grpc_stream_close token={token} status=0"),
            r#"grpc get_status code=0 message="""#.to_owned(),
        ]);
        assert_eq!(
            lines.iter().map(|l| mask_date(l)).collect::<Vec<_>>(),
            expected
        );

        let (method, metadata) = next_call(&mut seen).await;
        assert_eq!(method, "Chat");
        assert_eq!(metadata_value(&metadata, "x-client"), Some("wasm"));
        assert_eq!(metadata_value(&metadata, "grpc-timeout"), None);
        assert_eq!(
            seen.next().await,
            Some(Seen::ChatEnded("half-closed".into())),
            "{route}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_and_cancels() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let (grpc, _server, mut seen) = serve_echo().await?;
    let gw = gateway(
        "grpc-stream-errors",
        &upstream,
        grpc,
        &[
            ("abort", r#"{"mode": "stream", "method": "Abort"}"#),
            (
                "cancel",
                r#"{"mode": "stream", "method": "Chat", "finish": "cancel"}"#,
            ),
            (
                "dead",
                r#"{"mode": "stream", "method": "Chat", "cluster": "dead"}"#,
            ),
        ],
    )
    .await?;

    // The server answers one message and ends with ABORTED; nothing was sent, the filter
    // half-closed at once.
    let (reply, lines) = request(&gw, "abort", "").await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(
        seen_header(&reply, "x-grpc-messages").as_deref(),
        Some("partial")
    );
    assert_eq!(seen_header(&reply, "x-grpc-status").as_deref(), Some("10"));
    assert_eq!(
        seen_header(&reply, "x-grpc-message").as_deref(),
        Some("stopped halfway")
    );
    assert_eq!(
        callbacks(&lines),
        [
            "on_grpc_stream_initial_metadata",
            "on_grpc_stream_message",
            "on_grpc_stream_trailing_metadata",
            "on_grpc_stream_close",
        ],
        "{lines:#?}"
    );
    assert!(lines[1].ends_with(" end_stream=true"), "{lines:#?}");
    assert_eq!(next_call(&mut seen).await.0, "Abort");

    // A cancel after the first answer: the server sees the reset and no callback follows.
    let (reply, lines) = request(&gw, "cancel", "a,b").await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(
        seen_header(&reply, "x-grpc-end").as_deref(),
        Some("cancel_grpc_stream")
    );
    assert_eq!(seen_header(&reply, "x-grpc-status"), None);
    assert_eq!(
        seen_header(&reply, "x-grpc-messages").as_deref(),
        Some("echo:a,echo:b")
    );
    assert_eq!(next_call(&mut seen).await.0, "Chat");
    assert_eq!(
        callbacks(&lines),
        [
            "on_grpc_stream_initial_metadata",
            "on_grpc_stream_message",
            "on_grpc_stream_message",
        ],
        "{lines:#?}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("grpc cancel_grpc_stream token=")),
        "{lines:#?}"
    );
    let ended = seen.chat_end().await.unwrap_or_default();
    assert!(ended.starts_with("error"), "{ended}");

    // Nothing listens: the stream closes with UNAVAILABLE and no other callback.
    let (reply, lines) = request(&gw, "dead", "a").await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(seen_header(&reply, "x-grpc-status").as_deref(), Some("14"));
    assert_eq!(callbacks(&lines), ["on_grpc_stream_close"], "{lines:#?}");

    // Still no callback for the cancelled stream, after the server saw the reset and
    // another request went through: the cancel is the last thing its plugin logged.
    let all = probe_lines(&gw.log_text(), "cancel");
    assert!(
        all.last()
            .is_some_and(|l| l.starts_with("grpc cancel_grpc_stream token=")),
        "{all:#?}"
    );
    Ok(())
}
