//! A plugin's `capabilities`, `redact` and `environment_variables`: what is accepted, how it
//! comes out, and errors that name the key path and say what would be valid.

use std::path::Path;

use wasmbridge_config::{CapabilitiesConfig, Config, EnvironmentConfig, RedactConfig};

const FILE: &str = "conf/gw.yaml";

/// A file with a cluster `auth` and one plugin `p` whose body gets `plugin` appended.
fn file(plugin: &str) -> String {
    format!(
        "listeners: [{{address: 127.0.0.1:0}}]\n\
         clusters: [{{name: auth, endpoints: [\"127.0.0.1:9001\"]}}]\n\
         plugins:\n  - name: p\n    module: p.wasm\n{plugin}\n\
         routes: [{{match: {{prefix: /}}, direct_response: {{status: 204}}}}]\n"
    )
}

fn parse(plugin: &str) -> Config {
    Config::from_yaml_str(&file(plugin), Path::new(FILE), Path::new("conf"))
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Rejects the plugin body, checking the key path and that the message holds `needle`.
#[track_caller]
fn rejects(plugin: &str, key_path: &str, needle: &str) {
    match Config::from_yaml_str(&file(plugin), Path::new(FILE), Path::new("conf")) {
        Ok(config) => panic!("accepted {plugin:?} as {:?}", config.plugins[0]),
        Err(err) => {
            assert_eq!(err.key_path(), key_path, "{err}");
            assert!(err.to_string().contains(needle), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("{FILE}: {key_path}: ")),
                "{err}"
            );
        }
    }
}

#[test]
fn defaults_restrict_and_hide_nothing() {
    let config = parse("");
    let p = &config.plugins[0];
    assert_eq!(p.capabilities, CapabilitiesConfig::default());
    assert_eq!(p.capabilities.allowed, None, "everything allowed");
    assert_eq!(p.capabilities.clusters, None, "any cluster");
    assert_eq!(p.redact, RedactConfig::default());
    assert_eq!(p.environment_variables, EnvironmentConfig::default());
}

#[test]
fn families_hostcall_names_clusters_redaction_and_environment() {
    let config = parse(
        "    capabilities:\n\
         \x20     allowed: [logging, headers_read, proxy_http_call, wasi_stdio]\n\
         \x20     denied: [fd_read]\n\
         \x20     clusters: [auth]\n\
         \x20   redact:\n\
         \x20     headers: [Authorization, cookie, \":path\"]\n\
         \x20     properties: [source.address, request.headers.x-api-key]\n\
         \x20   environment_variables:\n\
         \x20     host_env_keys: [HOME]\n\
         \x20     key_values: {REGION: eu-west-1, MODE: strict}\n",
    );
    let p = &config.plugins[0];
    assert_eq!(
        p.capabilities,
        CapabilitiesConfig {
            allowed: Some(vec![
                "logging".into(),
                "headers_read".into(),
                "proxy_http_call".into(),
                "wasi_stdio".into()
            ]),
            denied: vec!["fd_read".into()],
            clusters: Some(vec!["auth".into()]),
        }
    );
    assert_eq!(
        p.redact,
        RedactConfig {
            headers: vec!["authorization".into(), "cookie".into(), ":path".into()],
            properties: vec!["source.address".into(), "request.headers.x-api-key".into()],
        }
    );
    assert_eq!(
        p.environment_variables,
        EnvironmentConfig {
            host_env_keys: vec!["HOME".into()],
            key_values: vec![
                ("REGION".into(), "eu-west-1".into()),
                ("MODE".into(), "strict".into())
            ],
        },
        "key_values keep the file's order"
    );
}

#[test]
fn an_empty_cluster_list_forbids_every_callout() {
    let config = parse("    capabilities: {clusters: []}\n");
    assert_eq!(config.plugins[0].capabilities.clusters, Some(vec![]));
}

#[test]
fn host_port_clusters_need_allow_host_port() {
    rejects(
        "    capabilities: {clusters: [\"127.0.0.1:9002\"]}\n",
        "plugins[0].capabilities.clusters[0]",
        "`127.0.0.1:9002` is not a cluster of this file (a `host:port` upstream needs \
         `callouts.allow_host_port: true`)",
    );
    let config = parse(
        "    callouts: {allow_host_port: true}\n    capabilities: {clusters: [\"127.0.0.1:9002\"]}\n",
    );
    assert_eq!(
        config.plugins[0].capabilities.clusters,
        Some(vec!["127.0.0.1:9002".into()])
    );
}

#[test]
fn capability_errors_name_the_entry_and_the_valid_names() {
    rejects(
        "    capabilities: {denied: [metrics, htttp_calls]}\n",
        "plugins[0].capabilities.denied[1]",
        "unknown capability `htttp_calls`: expected a family (logging, clock, timers",
    );
    rejects(
        "    capabilities: {allowed: [proxy_http_cal]}\n",
        "plugins[0].capabilities.allowed[0]",
        "unknown hostcall `proxy_http_cal`; the proxy hostcalls are: proxy_log,",
    );
    rejects(
        "    capabilities: {allowed: [proxy_on_request_headers]}\n",
        "plugins[0].capabilities.allowed[0]",
        "is a callback, not a hostcall",
    );
    rejects(
        "    capabilities: {allowed: []}\n",
        "plugins[0].capabilities.allowed",
        "an empty list would deny every hostcall",
    );
    rejects(
        "    capabilities: {clusters: [auth, backend]}\n",
        "plugins[0].capabilities.clusters[1]",
        "`backend` is not a cluster of this file",
    );
    rejects(
        "    capabilities: {alowed: [logging]}\n",
        "plugins[0].capabilities.alowed",
        "unknown field `alowed`, expected one of `allowed`, `denied`, `clusters`",
    );
}

#[test]
fn redaction_errors_name_the_entry() {
    rejects(
        "    redact: {headers: [ok, \"bad header\"]}\n",
        "plugins[0].redact.headers[1]",
        "`bad header` is not a request header name",
    );
    rejects(
        "    redact: {properties: [source..address]}\n",
        "plugins[0].redact.properties[0]",
        "`source..address` is not a dotted property path",
    );
    rejects(
        "    redact: {properties: [\"request.headers.a b\"]}\n",
        "plugins[0].redact.properties[0]",
        "`a b` is not a request header name",
    );
    rejects(
        "    redact: {header: [cookie]}\n",
        "plugins[0].redact.header",
        "unknown field `header`, expected `headers` or `properties`",
    );
}

#[test]
fn environment_errors_follow_envoy() {
    rejects(
        "    environment_variables: {key_values: {A: '1'}, host_env_keys: [B, A]}\n",
        "plugins[0].environment_variables.host_env_keys[1]",
        "`A` is already given at plugins[0].environment_variables.key_values.A; every name \
         must be unique",
    );
    rejects(
        "    environment_variables: {host_env_keys: [\"A=B\"]}\n",
        "plugins[0].environment_variables.host_env_keys[0]",
        "`A=B` is not a variable name",
    );
    rejects(
        "    environment_variables: {key_values: {A: [1]}}\n",
        "plugins[0].environment_variables.key_values.A",
        "invalid type: sequence, expected a string",
    );
    rejects(
        "    environment_variables: {keys: [A]}\n",
        "plugins[0].environment_variables.keys",
        "unknown field `keys`, expected `host_env_keys` or `key_values`",
    );
}

#[test]
fn a_variable_given_twice_in_key_values_is_an_error() {
    // The YAML parser finds it first, and names the mapping in its message.
    let err = Config::from_yaml_str(
        &file("    environment_variables: {key_values: {A: '1', A: '2'}}\n"),
        Path::new(FILE),
        Path::new("conf"),
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "conf/gw.yaml: plugins[0].environment_variables.key_values: duplicate entry with \
             key \"A\" at line 6 column 41"
        )
    );
}
