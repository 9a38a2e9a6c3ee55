//! Routes: host, regex and header-regex matching, per-route configuration overrides,
//! chain order by phase and priority, and what `envoy_bootstrap` makes of them.

use std::path::Path;

use serde_yaml::Value;
use wasmbridge_config::build::Routes;
use wasmbridge_config::{Config, HeaderRule, Phase, RouteMatch, envoy_bootstrap};

fn parse(yaml: &str) -> Config {
    Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new("/etc/gw"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn reject(yaml: &str) -> (String, String) {
    match Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new("/etc/gw")) {
        Ok(_) => panic!("accepted {yaml}"),
        Err(e) => (e.key_path().to_string(), e.message().to_string()),
    }
}

/// The name of the route that takes a request for `host` and `path` (and headers).
fn route_for(config: &Config, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let routes: Routes<()> = Routes::new(config, &[], |_| Some(()));
    let mut req = http::Request::get(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (parts, ()) = req.body(()).expect("request").into_parts();
    routes
        .find(&parts)
        .map_or_else(|| "404".to_string(), |r| r.config.name.clone())
}

const HOSTS: &str = r#"
listeners: [{address: 127.0.0.1:8080}]
routes:
  - {name: any-api, match: {prefix: /api}, direct_response: {status: 200}}
  - {name: wild-suffix, match: {prefix: /, hosts: ["*.example.com"]}, direct_response: {status: 200}}
  - {name: exact, match: {prefix: /, hosts: ["WWW.Example.com", "other.org"]}, direct_response: {status: 200}}
  - {name: exact-only-x, match: {prefix: /x, hosts: [api.example.com]}, direct_response: {status: 200}}
  - {name: wild-prefix, match: {prefix: /, hosts: ["api.*"]}, direct_response: {status: 200}}
  - {name: with-port, match: {prefix: /, hosts: ["ported.net:8443"]}, direct_response: {status: 200}}
  - {name: fallback, match: {prefix: /}, direct_response: {status: 200}}
"#;

#[test]
fn hosts_pick_the_most_specific_routes_then_the_first_match_in_file_order() {
    let config = parse(HOSTS);
    assert_eq!(config.routes[2].hosts, ["www.example.com", "other.org"]);
    // Exact beats the suffix wildcard, whatever the file order.
    assert_eq!(route_for(&config, "www.example.com", "/", &[]), "exact");
    assert_eq!(
        route_for(&config, "WWW.EXAMPLE.COM:8080", "/", &[]),
        "exact"
    );
    assert_eq!(route_for(&config, "other.org", "/api", &[]), "exact");
    // The suffix wildcard beats the prefix wildcard.
    assert_eq!(
        route_for(&config, "api.example.com", "/x", &[]),
        "exact-only-x"
    );
    assert_eq!(route_for(&config, "b.example.com", "/", &[]), "wild-suffix");
    assert_eq!(
        route_for(&config, "api.example.org", "/", &[]),
        "wild-prefix"
    );
    // Routes without hosts are `*`: only for hosts nothing more specific takes.
    assert_eq!(route_for(&config, "unknown.net", "/api/x", &[]), "any-api");
    assert_eq!(route_for(&config, "unknown.net", "/", &[]), "fallback");
    // As in Envoy, a host whose most specific routes do not match the path gets 404
    // rather than a less specific host's route.
    assert_eq!(
        route_for(&config, "api.example.com", "/other", &[]),
        "404",
        "api.example.com's routes only take /x"
    );
    // A pattern with a port compares the port too.
    assert_eq!(route_for(&config, "ported.net:8443", "/", &[]), "with-port");
    assert_eq!(route_for(&config, "ported.net", "/", &[]), "fallback");
}

#[test]
fn regex_paths_and_headers_are_full_matches() {
    let config = parse(
        r#"
listeners: [{address: 127.0.0.1:8080}]
routes:
  - name: versioned
    match: {regex: "/api/v[0-9]+/.*"}
    direct_response: {status: 200}
  - name: by-header
    match:
      prefix: /
      headers: [{name: x-tenant, regex: "t-[a-z]+"}]
    direct_response: {status: 200}
  - {name: rest, match: {prefix: /}, direct_response: {status: 200}}
"#,
    );
    assert!(
        matches!(&config.routes[0].matcher, RouteMatch::Regex(p) if p.as_str() == "/api/v[0-9]+/.*")
    );
    assert!(matches!(
        &config.routes[1].headers[0].rule,
        HeaderRule::Regex(_)
    ));
    assert_eq!(
        route_for(&config, "h", "/api/v2/users?q=1", &[]),
        "versioned"
    );
    assert_eq!(route_for(&config, "h", "/api/v2", &[]), "rest");
    assert_eq!(route_for(&config, "h", "/x/api/v2/", &[]), "rest");
    assert_eq!(
        route_for(&config, "h", "/", &[("x-tenant", "t-acme")]),
        "by-header"
    );
    assert_eq!(
        route_for(&config, "h", "/", &[("x-tenant", "t-acme2")]),
        "rest"
    );
    assert_eq!(
        route_for(&config, "h", "/", &[("x-tenant", "xt-acme")]),
        "rest"
    );
}

#[test]
fn bad_regexes_and_hosts_name_their_key() {
    let route = |m: &str| {
        format!(
            "listeners: [{{address: 127.0.0.1:8080}}]\nroutes: [{{match: {m}, direct_response: {{status: 200}}}}]\n"
        )
    };
    let (key, message) = reject(&route("{regex: '/api/(v1'}"));
    assert_eq!(key, "routes[0].match.regex");
    assert!(
        message.starts_with("invalid regular expression"),
        "{message}"
    );
    let (key, message) = reject(&route("{regex: '(a{1000}){1000}'}"));
    assert_eq!(key, "routes[0].match.regex");
    assert!(message.contains("compiles to more than"), "{message}");
    let (key, _) = reject(&route("{prefix: /, headers: [{name: x, regex: '['}]}"));
    assert_eq!(key, "routes[0].match.headers[0].regex");
    let (key, _) = reject(&route("{prefix: /, regex: /x}"));
    assert_eq!(key, "routes[0].match");
    for bad in ["'a.*.com'", "'*a*'", "''", "'exa mple.com'", "'a/b'"] {
        let (key, message) = reject(&route(&format!("{{prefix: /, hosts: [{bad}]}}")));
        assert_eq!(key, "routes[0].match.hosts[0]", "{bad}");
        assert!(message.contains("is not a host pattern"), "{message}");
    }
    let (key, message) = reject(&route("{prefix: /, hosts: [a.com, A.com]}"));
    assert_eq!(key, "routes[0].match.hosts[1]");
    assert!(message.contains("already listed at routes[0].match.hosts[0]"));
}

const CHAIN: &str = r#"
listeners: [{address: 127.0.0.1:8080}]
plugins:
  - {name: stats, module: s.wasm, phase: STATS}
  - {name: plain, module: p.wasm}
  - {name: authz, module: z.wasm, phase: AUTHZ}
  - {name: authn-low, module: n.wasm, phase: AUTHN, priority: -5}
  - {name: authn-high, module: n.wasm, phase: AUTHN, priority: 10}
  - {name: unspecified, module: u.wasm, phase: UNSPECIFIED_PHASE, priority: 1}
  - {name: authn-tie, module: n.wasm, phase: AUTHN}
routes:
  - match: {prefix: /}
    direct_response: {status: 200}
    plugins: [plain, stats, authz, authn-low, authn-tie, unspecified, authn-high]
"#;

#[test]
fn chains_run_in_phase_order_then_by_descending_priority_then_as_listed() {
    let config = parse(CHAIN);
    assert_eq!(config.plugin("stats").map(|p| p.phase), Some(Phase::Stats));
    assert_eq!(config.plugin("authn-high").map(|p| p.priority), Some(10));
    assert_eq!(
        config.routes[0].plugins,
        [
            "authn-high",
            "authn-tie",
            "authn-low",
            "authz",
            "stats",
            "unspecified",
            "plain"
        ]
    );
    let (key, message) = reject(&CHAIN.replace("phase: STATS", "phase: LOGGING"));
    assert_eq!(key, "plugins[0].phase");
    assert!(
        message.contains("`AUTHN`, `AUTHZ`, `STATS`, `UNSPECIFIED_PHASE`"),
        "{message}"
    );
}

const OVERRIDES: &str = r#"
listeners: [{address: 127.0.0.1:8080}]
plugins:
  - name: add_header
    module: add_header.wasm
    root_id: add
    vm_id: shared
    configuration: {headers: {x-which: base}}
    failure_policy: fail_open
    phase: AUTHZ
  - {name: first, module: f.wasm, phase: AUTHN}
routes:
  - name: a
    match: {prefix: /a}
    direct_response: {status: 200}
    plugins:
      - {name: add_header, configuration: {headers: {x-which: a}}}
      - first
  - name: b
    match: {prefix: /b}
    direct_response: {status: 200}
    plugins: [{name: add_header, configuration: raw text}]
  - name: c
    match: {prefix: /}
    direct_response: {status: 200}
    plugins: [add_header]
"#;

#[test]
fn configuration_overrides_are_plugins_of_their_own() {
    let config = parse(OVERRIDES);
    let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["add_header", "first", "add_header@a", "add_header@b"]
    );
    let base = config.plugin("add_header").expect("base");
    let a = config.plugin("add_header@a").expect("override a");
    assert_eq!(a.configuration, br#"{"headers":{"x-which":"a"}}"#);
    assert_eq!(a.base.as_deref(), Some("add_header"));
    assert_eq!(a.key_path, "routes[0].plugins[0]");
    // Everything but the configuration is the base plugin's.
    assert_eq!(
        (&a.module, &a.root_id, &a.vm_id, a.failure_policy, a.phase),
        (
            &base.module,
            &base.root_id,
            &base.vm_id,
            base.failure_policy,
            base.phase
        )
    );
    assert_eq!(
        config.plugin("add_header@b").expect("b").configuration,
        b"raw text"
    );
    // Chains name the override, in phase order.
    assert_eq!(config.routes[0].plugins, ["first", "add_header@a"]);
    assert_eq!(config.routes[1].plugins, ["add_header@b"]);
    assert_eq!(config.routes[2].plugins, ["add_header"]);
}

#[test]
fn override_errors_name_the_entry() {
    let (key, message) = reject(&OVERRIDES.replace(
        "{name: add_header, configuration: raw text}",
        "{name: nope, configuration: x}",
    ));
    assert_eq!(key, "routes[1].plugins[0].name");
    assert_eq!(message, "no plugin named `nope`");
    let (key, message) = reject(&OVERRIDES.replace(
        "{name: add_header, configuration: raw text}",
        "{name: add_header, configuration: x, priority: 3}",
    ));
    assert_eq!(key, "routes[1].plugins[0]");
    assert!(
        message.contains("a plugin name, or a mapping with `name` and `configuration`"),
        "{message}"
    );
    let (key, message) = reject(&OVERRIDES.replace("      - first\n", "      - add_header\n"));
    assert_eq!(key, "routes[0].plugins[1]");
    assert!(
        message.contains("already listed at routes[0].plugins[0]"),
        "{message}"
    );
    let clash = OVERRIDES.replace(
        "  - {name: first, module: f.wasm, phase: AUTHN}",
        "  - {name: first, module: f.wasm, phase: AUTHN}\n  - {name: add_header@b, module: x.wasm}",
    );
    let (key, message) = reject(&clash);
    assert_eq!(key, "routes[1].plugins[0]");
    assert!(
        message.contains("which plugins[2] already names"),
        "{message}"
    );
}

fn vhosts(b: &wasmbridge_config::EnvoyBootstrap) -> &Vec<Value> {
    b.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"]
        .as_sequence()
        .expect("virtual hosts")
}

fn route_names(vhost: &Value) -> Vec<&str> {
    vhost["routes"]
        .as_sequence()
        .expect("routes")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect()
}

#[test]
fn envoy_gets_a_virtual_host_per_host_pattern() {
    let b = envoy_bootstrap(&parse(&HOSTS.replace(
        "  - {name: with-port, match: {prefix: /, hosts: [\"ported.net:8443\"]}, direct_response: {status: 200}}\n",
        "",
    )));
    assert!(b.untranslated.is_empty(), "{:?}", b.untranslated);
    let hcm = &b.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["strip_any_host_port"], Value::Bool(true));
    let vh = vhosts(&b);
    let summary: Vec<(&str, Vec<&str>)> = vh
        .iter()
        .map(|v| (v["domains"][0].as_str().expect("domain"), route_names(v)))
        .collect();
    assert_eq!(
        summary,
        [
            ("*.example.com", vec!["wild-suffix", "no_route"]),
            ("www.example.com", vec!["exact", "no_route"]),
            ("other.org", vec!["exact", "no_route"]),
            ("api.example.com", vec!["exact-only-x", "no_route"]),
            ("api.*", vec!["wild-prefix", "no_route"]),
            ("*", vec!["any-api", "fallback", "no_route"]),
        ]
    );
    // A pattern with a port is reported: Envoy then cannot ignore ports.
    let b = envoy_bootstrap(&parse(HOSTS));
    let keys: Vec<&str> = b.untranslated.iter().map(|u| u.key_path.as_str()).collect();
    assert_eq!(keys, ["routes[5].match.hosts"]);
}

#[test]
fn envoy_gets_regexes_and_a_filter_per_override() {
    let b = envoy_bootstrap(&parse(&OVERRIDES.replace(
        "match: {prefix: /a}",
        "match: {regex: \"/a.*\", headers: [{name: x, regex: \"[0-9]+\"}]}",
    )));
    let vh = &vhosts(&b)[0];
    let a = &vh["routes"][0];
    assert_eq!(a["match"]["safe_regex"]["regex"], Value::from("/a.*"));
    assert_eq!(
        a["match"]["headers"][0]["string_match"]["safe_regex"]["regex"],
        Value::from("[0-9]+")
    );
    let filters = b.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_sequence()
        .expect("filters");
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "first",
            "add_header@a",
            "add_header@b",
            "add_header",
            "envoy.filters.http.router"
        ]
    );
    let config = |name: &str| {
        filters
            .iter()
            .find(|f| f["name"].as_str() == Some(name))
            .map(|f| f["typed_config"]["config"]["configuration"]["value"].clone())
    };
    assert_eq!(
        config("add_header@a"),
        Some(Value::from(r#"{"headers":{"x-which":"a"}}"#))
    );
    assert_eq!(
        config("add_header"),
        Some(Value::from(r#"{"headers":{"x-which":"base"}}"#))
    );
    assert!(b.untranslated.is_empty(), "{:?}", b.untranslated);
}
