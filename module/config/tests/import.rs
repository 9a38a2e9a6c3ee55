//! `import_envoy`: the configuration an Envoy bootstrap or an Istio `WasmPlugin` becomes, and
//! what is reported as untranslated (by path in the input).

use std::path::Path;

use serde_yaml::Value;
use wasmbridge_config::{Config, EnvoyImport, ImportError, import_envoy};

fn import(yaml: &str) -> EnvoyImport {
    import_envoy(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn keys(i: &EnvoyImport) -> Vec<&str> {
    i.untranslated.iter().map(|u| u.key_path.as_str()).collect()
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("yaml")
}

/// A bootstrap with one connection manager holding `filters` (YAML list items indented
/// for `http_filters:`) and `routes` (for the `*` virtual host).
fn bootstrap(filters: &str, routes: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
    - address: {{socket_address: {{address: 127.0.0.1, port_value: 8080}}}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
{routes}
                http_filters:
{filters}
"#
    )
}

const ROUTE: &str =
    "                        - {match: {prefix: /}, direct_response: {status: 200}}";

#[test]
fn remote_code_becomes_a_module_url_with_its_sha256() {
    let filters = r#"                  - name: remote
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: remote
                        vm_config:
                          code:
                            remote:
                              http_uri: {uri: "https://example.com/f.wasm", cluster: c, timeout: 5s}
                              sha256: abc123"#;
    let i = import(&bootstrap(filters, ROUTE));
    assert!(i.untranslated.is_empty(), "{:?}", i.untranslated);
    assert_eq!(
        i.config["plugins"][0],
        yaml("{name: remote, module: 'https://example.com/f.wasm', sha256: abc123}")
    );
    assert_eq!(i.config["routes"][0]["plugins"], yaml("[remote]"));
    let text = i.to_yaml();
    assert!(
        text.contains("module: https://example.com/f.wasm\n  sha256: abc123\n"),
        "{text}"
    );
}

#[test]
fn wasm_filter_settings_and_what_is_not_translated() {
    let filters = r#"                  - name: lua
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua}
                  - name: typed
                    typed_config:
                      "@type": type.googleapis.com/udpa.type.v1.TypedStruct
                      type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      value:
                        config:
                          root_id: r
                          vm_config: {code: {local: {filename: t.wasm}}, allow_precompiled: true}
                          configuration: {"@type": type.googleapis.com/google.protobuf.Struct, value: {a: 1}}
                          failure_policy: FAIL_RELOAD
                          reload_config: {backoff: {base_interval: 0.5s, max_interval: 4s}}
                  - name: inline
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config: {vm_config: {code: {local: {inline_bytes: AAAA}}}}"#;
    let i = import(&bootstrap(filters, ROUTE));
    let hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    assert_eq!(
        keys(&i),
        [
            format!("{hcm}.http_filters[0] (lua)"),
            format!("{hcm}.http_filters[1].typed_config.value.config.vm_config.allow_precompiled"),
            format!("{hcm}.http_filters[1].typed_config.value.config.configuration"),
            format!("{hcm}.http_filters[2].typed_config.config.vm_config.code"),
        ]
    );
    assert_eq!(
        i.config["plugins"],
        yaml(
            "[{name: typed, root_id: r, module: t.wasm, configuration: {a: 1}, \
             failure_policy: fail_reload, reload: {backoff: {base_interval: 500ms, max_interval: 4000ms}}}]"
        )
    );
    let config = Config::from_yaml_str(&i.to_yaml(), Path::new("x"), Path::new("/"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.plugins[0].configuration, br#"{"a":1}"#);
}

#[test]
fn routes_take_the_chain_less_what_they_disable_and_keep_only_exact_matches() {
    let filters = r#"                  - name: a
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config: {name: a, vm_config: {code: {local: {filename: a.wasm}}}}
                  - name: b
                    disabled: true
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config: {name: b, vm_config: {code: {local: {filename: b.wasm}}}}"#;
    let routes = r#"                        - name: off
                          match: {prefix: /off}
                          direct_response: {status: 200}
                          typed_per_filter_config:
                            a: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}
                            b: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig}
                        - name: query
                          match: {prefix: /, query_parameters: [{name: q}]}
                          direct_response: {status: 200}
                        - name: redirect
                          match: {prefix: /r}
                          redirect: {path_redirect: /x}
                        - name: rest
                          match: {prefix: ""}
                          direct_response: {status: 200}"#;
    let i = import(&bootstrap(filters, routes));
    let names: Vec<&str> = i.config["routes"]
        .as_sequence()
        .expect("routes")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["off", "rest"]);
    // `b` is off unless a route turns it on; `off` turns `a` off and `b` on.
    assert_eq!(i.config["routes"][0]["plugins"], yaml("[b]"));
    assert_eq!(i.config["routes"][1]["plugins"], yaml("[a]"));
    assert_eq!(i.config["routes"][1]["match"], yaml("{prefix: /}"));
    let vh = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0]";
    assert_eq!(
        keys(&i),
        [
            format!("{vh}.routes[1].match.query_parameters"),
            format!("{vh}.routes[1].match"),
            format!("{vh}.routes[2].redirect"),
            format!("{vh}.routes[2]"),
        ]
    );
}

#[test]
fn a_wasmplugin_alone_gets_a_listener_and_a_placeholder_route() {
    let i = import(
        r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: auth}
spec:
  url: registry.example.com/auth:v1
  sha256: "0123"
  phase: AUTHZ
  failStrategy: FAIL_CLOSE
  imagePullSecret: pull
  targetRefs: [{kind: Gateway, name: gw}]
"#,
    );
    assert_eq!(
        i.config["plugins"][0],
        yaml(
            "{name: auth, module: 'oci://registry.example.com/auth:v1', sha256: '0123', phase: AUTHZ}"
        )
    );
    assert_eq!(i.config["listeners"], yaml("[{address: '0.0.0.0:8080'}]"));
    assert_eq!(
        i.config["routes"],
        yaml("[{name: all, match: {prefix: /}, cluster: upstream, plugins: [auth]}]")
    );
    assert_eq!(
        i.config["clusters"],
        yaml("[{name: upstream, endpoints: ['127.0.0.1:8000']}]")
    );
    assert_eq!(
        keys(&i),
        [
            "spec.imagePullSecret",
            "spec.targetRefs",
            "listeners",
            "routes"
        ]
    );
}

#[test]
fn wasmplugins_after_a_bootstrap_join_every_route() {
    let filters = r#"                  - name: a
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config: {name: a, vm_config: {code: {local: {filename: a.wasm}}}}"#;
    let text = format!(
        "{}---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: w}}\nspec: {{url: 'file:///w.wasm', phase: AUTHN}}\n---\nkind: Service\n",
        bootstrap(filters, ROUTE)
    );
    let i = import(&text);
    assert_eq!(i.config["routes"][0]["plugins"], yaml("[a, w]"));
    assert_eq!(i.config["plugins"][1]["module"], yaml("/w.wasm"));
    assert_eq!(keys(&i), ["documents[2]"]);
    let config = Config::from_yaml_str(&i.to_yaml(), Path::new("x"), Path::new("/"))
        .unwrap_or_else(|e| panic!("{e}"));
    // The AUTHN plugin runs first.
    assert_eq!(config.routes[0].plugins, ["w", "a"]);
}

#[test]
fn text_without_a_bootstrap_or_wasmplugin_is_refused() {
    assert!(matches!(
        import_envoy("kind: Service\n"),
        Err(ImportError::Nothing)
    ));
    assert!(matches!(import_envoy("a: [b"), Err(ImportError::Syntax(_))));
}
