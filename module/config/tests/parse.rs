//! Valid files: the shipped default, every key, defaults, and how plugin configuration and
//! module paths come out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmbridge_config::{
    Config, DirectResponse, FailurePolicy, HeaderMatch, HeaderRule, Isolation, LimitsConfig,
    LimitsProfile, PoolConfig, ReloadConfig, RouteAction, RouteMatch, Selection, StructValue,
};

/// The package directory, read when the test runs (cargo sets it), so a test binary built
/// from another checkout sharing the target directory still reads this checkout's files.
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run under cargo test"))
}

fn gateway_yaml() -> PathBuf {
    manifest_dir().join("../../conf/gateway.yaml")
}

fn conf_dir() -> PathBuf {
    manifest_dir().join("../../conf")
}

fn parse(yaml: &str) -> Config {
    Config::from_yaml_str(yaml, Path::new("<inline>"), Path::new("/etc/wasmbridge"))
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A minimal valid file with one plugin whose body is `plugin`.
fn with_plugin(plugin: &str) -> Config {
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:0}}]\n\
         plugins:\n  - name: p\n    module: p.wasm\n{plugin}\n\
         routes: [{{match: {{prefix: /}}, direct_response: {{status: 204}}}}]\n"
    );
    parse(&yaml)
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_else(|err| panic!("{err}"))
}

/// A fresh directory under the system temp dir for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmbridge-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{err}"));
    dir
}

#[test]
fn shipped_gateway_yaml_parses() {
    let config = Config::from_file(&gateway_yaml()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.source, gateway_yaml());
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].address, "0.0.0.0:8080".parse().unwrap());
    assert!(config.listeners[0].http2);
    assert_eq!(
        config.admin.as_ref().map(|a| a.address),
        Some("127.0.0.1:9901".parse().unwrap())
    );
    assert!(config.clusters.is_empty());

    let plugin = config.plugin("add_header").expect("add_header plugin");
    assert_eq!(plugin.root_id, "add_header");
    assert_eq!(plugin.vm_id, "");
    assert_eq!(
        plugin.module,
        conf_dir().join("../filters/target/wasm32-wasip1/release/add_header.wasm")
    );
    assert_eq!(
        text(&plugin.configuration),
        r#"{"headers":{"x-hello":"wasmbridge"}}"#
    );
    assert!(plugin.vm_configuration.is_empty());
    assert_eq!(plugin.failure_policy, FailurePolicy::FailClosed);
    assert!(!plugin.callouts.allow_host_port);
    assert_eq!(plugin.key_path, "plugins[0]");

    assert_eq!(config.routes.len(), 1);
    let route = &config.routes[0];
    assert_eq!(route.matcher, RouteMatch::Prefix("/".into()));
    assert_eq!(route.plugins, ["add_header"]);
    assert_eq!(
        route.action,
        RouteAction::DirectResponse(DirectResponse {
            status: 200,
            body: b"hello from wasmbridge\n".to_vec(),
            headers: vec![],
        })
    );
}

#[test]
fn embedded_text_resolves_against_the_given_base_dir() {
    let text = include_str!("../../../conf/gateway.yaml");
    let config = Config::from_yaml_str(text, Path::new("<inline>"), &conf_dir())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.source, Path::new("<inline>"));
    assert_eq!(
        config.plugins[0].module,
        conf_dir().join("../filters/target/wasm32-wasip1/release/add_header.wasm")
    );
}

#[test]
fn every_key() {
    let config = parse(
        r#"
server:
  threads: 2
  grace_period_seconds: 5
  compile_cache: cache/modules
listeners:
  - address: 0.0.0.0:8080
    http2: false
  - address: "[::1]:8081"
admin:
  address: 127.0.0.1:9901
clusters:
  - name: backend
    endpoints: ["127.0.0.1:9000", "backend.internal:9001", "[::1]:9002"]
    http2: true
    connect_timeout_ms: 250
    read_timeout_ms: 5000
plugins:
  - name: add_header
    root_id: add_header_root
    vm_id: shared
    module: /opt/filters/add_header.wasm
    configuration: {headers: {x-hello: wasmbridge}}
    vm_configuration: warm
    failure_policy: fail_open
    callouts: {allow_host_port: true}
  - name: auth
    module: auth.wasm
    failure_policy: fail_reload
    callouts: {}
routes:
  - name: api
    match: {path: /api}
    cluster: backend
    plugins: [auth, add_header]
  - match: {prefix: /}
    direct_response:
      status: 404
      body: "not here\n"
      headers: {content-type: text/plain, x-b: "2", x-a: 1}
"#,
    );
    assert_eq!(config.server.threads, 2);
    assert_eq!(config.server.grace_period_seconds, 5);
    assert_eq!(
        config.server.compile_cache.as_deref(),
        Some(Path::new("/etc/wasmbridge/cache/modules"))
    );
    assert!(!config.listeners[0].http2);
    assert_eq!(config.listeners[1].address, "[::1]:8081".parse().unwrap());
    assert!(config.listeners[1].http2);

    let backend = config.cluster("backend").expect("backend cluster");
    assert_eq!(
        backend.endpoints,
        ["127.0.0.1:9000", "backend.internal:9001", "[::1]:9002"]
    );
    assert!(backend.http2);
    assert_eq!(backend.connect_timeout, Duration::from_millis(250));
    assert_eq!(backend.read_timeout, Duration::from_secs(5));
    assert!(config.cluster("nope").is_none());

    let add_header = config.plugin("add_header").expect("add_header");
    assert_eq!(add_header.root_id, "add_header_root");
    assert_eq!(add_header.vm_id, "shared");
    assert_eq!(add_header.module, Path::new("/opt/filters/add_header.wasm"));
    assert_eq!(add_header.vm_configuration, b"warm");
    assert_eq!(add_header.failure_policy, FailurePolicy::FailOpen);
    assert!(add_header.callouts.allow_host_port);
    let auth = config.plugin("auth").expect("auth");
    assert_eq!(auth.module, Path::new("/etc/wasmbridge/auth.wasm"));
    assert_eq!(auth.failure_policy, FailurePolicy::FailReload);
    assert!(!auth.callouts.allow_host_port);
    assert_eq!(auth.key_path, "plugins[1]");
    assert!(config.plugin("nope").is_none());

    let api = &config.routes[0];
    assert_eq!(api.name, "api");
    assert_eq!(api.matcher, RouteMatch::Path("/api".into()));
    assert_eq!(api.action, RouteAction::Cluster("backend".into()));
    assert_eq!(api.plugins, ["auth", "add_header"]);
    assert_eq!(api.key_path, "routes[0]");

    let fallback = &config.routes[1];
    assert_eq!(fallback.name, "route1");
    assert!(fallback.plugins.is_empty());
    let RouteAction::DirectResponse(reply) = &fallback.action else {
        panic!("expected a direct response, got {:?}", fallback.action);
    };
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, b"not here\n");
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [("content-type", "text/plain"), ("x-b", "2"), ("x-a", "1")]
    );
}

#[test]
fn defaults() {
    let config = parse(
        "listeners: [{address: 127.0.0.1:8080}]\n\
         clusters: [{name: b, endpoints: [localhost:9000]}]\n\
         plugins: [{name: p, module: p.wasm}]\n\
         routes: [{match: {prefix: /}, cluster: b}]\n",
    );
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.server.threads, parallelism);
    assert!(config.server.threads >= 1);
    assert_eq!(config.server.grace_period_seconds, 1);
    assert_eq!(
        config.server.compile_cache, None,
        "no compile cache by default"
    );
    assert!(config.listeners[0].http2);
    assert!(config.admin.is_none());
    let cluster = &config.clusters[0];
    assert!(!cluster.http2);
    assert_eq!(cluster.connect_timeout, Duration::from_millis(1000));
    assert_eq!(cluster.read_timeout, Duration::from_millis(30_000));
    let plugin = &config.plugins[0];
    assert_eq!((plugin.root_id.as_str(), plugin.vm_id.as_str()), ("", ""));
    assert!(plugin.configuration.is_empty() && plugin.vm_configuration.is_empty());
    assert_eq!(plugin.failure_policy, FailurePolicy::FailClosed);
    assert_eq!(config.routes[0].name, "route0");
}

#[test]
fn compile_cache_is_a_directory_relative_to_the_file() {
    let with = |server: &str| {
        parse(&format!(
            "server: {server}\nlisteners: [{{address: 127.0.0.1:0}}]\n\
             routes: [{{match: {{prefix: /}}, direct_response: {{status: 204}}}}]\n"
        ))
        .server
        .compile_cache
    };
    assert_eq!(
        with("{compile_cache: .cache}"),
        Some(PathBuf::from("/etc/wasmbridge/.cache"))
    );
    assert_eq!(
        with("{compile_cache: ../var/cache/wasmbridge}"),
        Some(PathBuf::from("/etc/wasmbridge/../var/cache/wasmbridge"))
    );
    assert_eq!(
        with("{compile_cache: /var/cache/wasmbridge}"),
        Some(PathBuf::from("/var/cache/wasmbridge"))
    );
    assert_eq!(with("{compile_cache: null}"), None);
    assert_eq!(with("{compile_cache: ~, threads: 1}"), None);
    assert_eq!(with("{threads: 1}"), None);

    // A file read from disk resolves against its own directory.
    let dir = temp_dir("compile-cache");
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        "server: {compile_cache: cache}\nlisteners: [{address: 127.0.0.1:0}]\n\
         routes: [{match: {prefix: /}, direct_response: {status: 204}}]\n",
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let config = Config::from_file(&file).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.server.compile_cache, Some(dir.join("cache")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn null_sections_count_as_absent() {
    let config = parse(
        "server:\nlisteners: [{address: 127.0.0.1:0}, {address: 127.0.0.1:0}]\nclusters:\nplugins: ~\n\
         routes: [{match: {path: /}, direct_response: {status: 200}}]\n",
    );
    assert!(config.clusters.is_empty() && config.plugins.is_empty());
    // Port 0 asks the OS for a port, so two of them do not collide.
    assert_eq!(config.listeners.len(), 2);
}

#[test]
fn string_configuration_is_passed_raw() {
    let plugin = with_plugin("    configuration: '{\"not\": \"reencoded\" }'");
    assert_eq!(
        text(&plugin.plugins[0].configuration),
        r#"{"not": "reencoded" }"#
    );

    let plugin = with_plugin("    configuration: plain words");
    assert_eq!(plugin.plugins[0].configuration, b"plain words");

    let plugin =
        with_plugin("    configuration: |\n      line one\n        indented: two\n      three\n");
    assert_eq!(
        text(&plugin.plugins[0].configuration),
        "line one\n  indented: two\nthree\n"
    );

    let plugin = with_plugin("    vm_configuration: \"tab\\there\"");
    assert_eq!(plugin.plugins[0].vm_configuration, b"tab\there");
}

#[test]
fn structured_configuration_is_passed_as_json() {
    let plugin = with_plugin("    configuration: {headers: {x-hello: wasmbridge}}");
    assert_eq!(
        text(&plugin.plugins[0].configuration),
        r#"{"headers":{"x-hello":"wasmbridge"}}"#
    );

    // Block style, keys in file order (not sorted), nested lists, numbers and nulls.
    let plugin = with_plugin(
        "    configuration:\n      zulu: [1, two, {three: 3.5}]\n      alpha: ~\n      mike: true\n",
    );
    assert_eq!(
        text(&plugin.plugins[0].configuration),
        r#"{"zulu":[1,"two",{"three":3.5}],"alpha":null,"mike":true}"#
    );

    let plugin = with_plugin("    configuration: [a, 1, -2]\n    vm_configuration: {k: v}");
    assert_eq!(text(&plugin.plugins[0].configuration), r#"["a",1,-2]"#);
    assert_eq!(text(&plugin.plugins[0].vm_configuration), r#"{"k":"v"}"#);
}

#[test]
fn scalar_and_absent_configuration() {
    assert_eq!(
        with_plugin("    configuration: 42").plugins[0].configuration,
        b"42"
    );
    assert_eq!(
        with_plugin("    configuration: false").plugins[0].configuration,
        b"false"
    );
    assert!(
        with_plugin("    configuration: ~").plugins[0]
            .configuration
            .is_empty()
    );
    assert!(
        with_plugin("    configuration:").plugins[0]
            .configuration
            .is_empty()
    );
    assert!(
        with_plugin("    configuration: ''").plugins[0]
            .configuration
            .is_empty()
    );
    let absent = with_plugin("");
    assert!(absent.plugins[0].configuration.is_empty());
    assert!(absent.plugins[0].vm_configuration.is_empty());
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let config = parse(
        "listeners: [{address: 127.0.0.1:0}]\n\
         plugins:\n  - {name: a, module: a.wasm, configuration: &shared {limit: 10}}\n  \
         - {name: b, module: b.wasm, configuration: *shared}\n\
         routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n",
    );
    assert_eq!(config.plugins[1].configuration, br#"{"limit":10}"#);
}

#[test]
fn relative_module_resolves_against_the_file_directory() {
    let dir = temp_dir("relative");
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    let file = dir.join("conf/gw.yaml");
    std::fs::write(
        &file,
        "listeners: [{address: 127.0.0.1:0}]\n\
         plugins:\n  - {name: rel, module: ../filters/rel.wasm}\n  \
         - {name: here, module: here.wasm}\n  \
         - {name: abs, module: /opt/abs.wasm}\n\
         routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n",
    )
    .unwrap();
    let config = Config::from_file(&file).unwrap_or_else(|err| panic!("{err}"));
    assert!(config.plugins[0].module.is_absolute());
    assert_eq!(
        config.plugins[0].module,
        dir.join("conf/../filters/rel.wasm")
    );
    assert_eq!(config.plugins[1].module, dir.join("conf/here.wasm"));
    assert_eq!(config.plugins[2].module, Path::new("/opt/abs.wasm"));
    // The module file need not exist: the host reports that with the plugin name.
    assert!(!config.plugins[0].module.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn relative_file_path_gives_relative_module_path() {
    let config = Config::from_yaml_str(
        "listeners: [{address: 127.0.0.1:0}]\n\
         plugins: [{name: p, module: p.wasm}]\n\
         routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n",
        Path::new("gw.yaml"),
        Path::new(""),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.plugins[0].module, Path::new("p.wasm"));
}

#[test]
fn routes_match_in_order() {
    let config = parse(
        "listeners: [{address: 127.0.0.1:0}]\n\
         routes:\n  - {match: {path: /exact}, direct_response: {status: 200}}\n  \
         - {match: {prefix: /api/}, direct_response: {status: 201}}\n  \
         - {match: {prefix: /}, direct_response: {status: 404}}\n",
    );
    let pick = |path: &str| {
        config
            .routes
            .iter()
            .position(|route| route.matcher.matches(path))
    };
    assert_eq!(pick("/exact"), Some(0));
    assert_eq!(pick("/exact/"), Some(2));
    assert_eq!(pick("/api/users"), Some(1));
    assert_eq!(pick("/api"), Some(2));
    assert_eq!(pick("/"), Some(2));
}

#[test]
fn route_header_matchers_and_node() {
    let config = parse(
        "listeners: [{address: 127.0.0.1:0}]\n\
         node: {id: gw-1, cluster: edge, metadata: {WORKLOAD_NAME: web, replicas: 3, labels: {app: web}, tags: [a, b], on: true, none: null}}\n\
         routes:\n  - match:\n      prefix: /\n      headers:\n        - {name: Host, exact: example.com}\n        - {name: x-beta, present: true, invert: true}\n        - {name: x-v, prefix: v, }\n    direct_response: {status: 200}\n",
    );
    let route = &config.routes[0];
    assert_eq!(
        route.headers,
        [
            HeaderMatch {
                name: ":authority".into(),
                rule: HeaderRule::Exact("example.com".into()),
                invert: false
            },
            HeaderMatch {
                name: "x-beta".into(),
                rule: HeaderRule::Present(true),
                invert: true
            },
            HeaderMatch {
                name: "x-v".into(),
                rule: HeaderRule::Prefix("v".into()),
                invert: false
            },
        ]
    );
    assert!(route.headers[0].matches(Some(b"example.com")));
    assert!(!route.headers[0].matches(Some(b"example.org")));
    assert!(!route.headers[0].matches(None));
    assert!(route.headers[1].matches(None));
    assert!(!route.headers[1].matches(Some(b"")));
    assert_eq!(config.node.id, "gw-1");
    assert_eq!(config.node.cluster, "edge");
    let names: Vec<&str> = config
        .node
        .metadata
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        ["WORKLOAD_NAME", "replicas", "labels", "tags", "on", "none"]
    );
    assert_eq!(config.node.metadata[1].1, StructValue::Number(3.0));
    assert_eq!(
        config.node.metadata[2].1,
        StructValue::Struct(vec![("app".into(), StructValue::String("web".into()))])
    );
    assert_eq!(config.node.metadata[5].1, StructValue::Null);
}

#[test]
fn header_rules_match_like_envoys() {
    let rule = |rule, invert| HeaderMatch {
        name: "x".into(),
        rule,
        invert,
    };
    assert!(rule(HeaderRule::Suffix(".com".into()), false).matches(Some(b"a.com")));
    assert!(rule(HeaderRule::Contains("b".into()), false).matches(Some(b"abc")));
    assert!(!rule(HeaderRule::Contains("z".into()), false).matches(Some(b"abc")));
    assert!(rule(HeaderRule::Contains("z".into()), true).matches(Some(b"abc")));
    // An absent header fails every value rule, and so passes its inversion.
    assert!(!rule(HeaderRule::Exact(String::new()), false).matches(None));
    assert!(rule(HeaderRule::Exact(String::new()), true).matches(None));
    assert!(rule(HeaderRule::Present(false), false).matches(None));
}

#[test]
fn plugin_limits() {
    let yaml = "listeners: [{address: 127.0.0.1:8080}]\n\
                routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n\
                plugins:\n\
                \x20 - {name: a, module: a.wasm}\n\
                \x20 - name: b\n\
                \x20   module: b.wasm\n\
                \x20   limits:\n\
                \x20     profile: strict\n\
                \x20     memory: 32MiB\n\
                \x20     cpu: 2ms\n\
                \x20     fuel: 1000000\n\
                \x20     stack: 256KiB\n\
                \x20     callbacks: {on_tick: {cpu: 50ms}, on_configure: {cpu: 1s, fuel: 5000000}}\n\
                \x20 - {name: c, module: c.wasm, limits: {stack: 32768, callbacks: {on_log: {fuel: 10}}}}\n";
    let config = Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.plugins[0].limits, LimitsConfig::default());
    let b = &config.plugins[1].limits;
    assert_eq!(b.profile, LimitsProfile::Strict);
    assert_eq!(b.memory, Some(32 << 20));
    assert_eq!(b.cpu, Some(Duration::from_millis(2)));
    assert_eq!(
        b.cpu_by_callback,
        [
            ("on_configure".to_string(), Duration::from_secs(1)),
            ("on_tick".to_string(), Duration::from_millis(50)),
        ]
    );
    assert_eq!(b.fuel, Some(1_000_000));
    assert_eq!(
        b.fuel_by_callback,
        [("on_configure".to_string(), 5_000_000)]
    );
    assert_eq!(b.stack, Some(256 << 10));
    let c = &config.plugins[2].limits;
    assert_eq!(
        (c.fuel, c.stack, c.cpu_by_callback.len()),
        (None, Some(32 << 10), 0)
    );
    assert_eq!(c.fuel_by_callback, [("on_log".to_string(), 10)]);
    let a = &config.plugins[0].limits;
    assert_eq!(
        (a.fuel, a.stack),
        (None, None),
        "unset: no fuel, the host's stack"
    );
}

#[test]
fn plugin_limit_caps() {
    let yaml = "listeners: [{address: 127.0.0.1:8080}]\n\
                routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n\
                plugins:\n\
                \x20 - {name: a, module: a.wasm, limits: {profile: strict}}\n\
                \x20 - name: b\n\
                \x20   module: b.wasm\n\
                \x20   limits:\n\
                \x20     body: 2MiB\n\
                \x20     headers: {bytes: 8192, pairs: 20}\n\
                \x20     callouts: 3\n\
                \x20     log_line: 512B\n\
                \x20 - {name: c, module: c.wasm, limits: {headers: {pairs: 64}}}\n";
    let config = Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let a = &config.plugins[0].limits;
    assert_eq!(a.profile, LimitsProfile::Strict);
    assert_eq!(
        (
            a.body,
            a.header_bytes,
            a.header_pairs,
            a.callouts,
            a.log_line
        ),
        (None, None, None, None, None),
        "unset caps come from the profile, in the host"
    );
    let b = &config.plugins[1].limits;
    assert_eq!(b.profile, LimitsProfile::Default);
    assert_eq!(b.body, Some(2 << 20));
    assert_eq!(b.header_bytes, Some(8192));
    assert_eq!(b.header_pairs, Some(20));
    assert_eq!(b.callouts, Some(3));
    assert_eq!(b.log_line, Some(512));
    let c = &config.plugins[2].limits;
    assert_eq!((c.header_bytes, c.header_pairs), (None, Some(64)));
}

#[test]
fn plugin_pools_isolation_and_reload() {
    let yaml = "listeners: [{address: 127.0.0.1:8080}]\n\
                routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n\
                server: {per_stream_instances: 64}\n\
                plugins:\n\
                \x20 - {name: a, module: a.wasm}\n\
                \x20 - name: b\n\
                \x20   module: b.wasm\n\
                \x20   failure_policy: fail_reload\n\
                \x20   reload: {backoff: {base_interval: 200ms}}\n\
                \x20   pool:\n\
                \x20     replicas: 3\n\
                \x20     selection: least_loaded\n\
                \x20     recycle: {streams: 1000, memory: 64MiB}\n\
                \x20 - {name: c, module: c.wasm, isolation: per_stream, log_only: true}\n";
    let config = Config::from_yaml_str(yaml, Path::new("gw.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.per_stream_instances, 64);
    let a = &config.plugins[0];
    assert_eq!(a.isolation, Isolation::Shared);
    assert_eq!(a.pool, PoolConfig::default());
    assert_eq!(a.reload, ReloadConfig::default());
    let b = &config.plugins[1];
    assert_eq!(
        b.pool,
        PoolConfig {
            replicas: Some(3),
            selection: Selection::LeastLoaded,
            recycle_streams: Some(1000),
            recycle_memory: Some(64 << 20),
        }
    );
    // The longest wait defaults to ten times the base, as in Envoy.
    assert_eq!(
        b.reload,
        ReloadConfig {
            base_interval: Duration::from_millis(200),
            max_interval: Duration::from_secs(2),
        }
    );
    assert_eq!(config.plugins[2].isolation, Isolation::PerStream);
    assert!(config.plugins[2].log_only);
    assert!(!config.plugins[1].log_only);
}
