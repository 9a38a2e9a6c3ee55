//! `envoy_bootstrap`: what each part of a configuration becomes in Envoy's bootstrap, and
//! what is reported as untranslated (by key path).

use std::path::Path;

use serde_yaml::Value;
use wasmbridge_config::{Config, EnvoyBootstrap, envoy_bootstrap};

fn translate(yaml: &str) -> EnvoyBootstrap {
    let config = Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new("/etc/gw"))
        .unwrap_or_else(|e| panic!("{e}"));
    envoy_bootstrap(&config)
}

fn hcm(b: &EnvoyBootstrap, listener: usize) -> &Value {
    &b.bootstrap["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0]["typed_config"]
}

fn routes(b: &EnvoyBootstrap) -> &Vec<Value> {
    hcm(b, 0)["route_config"]["virtual_hosts"][0]["routes"]
        .as_sequence()
        .expect("routes")
}

fn filter_names(b: &EnvoyBootstrap) -> Vec<&str> {
    hcm(b, 0)["http_filters"]
        .as_sequence()
        .expect("filters")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect()
}

fn keys(b: &EnvoyBootstrap) -> Vec<&str> {
    b.untranslated.iter().map(|u| u.key_path.as_str()).collect()
}

/// The names of the plugins a route disables.
fn disabled(route: &Value) -> Vec<&str> {
    route["typed_per_filter_config"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v["disabled"] == Value::Bool(true))
                .map(|(k, _)| k.as_str().expect("name"))
                .collect()
        })
        .unwrap_or_default()
}

const PLUGINS: &str = "plugins:
  - name: a
    module: a.wasm
    root_id: ra
    vm_id: va
    configuration: {k: v}
    vm_configuration: raw text
    environment_variables: {host_env_keys: [HOME], key_values: {K: V}}
  - name: b
    module: /abs/b.wasm
    failure_policy: fail_open
  - name: c
    module: c.wasm
    failure_policy: fail_reload
    reload: {backoff: {base_interval: 250ms, max_interval: 3s}}
";

#[test]
fn plugins_become_wasm_filters_with_the_same_ids_configurations_and_policies() {
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:8080}}]\n{PLUGINS}\
         routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}, plugins: [a, b, c]}}]\n"
    );
    let b = translate(&yaml);
    assert!(b.untranslated.is_empty(), "{:?}", b.untranslated);
    assert_eq!(
        filter_names(&b),
        ["a", "b", "c", "envoy.filters.http.router"]
    );
    let filters = &hcm(&b, 0)["http_filters"];
    let a = &filters[0]["typed_config"];
    assert_eq!(
        a["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    );
    let a = &a["config"];
    assert_eq!(a["name"], "a");
    assert_eq!(a["root_id"], "ra");
    assert_eq!(a["vm_config"]["vm_id"], "va");
    assert_eq!(a["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        a["vm_config"]["code"]["local"]["filename"],
        "/etc/gw/a.wasm"
    );
    assert_eq!(
        a["configuration"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    assert_eq!(a["configuration"]["value"], r#"{"k":"v"}"#);
    assert_eq!(a["vm_config"]["configuration"]["value"], "raw text");
    assert_eq!(
        a["vm_config"]["environment_variables"]["host_env_keys"][0],
        "HOME"
    );
    assert_eq!(
        a["vm_config"]["environment_variables"]["key_values"]["K"],
        "V"
    );
    assert_eq!(a["failure_policy"], "FAIL_CLOSED");
    let b_ = &filters[1]["typed_config"]["config"];
    assert_eq!(b_["failure_policy"], "FAIL_OPEN");
    assert_eq!(b_["vm_config"]["vm_id"], "");
    assert!(
        b_.get("configuration").is_none(),
        "empty configuration is left out"
    );
    assert_eq!(b_["vm_config"]["code"]["local"]["filename"], "/abs/b.wasm");
    let c = &filters[2]["typed_config"]["config"];
    assert_eq!(c["failure_policy"], "FAIL_RELOAD");
    assert_eq!(c["reload_config"]["backoff"]["base_interval"], "0.25s");
    assert_eq!(c["reload_config"]["backoff"]["max_interval"], "3s");
}

#[test]
fn routes_disable_the_plugins_they_do_not_list_and_unmatched_requests_get_404() {
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:8080}}]\n{PLUGINS}\
         clusters: [{{name: up, endpoints: [\"127.0.0.1:9000\"]}}]\n\
         routes:\n\
         \x20 - {{name: one, match: {{path: /one}}, cluster: up, plugins: [b]}}\n\
         \x20 - {{match: {{prefix: /api}}, cluster: up, plugins: [a, b, c]}}\n\
         \x20 - {{match: {{prefix: /none}}, cluster: up}}\n"
    );
    let b = translate(&yaml);
    let r = routes(&b);
    assert_eq!(r.len(), 4);
    assert_eq!(r[0]["name"], "one");
    assert_eq!(r[0]["match"]["path"], "/one");
    assert_eq!(r[0]["route"]["cluster"], "up");
    assert_eq!(disabled(&r[0]), ["a", "c"]);
    assert_eq!(r[1]["name"], "route1");
    assert_eq!(r[1]["match"]["prefix"], "/api");
    assert!(r[1].get("typed_per_filter_config").is_none());
    assert_eq!(disabled(&r[2]), ["a", "b", "c"]);
    assert_eq!(r[3]["name"], "no_route");
    assert_eq!(r[3]["direct_response"]["status"], 404);
    assert_eq!(disabled(&r[3]), ["a", "b", "c"]);
    // Filters are never disabled in the connection manager itself.
    assert!(
        hcm(&b, 0)["http_filters"]
            .as_sequence()
            .expect("filters")
            .iter()
            .all(|f| f.get("disabled").is_none())
    );
}

#[test]
fn the_filter_order_follows_every_route_and_a_contradiction_is_reported() {
    let base = "listeners: [{address: 127.0.0.1:8080}]\n\
                plugins: [{name: a, module: a.wasm}, {name: b, module: b.wasm}, {name: c, module: c.wasm}, {name: d, module: d.wasm}]\n";
    // c before a on one route, a before b on another: c, a, b; d (unused) last.
    let b = translate(&format!(
        "{base}routes:\n\
         \x20 - {{match: {{path: /x}}, direct_response: {{status: 200}}, plugins: [c, a]}}\n\
         \x20 - {{match: {{path: /y}}, direct_response: {{status: 200}}, plugins: [a, b]}}\n"
    ));
    assert!(b.untranslated.is_empty(), "{:?}", b.untranslated);
    assert_eq!(
        filter_names(&b),
        ["c", "a", "b", "d", "envoy.filters.http.router"]
    );

    let b = translate(&format!(
        "{base}routes:\n\
         \x20 - {{match: {{path: /x}}, direct_response: {{status: 200}}, plugins: [a, b]}}\n\
         \x20 - {{match: {{path: /y}}, direct_response: {{status: 200}}, plugins: [b, c, a]}}\n"
    ));
    assert_eq!(keys(&b), ["routes[1].plugins"]);
    assert!(
        b.untranslated[0].reason.contains("`b` before `a`"),
        "{}",
        b.untranslated[0]
    );
    assert_eq!(
        filter_names(&b),
        ["a", "b", "c", "d", "envoy.filters.http.router"]
    );
}

#[test]
fn matchers_direct_responses_clusters_listeners_admin_and_node() {
    let b = translate(
        "listeners: [{address: \"0.0.0.0:8080\"}, {address: \"[::1]:8081\", http2: false}]\n\
         admin: {address: 127.0.0.1:9901}\n\
         node: {id: n1, cluster: c1, metadata: {WORKLOAD_NAME: w}}\n\
         clusters:\n\
         \x20 - {name: ips, endpoints: [\"127.0.0.1:9000\", \"[::1]:9001\"], http2: true, connect_timeout_ms: 1500}\n\
         \x20 - {name: dns, endpoints: [\"localhost:9002\"]}\n\
         routes:\n\
         \x20 - match:\n\
         \x20     prefix: /a\n\
         \x20     headers:\n\
         \x20       - {name: host, exact: example.com}\n\
         \x20       - {name: x-p, present: false}\n\
         \x20       - {name: x-s, suffix: z, invert: true}\n\
         \x20       - {name: x-e, contains: \"\"}\n\
         \x20   cluster: ips\n\
         \x20 - match: {prefix: /}\n\
         \x20   direct_response: {status: 201, body: \"hi\\n\", headers: {x-d: d}}\n",
    );
    let r = routes(&b);
    let h = &r[0]["match"]["headers"];
    assert_eq!(h[0]["name"], ":authority");
    assert_eq!(h[0]["string_match"]["exact"], "example.com");
    assert_eq!(h[1]["present_match"], true);
    assert_eq!(h[1]["invert_match"], true);
    assert_eq!(h[2]["string_match"]["suffix"], "z");
    assert_eq!(h[2]["invert_match"], true);
    assert_eq!(
        h[3]["present_match"], true,
        "an empty substring means present"
    );
    assert!(h[3].get("invert_match").is_none());
    assert_eq!(r[0]["route"]["timeout"], "0s");
    assert_eq!(r[0]["route"]["idle_timeout"], "30s");
    assert_eq!(r[1]["direct_response"]["status"], 201);
    assert_eq!(r[1]["direct_response"]["body"]["inline_string"], "hi\n");
    assert_eq!(r[1]["response_headers_to_add"][0]["header"]["key"], "x-d");

    assert_eq!(hcm(&b, 0)["codec_type"], "AUTO");
    assert_eq!(hcm(&b, 1)["codec_type"], "HTTP1");
    let l1 = &b.bootstrap["static_resources"]["listeners"][1]["address"]["socket_address"];
    assert_eq!(l1["address"], "::1");
    assert_eq!(l1["port_value"], 8081);

    let clusters = &b.bootstrap["static_resources"]["clusters"];
    assert_eq!(clusters[0]["type"], "STATIC");
    assert_eq!(clusters[0]["connect_timeout"], "1.5s");
    let eps = &clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"];
    assert_eq!(
        eps[1]["endpoint"]["address"]["socket_address"]["address"],
        "::1"
    );
    assert!(
        clusters[0]["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            .get("http2_protocol_options")
            .is_some()
    );
    assert_eq!(clusters[1]["type"], "STRICT_DNS");
    assert!(
        clusters[1]
            .get("typed_extension_protocol_options")
            .is_none()
    );

    assert_eq!(
        b.bootstrap["admin"]["address"]["socket_address"]["port_value"],
        9901
    );
    assert_eq!(b.bootstrap["node"]["id"], "n1");
    assert_eq!(b.bootstrap["node"]["metadata"]["WORKLOAD_NAME"], "w");
}

#[test]
fn capabilities_become_allowed_capabilities() {
    let b = translate(
        "listeners: [{address: 127.0.0.1:8080}]\n\
         plugins:\n\
         \x20 - {name: p, module: p.wasm, capabilities: {allowed: [logging, proxy_get_header_map_value], denied: [proxy_get_log_level]}}\n\
         routes: [{match: {prefix: /}, direct_response: {status: 200}, plugins: [p]}]\n",
    );
    let allowed = hcm(&b, 0)["http_filters"][0]["typed_config"]["config"]
        ["capability_restriction_config"]["allowed_capabilities"]
        .as_mapping()
        .expect("allowed_capabilities");
    let names: Vec<&str> = allowed.keys().filter_map(Value::as_str).collect();
    assert_eq!(names[..2], ["proxy_log", "proxy_get_header_map_value"]);
    // Envoy's list also decides which exports are called: every callback is there.
    for name in [
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_on_memory_allocate",
        "_initialize",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for name in ["proxy_get_log_level", "proxy_http_call", "fd_write"] {
        assert!(!names.contains(&name), "{name} allowed");
    }
}

#[test]
fn what_envoy_lacks_is_reported_by_key_path() {
    let b = translate(
        "server: {grace_period_seconds: 5, compile_cache: cache, per_stream_instances: 10}\n\
         listeners: [{address: 127.0.0.1:8080}]\n\
         clusters: [{name: up, endpoints: [\"127.0.0.1:9000\"]}]\n\
         plugins:\n\
         \x20 - name: p\n\
         \x20   module: p.wasm\n\
         \x20   limits: {profile: strict, memory: 16MiB, cpu: 5ms, body: 1KiB, callouts: 1}\n\
         \x20   pool: {replicas: 2, selection: least_loaded, recycle: {streams: 10}}\n\
         \x20   log_only: true\n\
         \x20   redact: {headers: [cookie]}\n\
         \x20   callouts: {allow_host_port: true}\n\
         \x20   capabilities: {clusters: [up]}\n\
         \x20 - {name: q, module: q.wasm, isolation: per_stream}\n\
         routes:\n\
         \x20 - {match: {prefix: /}, direct_response: {status: 101}, plugins: [p, q]}\n",
    );
    assert_eq!(
        keys(&b),
        [
            "server.grace_period_seconds",
            "server.compile_cache",
            "server.per_stream_instances",
            "plugins[0].capabilities.clusters",
            "plugins[0].callouts.allow_host_port",
            "plugins[0].limits.profile",
            "plugins[0].limits.memory",
            "plugins[0].limits.cpu",
            "plugins[0].limits.body",
            "plugins[0].limits.callouts",
            "plugins[0].pool.replicas",
            "plugins[0].pool.selection",
            "plugins[0].pool.recycle",
            "plugins[0].log_only",
            "plugins[0].redact",
            "plugins[1].isolation",
            "routes[0].direct_response.status",
        ]
    );
    // The 1xx route is left out; only the catch-all remains.
    assert_eq!(routes(&b).len(), 1);
    assert!(
        b.untranslated[0]
            .to_string()
            .starts_with("server.grace_period_seconds: ")
    );
}
