//! Rejected files: every error names the file and the exact key path.

use std::path::Path;

use wasmbridge_config::{Config, ConfigError};

const FILE: &str = "conf/gw.yaml";
const LISTENERS: &str = "listeners: [{address: 127.0.0.1:8080}]\n";
const ROUTES: &str = "routes: [{match: {prefix: /}, direct_response: {status: 200}}]\n";

fn reject(yaml: &str) -> ConfigError {
    match Config::from_yaml_str(yaml, Path::new(FILE), Path::new("conf")) {
        Ok(config) => panic!("accepted {yaml:?} as {config:?}"),
        Err(err) => {
            assert_eq!(err.file(), Path::new(FILE));
            err
        }
    }
}

/// Rejects `yaml`, checking the key path and the whole rendered message.
#[track_caller]
fn assert_rejects(yaml: &str, key_path: &str, display: &str) {
    let err = reject(yaml);
    assert_eq!(err.to_string(), display);
    assert_eq!(err.key_path(), key_path, "{err}");
    let prefix = if key_path.is_empty() {
        format!("{FILE}: ")
    } else {
        format!("{FILE}: {key_path}: ")
    };
    assert_eq!(display, format!("{prefix}{}", err.message()));
    assert!(!err.is_io());
}

/// A valid file with `extra` appended.
fn valid_plus(extra: &str) -> String {
    format!("{LISTENERS}{ROUTES}{extra}")
}

// Type errors, found while deserializing.

#[test]
fn unknown_top_level_key() {
    assert_rejects(
        &valid_plus("bogus: 1\n"),
        "bogus",
        "conf/gw.yaml: bogus: unknown field `bogus`, expected one of `server`, `node`, `listeners`, \
         `admin`, `clusters`, `plugins`, `routes`",
    );
}

#[test]
fn unknown_nested_key() {
    let yaml = valid_plus("plugins:\n  - name: a\n    module: a.wasm\n    sandbox: {memory: 1}\n");
    // The list of valid keys grows with the features; its start is stable.
    let err = reject(&yaml);
    assert_eq!(err.key_path(), "plugins[0].sandbox");
    assert!(
        err.to_string().starts_with(
            "conf/gw.yaml: plugins[0].sandbox: unknown field `sandbox`, expected one of `name`, \
             `root_id`, `vm_id`, `module`, `configuration`, `vm_configuration`, `failure_policy`, \
             `callouts`, `limits`"
        ),
        "{err}"
    );
    assert_eq!(reject(&yaml).location(), Some((6, 5)));

    assert_rejects(
        &valid_plus(
            "plugins:\n  - name: a\n    module: a.wasm\n    callouts: {allow_hosts: true}\n",
        ),
        "plugins[0].callouts.allow_hosts",
        "conf/gw.yaml: plugins[0].callouts.allow_hosts: unknown field `allow_hosts`, expected \
         `allow_host_port`",
    );

    assert_rejects(
        &valid_plus("server: {cache_dir: cache}"),
        "server.cache_dir",
        "conf/gw.yaml: server.cache_dir: unknown field `cache_dir`, expected one of `threads`, \
         `grace_period_seconds`, `shutdown_timeout_seconds`, `watch`, `upgrade_sock`, \
         `compile_cache`, `per_stream_instances`, `module_cache`, `module_ca_file`",
    );

    assert_rejects(
        "routes: [{match: {prefix: /, glob: x}}]",
        "routes[0].match.glob",
        "conf/gw.yaml: routes[0].match.glob: unknown field `glob`, expected one of `prefix`, `path`, `regex`, `hosts`, `headers`",
    );
}

#[test]
fn unknown_failure_policy() {
    assert_rejects(
        &valid_plus(
            "plugins:\n  - {name: a, module: a.wasm}\n  - {name: b, module: b.wasm}\n  \
             - {name: c, module: c.wasm, failure_policy: fail_sometimes}\n",
        ),
        "plugins[2].failure_policy",
        "conf/gw.yaml: plugins[2].failure_policy: unknown variant `fail_sometimes`, expected one \
         of `fail_closed`, `fail_open`, `fail_reload`",
    );
}

#[test]
fn wrong_types() {
    assert_rejects(
        "server: {threads: abc}",
        "server.threads",
        "conf/gw.yaml: server.threads: invalid type: string \"abc\", expected usize",
    );
    assert_rejects(
        &valid_plus("server: {compile_cache: {dir: cache}}"),
        "server.compile_cache",
        "conf/gw.yaml: server.compile_cache: invalid type: map, expected a string",
    );
    assert_rejects(
        &valid_plus("server: {compile_cache: [a, b]}"),
        "server.compile_cache",
        "conf/gw.yaml: server.compile_cache: invalid type: sequence, expected a string",
    );
    assert_rejects(
        "listeners:\n  - address: 127.0.0.1:8080\n    http2: yes\n",
        "listeners[0].http2",
        "conf/gw.yaml: listeners[0].http2: invalid type: string \"yes\", expected a boolean",
    );
    assert_rejects(
        &valid_plus(
            "plugins:\n  - name: a\n    module: a.wasm\n    callouts: {allow_host_port: sometimes}\n",
        ),
        "plugins[0].callouts.allow_host_port",
        "conf/gw.yaml: plugins[0].callouts.allow_host_port: invalid type: string \"sometimes\", \
         expected a boolean",
    );
    assert_rejects(
        &valid_plus("plugins:\n  - name: a\n    module: a.wasm\n    callouts: true\n"),
        "plugins[0].callouts",
        "conf/gw.yaml: plugins[0].callouts: invalid type: boolean `true`, expected a mapping with \
         optionally `allow_host_port`",
    );
    assert_rejects(
        "listeners: {address: 127.0.0.1:8080}",
        "listeners",
        "conf/gw.yaml: listeners: invalid type: map, expected a sequence",
    );
    assert_rejects(
        "[1, 2]",
        "",
        "conf/gw.yaml: invalid type: sequence, expected a mapping with `listeners`, `routes` and \
         optionally `server`, `node`, `admin`, `clusters`, `plugins`",
    );
}

#[test]
fn missing_required_keys() {
    assert_rejects(
        &valid_plus("plugins: [{name: a}]"),
        "plugins[0]",
        "conf/gw.yaml: plugins[0]: missing field `module`",
    );
    assert_rejects(
        "routes: [{direct_response: {status: 200}}]",
        "routes[0]",
        "conf/gw.yaml: routes[0]: missing field `match`",
    );
}

// YAML syntax and reading.

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let err = reject("listeners:\n  - address: 127.0.0.1:8080\n   http2: true\n");
    assert!(err.is_syntax());
    assert_eq!(err.key_path(), "");
    assert_eq!(err.location(), Some((3, 4)));
    assert_eq!(
        err.to_string(),
        "conf/gw.yaml: did not find expected '-' indicator at line 3 column 4, while parsing a \
         block collection at line 2 column 3"
    );
}

#[test]
fn syntax_error_wins_over_an_earlier_unknown_key() {
    // The typed pass would stop at `bogus`; the broken flow sequence is the real problem.
    let err = reject("bogus: 1\nlisteners: [\n");
    assert!(err.is_syntax(), "{err}");
    assert!(err.message().contains("line 3 column 1"), "{err}");
}

#[test]
fn duplicate_yaml_keys_and_several_documents() {
    let err = reject("server: {threads: 1}\nserver: {threads: 2}\n");
    assert!(err.is_syntax());
    assert_eq!(
        err.to_string(),
        "conf/gw.yaml: duplicate entry with key \"server\""
    );
    assert_eq!(err.location(), None);

    let err = reject("---\nlisteners: []\n---\nroutes: []\n");
    assert!(err.is_syntax());
    assert_eq!(
        err.message(),
        "deserializing from YAML containing more than one document is not supported"
    );
}

#[test]
fn unreadable_file() {
    let err = Config::from_file(Path::new("conf/does-not-exist.yaml")).unwrap_err();
    assert!(err.is_io());
    assert_eq!(err.file(), Path::new("conf/does-not-exist.yaml"));
    assert_eq!(err.key_path(), "");
    assert_eq!(
        err.to_string(),
        "conf/does-not-exist.yaml: could not read the file: No such file or directory (os error 2)"
    );
}

// Semantic errors, found by validation.

#[test]
fn bad_socket_addresses() {
    assert_rejects(
        &format!("listeners: [{{address: nope}}]\n{ROUTES}"),
        "listeners[0].address",
        "conf/gw.yaml: listeners[0].address: invalid socket address `nope`",
    );
    assert_rejects(
        &valid_plus("admin: {address: localhost:9901}"),
        "admin.address",
        "conf/gw.yaml: admin.address: invalid socket address `localhost:9901`",
    );
    assert_rejects(
        &format!("listeners: [{{address: 0.0.0.0:8080}}, {{address: 0.0.0.0:8080}}]\n{ROUTES}"),
        "listeners[1].address",
        "conf/gw.yaml: listeners[1].address: `0.0.0.0:8080` is already used by listeners[0]",
    );
    assert_rejects(
        &valid_plus("admin: {address: 127.0.0.1:8080}"),
        "admin.address",
        "conf/gw.yaml: admin.address: `127.0.0.1:8080` is already used by listeners[0]",
    );
}

#[test]
fn listeners_and_routes_are_required() {
    let no_listeners = "conf/gw.yaml: listeners: at least one listener is required";
    assert_rejects(
        &format!("listeners: []\n{ROUTES}"),
        "listeners",
        no_listeners,
    );
    assert_rejects(ROUTES, "listeners", no_listeners);
    assert_rejects("", "listeners", no_listeners);
    assert_rejects("# nothing but a comment\n", "listeners", no_listeners);

    let no_routes = "conf/gw.yaml: routes: at least one route is required";
    assert_rejects(&format!("{LISTENERS}routes: []\n"), "routes", no_routes);
    assert_rejects(LISTENERS, "routes", no_routes);
}

#[test]
fn zero_threads() {
    assert_rejects(
        &valid_plus("server: {threads: 0}"),
        "server.threads",
        "conf/gw.yaml: server.threads: must be at least 1",
    );
    assert_rejects(
        &valid_plus("server: {compile_cache: ''}"),
        "server.compile_cache",
        "conf/gw.yaml: server.compile_cache: must not be empty (leave the key out, or set it \
         to null, for no cache)",
    );
}

#[test]
fn cluster_problems() {
    assert_rejects(
        &valid_plus("clusters: [{name: b, endpoints: []}]"),
        "clusters[0].endpoints",
        "conf/gw.yaml: clusters[0].endpoints: at least one endpoint is required",
    );
    assert_rejects(
        &valid_plus("clusters: [{name: b, endpoints: [\"127.0.0.1:9000\", backend]}]"),
        "clusters[0].endpoints[1]",
        "conf/gw.yaml: clusters[0].endpoints[1]: invalid endpoint `backend`: expected host:port \
         with a port in 1..=65535 (IPv6 in brackets)",
    );
    assert_rejects(
        &valid_plus("clusters: [{name: b, endpoints: [b:1]}, {name: b, endpoints: [b:2]}]"),
        "clusters[1].name",
        "conf/gw.yaml: clusters[1].name: duplicate cluster name `b` (first used at clusters[0])",
    );
    assert_rejects(
        &valid_plus("clusters: [{name: '', endpoints: [b:1]}]"),
        "clusters[0].name",
        "conf/gw.yaml: clusters[0].name: must not be empty",
    );
    assert_rejects(
        &valid_plus("clusters: [{name: b, endpoints: [b:1], read_timeout_ms: 0}]"),
        "clusters[0].read_timeout_ms",
        "conf/gw.yaml: clusters[0].read_timeout_ms: must be at least 1",
    );
}

#[test]
fn duplicate_plugin_names() {
    assert_rejects(
        &valid_plus("plugins:\n  - {name: a, module: a.wasm}\n  - {name: a, module: b.wasm}\n"),
        "plugins[1].name",
        "conf/gw.yaml: plugins[1].name: duplicate plugin name `a` (first used at plugins[0])",
    );
}

#[test]
fn plugin_problems() {
    assert_rejects(
        &valid_plus("plugins: [{name: a, module: ''}]"),
        "plugins[0].module",
        "conf/gw.yaml: plugins[0].module: must not be empty",
    );
    assert_rejects(
        &valid_plus("plugins: [{name: a, module: a.wasm, configuration: {limits: {1: x}}}]"),
        "plugins[0].configuration.limits",
        "conf/gw.yaml: plugins[0].configuration.limits: mapping key `1` is not a string; JSON \
         needs string keys (quote it)",
    );
    assert_rejects(
        &valid_plus("plugins: [{name: a, module: a.wasm, vm_configuration: [ok, {true: x}]}]"),
        "plugins[0].vm_configuration[1]",
        "conf/gw.yaml: plugins[0].vm_configuration[1]: mapping key `true` is not a string; JSON \
         needs string keys (quote it)",
    );
}

#[test]
fn unknown_cluster() {
    assert_rejects(
        &format!(
            "{LISTENERS}clusters: [{{name: backend, endpoints: [b:1]}}]\nroutes: [{{match: {{prefix: /}}, cluster: backedn}}]"
        ),
        "routes[0].cluster",
        "conf/gw.yaml: routes[0].cluster: no cluster named `backedn`",
    );
}

#[test]
fn unknown_plugin_in_a_route() {
    assert_rejects(
        &format!(
            "{LISTENERS}plugins: [{{name: a, module: a.wasm}}]\n\
             routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}, plugins: [a, missing]}}]"
        ),
        "routes[0].plugins[1]",
        "conf/gw.yaml: routes[0].plugins[1]: no plugin named `missing`",
    );
}

#[test]
fn duplicate_plugin_in_a_route() {
    assert_rejects(
        &format!(
            "{LISTENERS}plugins: [{{name: a, module: a.wasm}}, {{name: b, module: b.wasm}}]\n\
             routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}, plugins: [a, b, a]}}]"
        ),
        "routes[0].plugins[2]",
        "conf/gw.yaml: routes[0].plugins[2]: plugin `a` is already listed at routes[0].plugins[0]",
    );
}

#[test]
fn both_cluster_and_direct_response() {
    assert_rejects(
        &format!(
            "{LISTENERS}clusters: [{{name: b, endpoints: [b:1]}}]\nroutes:\n  \
             - {{match: {{prefix: /a}}, cluster: b}}\n  \
             - {{match: {{prefix: /}}, cluster: b, direct_response: {{status: 200}}}}\n"
        ),
        "routes[1]",
        "conf/gw.yaml: routes[1]: has both `cluster` and `direct_response`; give exactly one",
    );
}

#[test]
fn neither_cluster_nor_direct_response() {
    assert_rejects(
        &format!("{LISTENERS}routes: [{{match: {{prefix: /}}}}]"),
        "routes[0]",
        "conf/gw.yaml: routes[0]: needs `cluster` or `direct_response`",
    );
}

#[test]
fn match_problems() {
    let route =
        |m: &str| format!("{LISTENERS}routes: [{{match: {m}, direct_response: {{status: 200}}}}]");
    assert_rejects(
        &route("{prefix: api}"),
        "routes[0].match.prefix",
        "conf/gw.yaml: routes[0].match.prefix: must start with `/`, got `api`",
    );
    assert_rejects(
        &route("{path: ''}"),
        "routes[0].match.path",
        "conf/gw.yaml: routes[0].match.path: must start with `/`, got ``",
    );
    assert_rejects(
        &route("{prefix: /, path: /x}"),
        "routes[0].match",
        "conf/gw.yaml: routes[0].match: has more than one of `prefix`, `path`, `regex`; give exactly one",
    );
    assert_rejects(
        &route("{}"),
        "routes[0].match",
        "conf/gw.yaml: routes[0].match: needs `prefix`, `path` or `regex`",
    );
}

#[test]
fn direct_response_problems() {
    let route =
        |d: &str| format!("{LISTENERS}routes: [{{match: {{prefix: /}}, direct_response: {d}}}]");
    assert_rejects(
        &route("{status: 99}"),
        "routes[0].direct_response.status",
        "conf/gw.yaml: routes[0].direct_response.status: must be in 100..=599, got 99",
    );
    assert_rejects(
        &route("{status: 70000}"),
        "routes[0].direct_response.status",
        "conf/gw.yaml: routes[0].direct_response.status: must be in 100..=599, got 70000",
    );
    assert_rejects(
        &route("{body: x}"),
        "routes[0].direct_response",
        "conf/gw.yaml: routes[0].direct_response: missing field `status`",
    );
    assert_rejects(
        &route("{status: 200, headers: {bad name: x}}"),
        "routes[0].direct_response.headers",
        "conf/gw.yaml: routes[0].direct_response.headers: `bad name` is not a valid header name",
    );
    assert_rejects(
        &route("{status: 200, headers: {x-a: \"one\\r\\ntwo\"}}"),
        "routes[0].direct_response.headers.x-a",
        "conf/gw.yaml: routes[0].direct_response.headers.x-a: header values must not contain \
         control characters other than tab",
    );
}

#[test]
fn duplicate_route_names() {
    assert_rejects(
        &format!(
            "{LISTENERS}routes:\n  - {{match: {{prefix: /a}}, direct_response: {{status: 200}}}}\n  \
             - {{name: route0, match: {{prefix: /}}, direct_response: {{status: 200}}}}\n"
        ),
        "routes[1].name",
        "conf/gw.yaml: routes[1].name: duplicate route name `route0` (first used at routes[0])",
    );
}

#[test]
fn from_file_names_the_file_in_errors() {
    let dir = std::env::temp_dir().join(format!("wasmbridge-config-{}-errors", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gw.yaml");
    std::fs::write(&file, "listeners: [{address: nope}]\n").unwrap();
    let err = Config::from_file(&file).unwrap_err();
    assert_eq!(err.file(), file);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: listeners[0].address: invalid socket address `nope`",
            file.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn header_matcher_errors_name_the_matcher() {
    let route = |m: &str| {
        format!(
            "{LISTENERS}routes: [{{match: {{prefix: /, headers: [{m}]}}, direct_response: {{status: 200}}}}]\n"
        )
    };
    assert_rejects(
        &route("{name: x}"),
        "routes[0].match.headers[0]",
        "conf/gw.yaml: routes[0].match.headers[0]: needs one of `exact`, `prefix`, `suffix`, `contains`, `regex`, `present`",
    );
    assert_rejects(
        &route("{name: x, exact: a, prefix: b}"),
        "routes[0].match.headers[0]",
        "conf/gw.yaml: routes[0].match.headers[0]: has more than one of `exact`, `prefix`, `suffix`, `contains`, `regex`, `present`; give exactly one",
    );
    assert_rejects(
        &route("{name: 'bad name', exact: a}"),
        "routes[0].match.headers[0].name",
        "conf/gw.yaml: routes[0].match.headers[0].name: `bad name` is not a header name (a token, or one of :authority, :method, :path, :scheme)",
    );
}

#[test]
fn node_metadata_keys_must_be_strings() {
    assert_rejects(
        &valid_plus("node: {metadata: {1: a}}\n"),
        "node.metadata",
        "conf/gw.yaml: node.metadata: keys must be strings",
    );
}

#[test]
fn bad_limits_name_the_key() {
    let plugin = |limits: &str| {
        valid_plus(&format!(
            "plugins:\n  - name: a\n    module: a.wasm\n    limits: {limits}\n"
        ))
    };
    assert_rejects(
        &plugin("{memory: 16MB}"),
        "plugins[0].limits.memory",
        "conf/gw.yaml: plugins[0].limits.memory: `16MB`: unknown unit `MB` (use B, KiB, MiB or GiB)",
    );
    assert_rejects(
        &plugin("{cpu: 5}"),
        "plugins[0].limits.cpu",
        "conf/gw.yaml: plugins[0].limits.cpu: `5` needs a unit: us, ms or s",
    );
    assert_rejects(
        &plugin("{callbacks: {on_request_header: {cpu: 5ms}}}"),
        "plugins[0].limits.callbacks.on_request_header",
        "conf/gw.yaml: plugins[0].limits.callbacks.on_request_header: is not a callback the \
         host calls (use a name such as `on_request_headers`)",
    );
    assert_rejects(
        &plugin("{callbacks: {on_tick: {cpu: 0ms}}}"),
        "plugins[0].limits.callbacks.on_tick.cpu",
        "conf/gw.yaml: plugins[0].limits.callbacks.on_tick.cpu: must be above zero",
    );
    let err = reject(&plugin("{profile: lax}"));
    assert_eq!(err.key_path(), "plugins[0].limits.profile", "{err}");
}

#[test]
fn bad_fuel_and_stack_name_the_key() {
    let plugin = |limits: &str| {
        valid_plus(&format!(
            "plugins:\n  - name: a\n    module: a.wasm\n    limits: {limits}\n"
        ))
    };
    assert_rejects(
        &plugin("{fuel: 0}"),
        "plugins[0].limits.fuel",
        "conf/gw.yaml: plugins[0].limits.fuel: must be at least 1",
    );
    assert_rejects(
        &plugin("{callbacks: {on_configure: {fuel: 0}}}"),
        "plugins[0].limits.callbacks.on_configure.fuel",
        "conf/gw.yaml: plugins[0].limits.callbacks.on_configure.fuel: must be at least 1",
    );
    assert_rejects(
        &plugin("{stack: 16KiB}"),
        "plugins[0].limits.stack",
        "conf/gw.yaml: plugins[0].limits.stack: must be from 32KiB to 1MiB, not 16384 bytes \
         (guest calls run on worker threads with 2 MiB native stacks, which the proxy's own \
         frames share)",
    );
    assert_rejects(
        &plugin("{stack: 2MiB}"),
        "plugins[0].limits.stack",
        "conf/gw.yaml: plugins[0].limits.stack: must be from 32KiB to 1MiB, not 2097152 bytes \
         (guest calls run on worker threads with 2 MiB native stacks, which the proxy's own \
         frames share)",
    );
    assert_rejects(
        &plugin("{stack: 512KB}"),
        "plugins[0].limits.stack",
        "conf/gw.yaml: plugins[0].limits.stack: `512KB`: unknown unit `KB` (use B, KiB, MiB or GiB)",
    );
    assert_rejects(
        &plugin("{stack: 0}"),
        "plugins[0].limits.stack",
        "conf/gw.yaml: plugins[0].limits.stack: must be from 32KiB to 1MiB, not 0 bytes \
         (guest calls run on worker threads with 2 MiB native stacks, which the proxy's own \
         frames share)",
    );
    // Type errors come from the parser, with the key path all the same.
    for (limits, key) in [
        ("{fuel: -5}", "plugins[0].limits.fuel"),
        ("{fuel: 1e6}", "plugins[0].limits.fuel"),
        ("{fuel: lots}", "plugins[0].limits.fuel"),
        (
            "{callbacks: {on_tick: {fuel: x}}}",
            "plugins[0].limits.callbacks.on_tick.fuel",
        ),
        (
            "{callbacks: {on_tick: {steps: 5}}}",
            "plugins[0].limits.callbacks.on_tick.steps",
        ),
        ("{stack: [1]}", "plugins[0].limits.stack"),
    ] {
        let err = reject(&plugin(limits));
        assert_eq!(err.key_path(), key, "{limits}: {err}");
    }
}

#[test]
fn bad_limit_caps_name_the_key() {
    let plugin = |limits: &str| {
        valid_plus(&format!(
            "plugins:\n  - name: a\n    module: a.wasm\n  - name: b\n    module: b.wasm\n    limits: {limits}\n"
        ))
    };
    assert_rejects(
        &plugin("{body: 1MB}"),
        "plugins[1].limits.body",
        "conf/gw.yaml: plugins[1].limits.body: `1MB`: unknown unit `MB` (use B, KiB, MiB or GiB)",
    );
    assert_rejects(
        &plugin("{body: 0}"),
        "plugins[1].limits.body",
        "conf/gw.yaml: plugins[1].limits.body: must be above zero",
    );
    assert_rejects(
        &plugin("{headers: {bytes: 0KiB}}"),
        "plugins[1].limits.headers.bytes",
        "conf/gw.yaml: plugins[1].limits.headers.bytes: must be above zero",
    );
    assert_rejects(
        &plugin("{headers: {pairs: 0}}"),
        "plugins[1].limits.headers.pairs",
        "conf/gw.yaml: plugins[1].limits.headers.pairs: must be at least 1",
    );
    assert_rejects(
        &plugin("{callouts: 0}"),
        "plugins[1].limits.callouts",
        "conf/gw.yaml: plugins[1].limits.callouts: must be at least 1",
    );
    assert_rejects(
        &plugin("{callouts: 4294967296}"),
        "plugins[1].limits.callouts",
        "conf/gw.yaml: plugins[1].limits.callouts: 4294967296 is too large (at most 4294967295)",
    );
    assert_rejects(
        &plugin("{log_line: KiB}"),
        "plugins[1].limits.log_line",
        "conf/gw.yaml: plugins[1].limits.log_line: `KiB` is not a size such as `16MiB`",
    );
    // Type errors come from the parser, with the key path all the same.
    for (limits, key) in [
        ("{callouts: -1}", "plugins[1].limits.callouts"),
        ("{callouts: two}", "plugins[1].limits.callouts"),
        ("{headers: {pairs: 1.5}}", "plugins[1].limits.headers.pairs"),
        ("{headers: {count: 5}}", "plugins[1].limits.headers.count"),
        ("{headers: 60KiB}", "plugins[1].limits.headers"),
        ("{log_lines: 1KiB}", "plugins[1].limits.log_lines"),
    ] {
        let err = reject(&plugin(limits));
        assert_eq!(err.key_path(), key, "{limits}: {err}");
    }
}

#[test]
fn bad_pools_name_the_key() {
    let plugin = |keys: &str| {
        valid_plus(&format!(
            "plugins:\n  - name: a\n    module: a.wasm\n    {keys}\n"
        ))
    };
    assert_rejects(
        &plugin("pool: {replicas: 0}"),
        "plugins[0].pool.replicas",
        "conf/gw.yaml: plugins[0].pool.replicas: must be at least 1",
    );
    assert_rejects(
        &plugin("pool: {recycle: {memory: 1MB}}"),
        "plugins[0].pool.recycle.memory",
        "conf/gw.yaml: plugins[0].pool.recycle.memory: `1MB`: unknown unit `MB` (use B, KiB, MiB or GiB)",
    );
    assert_rejects(
        &plugin("isolation: per_stream\n    pool: {replicas: 2}"),
        "plugins[0].pool",
        "conf/gw.yaml: plugins[0].pool: does not apply with `isolation: per_stream`, where every \
         stream has a VM of its own",
    );
    assert_rejects(
        &plugin("reload: {backoff: {base_interval: 1s}}"),
        "plugins[0].reload",
        "conf/gw.yaml: plugins[0].reload: applies only with `failure_policy: fail_reload` (this \
         plugin has `fail_closed`)",
    );
    assert_rejects(
        &plugin(
            "failure_policy: fail_reload\n    reload: {backoff: {base_interval: 2s, max_interval: 1s}}",
        ),
        "plugins[0].reload.backoff.max_interval",
        "conf/gw.yaml: plugins[0].reload.backoff.max_interval: must not be shorter than \
         `base_interval`",
    );
    let err = reject(&plugin("isolation: per_request"));
    assert_eq!(err.key_path(), "plugins[0].isolation", "{err}");
    let err = reject(&plugin("pool: {selection: random}"));
    assert_eq!(err.key_path(), "plugins[0].pool.selection", "{err}");
    assert_rejects(
        &valid_plus("server: {per_stream_instances: 0}\n"),
        "server.per_stream_instances",
        "conf/gw.yaml: server.per_stream_instances: must be at least 1",
    );
}

/// Errors of listener TLS, cluster policies and the admin token, each by key path.
#[test]
fn listener_tls_clusters_and_admin_token_are_checked() {
    let cluster = |extra: &str| {
        format!(
            "listeners:\n  - address: 127.0.0.1:8080\nclusters:\n  - name: b\n    endpoints: [\"127.0.0.1:9000\"]\n{extra}routes:\n  - match: {{prefix: /}}\n    cluster: b\n"
        )
    };
    let cases = [
        (
            cluster("    lb_policy: least_request\n"),
            "clusters[0].lb_policy",
            "unknown policy `least_request`: expected round_robin, random or consistent_hash",
        ),
        (
            cluster("    hash_on: {header: x-user}\n"),
            "clusters[0].hash_on",
            "only with `lb_policy: consistent_hash`",
        ),
        (
            cluster("    lb_policy: consistent_hash\n    hash_on: {header: x-user, path: true}\n"),
            "clusters[0].hash_on",
            "give exactly one of `header: NAME`, `source_ip: true`, `path: true`",
        ),
        (
            cluster("    retries: 9\n"),
            "clusters[0].retries",
            "must be at most 5",
        ),
        (
            cluster("    health_check: {path: healthz}\n"),
            "clusters[0].health_check.path",
            "invalid path `healthz`: must start with `/` and hold no spaces",
        ),
        (
            cluster("    health_check: {interval_ms: 0}\n"),
            "clusters[0].health_check.interval_ms",
            "must be at least 1",
        ),
        (
            cluster("    health_check: {unhealthy_threshold: 0}\n"),
            "clusters[0].health_check.unhealthy_threshold",
            "must be at least 1",
        ),
        (
            cluster("    total_timeout_ms: 0\n"),
            "clusters[0].total_timeout_ms",
            "must be at least 1",
        ),
        (
            "listeners:\n  - address: 127.0.0.1:8443\n    tls: {cert: '', key: k.pem}\nroutes:\n  - match: {prefix: /}\n    direct_response: {status: 200}\n".to_string(),
            "listeners[0].tls.cert",
            "must name a PEM file",
        ),
        (
            valid_plus("admin: {address: 127.0.0.1:9901, token: two words}\n"),
            "admin.token",
            "must be a non-empty token without spaces or control characters (leave the key out for no token)",
        ),
    ];
    for (yaml, key_path, message) in cases {
        let err = reject(&yaml);
        assert_eq!(err.key_path(), key_path, "{err}");
        assert_eq!(err.message(), message, "{err}");
    }
}

#[test]
fn listener_tls_and_cluster_policies_parse() {
    let yaml = "listeners:\n  - address: 127.0.0.1:8443\n    tls: {cert: certs/gw.pem, key: certs/gw.key}\nclusters:\n  - name: b\n    endpoints: [\"127.0.0.1:9000\", \"127.0.0.1:9001\"]\n    lb_policy: consistent_hash\n    hash_on: {header: X-User}\n    retries: 2\n    total_timeout_ms: 1500\n    health_check: {path: /ready, interval_ms: 200}\n    tls: {sni: api.internal, ca: certs/ca.pem}\nroutes:\n  - match: {prefix: /}\n    cluster: b\n";
    let config = wasmbridge_config::Config::from_yaml_str(
        yaml,
        std::path::Path::new(FILE),
        std::path::Path::new("/etc/gw"),
    )
    .expect("valid");
    let tls = config.listeners[0].tls.as_ref().expect("tls");
    assert_eq!(tls.cert, std::path::Path::new("/etc/gw/certs/gw.pem"));
    let c = &config.clusters[0];
    assert_eq!(
        c.lb_policy,
        wasmbridge_config::LbPolicy::ConsistentHash(wasmbridge_config::HashOn::Header(
            "x-user".into()
        ))
    );
    assert_eq!(c.retries, 2);
    assert_eq!(
        c.total_timeout,
        Some(std::time::Duration::from_millis(1500))
    );
    let hc = c.health_check.as_ref().expect("health check");
    assert_eq!(
        (
            hc.path.as_str(),
            hc.interval.as_millis(),
            hc.timeout.as_millis()
        ),
        ("/ready", 200, 1000)
    );
    let up = c.tls.as_ref().expect("upstream tls");
    assert_eq!(up.sni.as_deref(), Some("api.internal"));
    assert!(up.verify);
    assert_eq!(
        up.ca.as_deref(),
        Some(std::path::Path::new("/etc/gw/certs/ca.pem"))
    );
}

#[test]
fn the_admin_listener_defaults_to_loopback() {
    let config = Config::from_yaml_str(
        &valid_plus("admin: {token: t0ken}\n"),
        Path::new(FILE),
        Path::new("conf"),
    )
    .expect("valid");
    let admin = config.admin.expect("admin");
    assert_eq!(admin.address, "127.0.0.1:9901".parse().expect("addr"));
    assert_eq!(admin.token.as_deref(), Some("t0ken"));
}
