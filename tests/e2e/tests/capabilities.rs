//! Capabilities, redaction and the WASI environment through the gateway: the `hostcalls`
//! probe makes the calls its configuration names and reports each outcome in a response
//! header; the upstream echoes what it received; `/metrics` counts every refusal.

use wasmbridge_e2e::{Gateway, Proto, Upstream, filter, get, sample, scrape, send};

/// A gateway on one worker whose only route proxies to the upstream through the `hostcalls`
/// probe, with `settings` (YAML lines at the plugin's indentation) and the probe
/// configuration `config` (a YAML flow mapping).
fn yaml(settings: &str, config: &str) -> String {
    format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters:
  - {{name: backend, endpoints: ["{{upstream}}"]}}
  - {{name: auth, endpoints: ["{{upstream}}"]}}
plugins:
  - name: probe
    module: {}
{settings}
    configuration: {config}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [probe]
"#,
        filter("hostcalls")
    )
}

/// `wasmbridge_plugin_denied_total` of the probe for `capability`.
async fn denied(gw: &Gateway, capability: &str) -> anyhow::Result<Option<String>> {
    let text = scrape(gw).await?;
    Ok(sample(
        &text,
        &format!(r#"wasmbridge_plugin_denied_total{{capability="{capability}",plugin="probe"}}"#),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_capability_answers_internal_failure_and_is_counted() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "capabilities-denied",
        &yaml(
            "    capabilities: {denied: [metrics], clusters: [auth]}",
            r#"{on_request_headers: [
                {call: define_metric, type: counter, name: hits, report: x-define-metric},
                {call: http_call, upstream: backend, headers: [[":method", GET], [":path", /], [":authority", x]], report: x-http-call},
                {call: get_header_map_value, map: request_headers, key: ":method", report: x-method}]}"#,
        ),
        Some(upstream.addr),
    )
    .await?;
    for round in 1..=2 {
        let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
        assert_eq!(reply.status, 200, "{}", gw.log_text());
        assert_eq!(
            reply.header("x-define-metric"),
            "InternalFailure",
            "round {round}"
        );
        assert_eq!(
            reply.header("x-http-call"),
            "InternalFailure",
            "round {round}"
        );
        assert_eq!(reply.header("x-method"), "Ok \"GET\"", "allowed calls work");
    }
    assert_eq!(
        denied(&gw, "proxy_define_metric").await?.as_deref(),
        Some("2")
    );
    assert_eq!(denied(&gw, "clusters").await?.as_deref(), Some("2"));
    let log = gw.log_text();
    let warning = "hostcall proxy_define_metric is not allowed by the plugin's capabilities";
    assert_eq!(log.matches(warning).count(), 1, "logged once:\n{log}");
    assert_eq!(
        upstream.requests(),
        2,
        "only the two proxied requests, no callout"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_header_is_invisible_to_the_plugin_and_reaches_the_upstream()
-> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "capabilities-redact",
        &yaml(
            "    redact: {headers: [authorization], properties: [source.address]}",
            r#"{on_request_headers: [
                {call: get_header_map_value, map: request_headers, key: authorization, report: x-seen-authorization},
                {call: get_header_map_pairs, map: request_headers, report: x-seen-pairs},
                {call: get_property, path: request.headers.authorization, report: x-seen-property},
                {call: get_property, path: source.address, report: x-seen-source},
                {call: replace_header_map_value, map: request_headers, key: authorization, value: forged, report: x-replace},
                {call: add_header_map_value, map: request_headers, key: x-added, value: "1", report: x-add}]}"#,
        ),
        Some(upstream.addr),
    )
    .await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(
            &gw.url("/"),
            &[("authorization", "Bearer s3cret"), ("x-other", "visible")],
        ),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(reply.header("x-seen-authorization"), "NotFound");
    let pairs = reply.header("x-seen-pairs");
    assert!(
        pairs.starts_with("Ok [") && pairs.contains("x-other=\"visible\""),
        "{pairs}"
    );
    assert!(!pairs.contains("authorization"), "{pairs}");
    assert_eq!(reply.header("x-seen-property"), "NotFound");
    assert_eq!(reply.header("x-seen-source"), "NotFound");
    assert_eq!(reply.header("x-replace"), "InternalFailure");
    assert_eq!(reply.header("x-add"), "Ok", "other headers stay writable");
    // The upstream gets the header as the client sent it.
    assert_eq!(
        reply.upstream_headers("authorization"),
        ["Bearer s3cret"],
        "{}",
        gw.log_text()
    );
    assert_eq!(reply.upstream_header("x-added").as_deref(), Some("1"));
    assert_eq!(denied(&gw, "redact.headers").await?.as_deref(), Some("1"));
    let log = gw.log_text();
    let probe_lines: Vec<&str> = log.lines().filter(|l| l.contains("probe ")).collect();
    assert!(!probe_lines.is_empty(), "{log}");
    assert!(
        probe_lines.iter().all(|l| !l.contains("s3cret")),
        "the plugin never saw it:\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_reach_the_filter() -> anyhow::Result<()> {
    // Cargo sets CARGO_MANIFEST_DIR for this test, and the gateway inherits it; PATH is
    // set too, but not listed.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "capabilities-env",
        &yaml(
            "    environment_variables: {key_values: {GREETING: hello}, host_env_keys: [CARGO_MANIFEST_DIR, WASMBRIDGE_SURELY_UNSET_VARIABLE]}",
            r#"{on_request_headers: [
                {call: env_var, name: GREETING, report: x-greeting},
                {call: env_var, name: PATH, report: x-path},
                {call: env_vars, report: x-env}]}"#,
        ),
        Some(upstream.addr),
    )
    .await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(reply.header("x-greeting"), "Ok \"hello\"");
    assert_eq!(reply.header("x-path"), "NotFound");
    assert_eq!(
        reply.header("x-env"),
        format!("Ok [GREETING=\"hello\", CARGO_MANIFEST_DIR=\"{manifest}\"]"),
        "exactly the configured variables that are set"
    );
    Ok(())
}
