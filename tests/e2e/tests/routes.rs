//! Routes through the real gateway: hosts, regexes, per-route configuration overrides and
//! chains ordered by phase and priority, with the real `add_header` filter.

use wasmbridge_e2e::{Gateway, Proto, Upstream, filter, get, send};

/// Two routes run `add_header` with configurations of their own, a third the plugin's.
fn overrides() -> String {
    format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: add_header
    root_id: add_header
    module: {module}
    configuration: {{headers: {{x-config: base}}}}
routes:
  - name: one
    match: {{prefix: /one}}
    cluster: backend
    plugins:
      - name: add_header
        configuration: {{headers: {{x-config: one}}, request_headers: {{x-seen: one}}}}
  - name: two
    match: {{prefix: /two}}
    direct_response: {{status: 200, body: "two\n"}}
    plugins: [{{name: add_header, configuration: '{{"headers": {{"x-config": "two"}}}}'}}]
  - name: plain
    match: {{prefix: /}}
    cluster: backend
    plugins: [add_header]
"#,
        module = filter("add_header")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_configuration_overrides_show_in_responses() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start("route-overrides", &overrides(), Some(upstream.addr)).await?;
    for proto in [Proto::H1, Proto::H2c] {
        let one = send(gw.addr, proto, get(&gw.url("/one"), &[])).await?;
        assert_eq!(one.status, 200, "{proto:?}: {}", gw.log_text());
        assert_eq!(one.header("x-config"), "one", "{proto:?}");
        assert_eq!(one.upstream_header("x-seen").as_deref(), Some("one"));
        let two = send(gw.addr, proto, get(&gw.url("/two"), &[])).await?;
        assert_eq!(two.status, 200);
        assert_eq!(two.header("x-config"), "two", "{proto:?}");
        assert_eq!(&two.body[..], b"two\n");
        let plain = send(gw.addr, proto, get(&gw.url("/other"), &[])).await?;
        assert_eq!(plain.header("x-config"), "base", "{proto:?}");
        assert_eq!(plain.upstream_header("x-seen"), None);
    }
    // Each override is a plugin of its own, with its own root context in the VMs it
    // shares with the plugin (same module, vm_id and VM configuration).
    let log = gw.log_text();
    assert!(
        log.contains("shares_with") && log.contains("add_header@one"),
        "{log}"
    );
    Ok(())
}

/// Three `add_header` plugins, each adding `x-order: <its name>` to the request and the
/// response, listed against their phases.
fn phased() -> String {
    let plugin = |name: &str, extra: &str| {
        format!(
            "  - name: {name}\n    module: {}\n    configuration: {{request_headers: {{x-order: {name}}}, response_headers: {{x-order: {name}}}}}\n{extra}",
            filter("add_header")
        )
    };
    format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
{}{}{}{}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [plain, stats, authz, authn]
"#,
        plugin("plain", ""),
        plugin("stats", "    phase: STATS\n"),
        plugin("authz", "    phase: AUTHZ\n    priority: 1\n"),
        plugin("authn", "    phase: AUTHN\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_in_phase_order_not_listed_order() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start("route-phases", &phased(), Some(upstream.addr)).await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    // Request callbacks run in chain order, each appending its name.
    assert_eq!(
        reply.upstream_headers("x-order"),
        ["authn", "authz", "stats", "plain"]
    );
    // Response callbacks run in reverse chain order.
    let response: Vec<&str> = reply
        .headers
        .get_all("x-order")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(response, ["plain", "stats", "authz", "authn"]);
    Ok(())
}

const HOSTS: &str = r#"
server: {threads: 1}
listeners: [{address: "{listen}"}]
admin: {address: "{admin}"}
routes:
  - match: {prefix: /}
    direct_response: {status: 200, headers: {x-route: any}}
  - match: {prefix: /, hosts: ["*.example.com"]}
    direct_response: {status: 200, headers: {x-route: suffix}}
  - match: {prefix: /, hosts: [www.example.com]}
    direct_response: {status: 200, headers: {x-route: exact}}
  - match: {regex: "/api/v[0-9]+/.*", hosts: ["api.*"]}
    direct_response: {status: 200, headers: {x-route: api-versioned}}
  - match: {prefix: /, hosts: ["api.*"], headers: [{name: x-key, regex: "k-[0-9]+"}]}
    direct_response: {status: 200, headers: {x-route: api-key}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_regexes_pick_routes() -> anyhow::Result<()> {
    let gw = Gateway::start("route-hosts", HOSTS, None).await?;
    let port = gw.addr.port();
    for proto in [Proto::H1, Proto::H2c] {
        for (host, path, headers, want) in [
            ("www.example.com", "/", &[][..], "exact"),
            ("WWW.EXAMPLE.COM", "/", &[][..], "exact"),
            ("shop.example.com", "/", &[][..], "suffix"),
            ("api.example.org", "/api/v2/items", &[][..], "api-versioned"),
            (
                "api.example.org",
                "/api/v2",
                &[("x-key", "k-12")][..],
                "api-key",
            ),
            ("localhost", "/api/v2/items", &[][..], "any"),
        ] {
            let url = format!("http://{host}:{port}{path}");
            let mut all: Vec<(&str, &str)> = headers.to_vec();
            let authority = format!("{host}:{port}");
            if proto == Proto::H1 {
                all.push(("host", &authority));
            }
            let reply = send(gw.addr, proto, get(&url, &all)).await?;
            assert_eq!(reply.status, 200, "{proto:?} {url}: {}", gw.log_text());
            assert_eq!(reply.header("x-route"), want, "{proto:?} {url} {headers:?}");
        }
        // api.* routes are the most specific for this host and none matches: 404, as
        // Envoy answers when the chosen virtual host has no matching route.
        let url = format!("http://api.example.org:{port}/api/v2");
        let authority = format!("api.example.org:{port}");
        let headers: Vec<(&str, &str)> = if proto == Proto::H1 {
            vec![("host", &authority), ("x-key", "nope")]
        } else {
            vec![("x-key", "nope")]
        };
        let reply = send(gw.addr, proto, get(&url, &headers)).await?;
        assert_eq!(reply.status, 404, "{proto:?}");
    }
    Ok(())
}

/// Hosts, a regex path, a header regex, an override and phases in one file, served by the
/// gateway and by Envoy on `wasmbridge envoy-config`'s bootstrap.
fn both() -> String {
    let module = filter("add_header");
    format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: tag
    module: {module}
    configuration: {{headers: {{x-config: base}}, request_headers: {{x-order: tag}}}}
  - name: first
    module: {module}
    phase: AUTHN
    configuration: {{request_headers: {{x-order: first}}}}
routes:
  - match: {{prefix: /}}
    direct_response: {{status: 200, headers: {{x-route: any}}}}
  - match: {{prefix: /, hosts: ["*.example.com"]}}
    cluster: backend
    plugins: [tag, first]
  - match: {{prefix: /, hosts: [www.example.com]}}
    direct_response: {{status: 200, headers: {{x-route: exact}}}}
    plugins: [{{name: tag, configuration: {{headers: {{x-config: www}}}}}}]
  - match: {{regex: "/api/v[0-9]+/.*", hosts: ["api.*"]}}
    direct_response: {{status: 200, headers: {{x-route: api-versioned}}}}
  - match: {{prefix: /, hosts: ["api.*"], headers: [{{name: x-key, regex: "k-[0-9]+"}}]}}
    direct_response: {{status: 200, headers: {{x-route: api-key}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_takes_the_same_routes_on_the_translated_bootstrap() -> anyhow::Result<()> {
    let Some(bin) = wasmbridge_e2e::envoy_or_skip("envoy_takes_the_same_routes") else {
        return Ok(());
    };
    let upstream = Upstream::start().await;
    let gw = Gateway::start("route-both", &both(), Some(upstream.addr)).await?;
    let dir = wasmbridge_e2e::scratch("route-both-envoy");
    let listen = format!("127.0.0.1:{}", wasmbridge_e2e::free_port()).parse()?;
    let admin = format!("127.0.0.1:{}", wasmbridge_e2e::free_port()).parse()?;
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        wasmbridge_e2e::render(&both(), listen, admin, Some(upstream.addr)),
    )?;
    let out = wasmbridge_e2e::wasmbridge(&["envoy-config", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bootstrap = dir.join("envoy.yaml");
    std::fs::write(&bootstrap, &out.stdout)?;
    let envoy = wasmbridge_e2e::Envoy::spawn(&bin, &bootstrap, listen, admin, &dir).await?;

    // Host, path, headers; then what both answer: status, x-route, x-config and the
    // x-order values the upstream saw.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        (u16, &'a str, &'a str, &'a [&'a str]),
    );
    let cases: [Case; 7] = [
        ("www.example.com", "/", &[], (200, "exact", "www", &[])),
        ("WWW.example.com:8080", "/", &[], (200, "exact", "www", &[])),
        (
            "shop.example.com",
            "/x",
            &[],
            (200, "", "base", &["first", "tag"]),
        ),
        (
            "api.example.org",
            "/api/v2/items",
            &[],
            (200, "api-versioned", "", &[]),
        ),
        (
            "api.example.org",
            "/other",
            &[("x-key", "k-12")],
            (200, "api-key", "", &[]),
        ),
        (
            "api.example.org",
            "/other",
            &[("x-key", "nope")],
            (404, "", "", &[]),
        ),
        ("localhost", "/api/v2/items", &[], (200, "any", "", &[])),
    ];
    let seen = |r: &wasmbridge_e2e::Reply| {
        (
            r.status.as_u16(),
            r.header("x-route").to_string(),
            r.header("x-config").to_string(),
            if r.header("x-upstream") == "echo" {
                r.upstream_headers("x-order")
            } else {
                Vec::new()
            },
        )
    };
    for (host, path, headers, want) in cases {
        let mut all = headers.to_vec();
        all.push(("host", host));
        let ours = send(gw.addr, Proto::H1, get(path, &all)).await?;
        let theirs = send(envoy.addr, Proto::H1, get(path, &all)).await?;
        let want = (
            want.0,
            want.1.to_string(),
            want.2.to_string(),
            want.3.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        assert_eq!(seen(&ours), want, "wasmbridge: {host}{path} {headers:?}");
        assert_eq!(
            seen(&theirs),
            want,
            "Envoy: {host}{path} {headers:?}:\n{}",
            envoy.log_text()
        );
    }
    Ok(())
}
