//! `wasmbridge import-envoy`: example Envoy bootstraps and Istio `WasmPlugin`s (in
//! `tests/e2e/data/envoy/`) become configurations that `wasmbridge check` accepts, what
//! cannot be carried over is named on stderr, and `envoy-config` followed by
//! `import-envoy` keeps a configuration's plugins and routes.

use std::path::{Path, PathBuf};

use wasmbridge_config::{Config, PluginConfig, RouteConfig};
use wasmbridge_e2e::{
    Gateway, Proto, Upstream, filters_dir, get, repo_root, scratch, send, wasmbridge,
};

/// An example file with `{filters}` and `{upstream_port}` filled in, in a scratch
/// directory.
fn example(name: &str, upstream_port: u16) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(repo_root().join("tests/e2e/data/envoy").join(name))
        .expect("example");
    let dir = scratch(&format!("import-{}", name.trim_end_matches(".yaml")));
    let file = dir.join(name);
    std::fs::write(
        &file,
        text.replace("{filters}", &filters_dir().display().to_string())
            .replace("{upstream_port}", &upstream_port.to_string()),
    )
    .expect("write");
    (dir, file)
}

struct Imported {
    code: Option<i32>,
    yaml: String,
    stderr: String,
}

fn import(file: &Path, out: &Path) -> Imported {
    let run = wasmbridge(&[
        "import-envoy",
        &file.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    Imported {
        code: run.status.code(),
        yaml: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
    }
}

fn check(file: &Path) {
    let out = wasmbridge(&["check", &file.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_with_wasm_and_lua_filters_imports_and_serves() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let (dir, file) = example("bootstrap.yaml", upstream.addr.port());
    let out = dir.join("gateway.yaml");
    let imported = import(&file, &out);
    assert_eq!(imported.code, Some(0), "{}", imported.stderr);
    let lines: Vec<&str> = imported.stderr.lines().collect();
    let base = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    for expected in [
        format!("{base}.http_filters[1] (envoy.filters.http.lua): not a wasm filter"),
        format!(
            "{base}.route_config.virtual_hosts[1].routes[0].route.prefix_rewrite: no wasmbridge equivalent"
        ),
        format!("{base}.stat_prefix"),
    ] {
        let found = lines.iter().any(|l| l.contains(&expected));
        if expected.ends_with("stat_prefix") {
            assert!(!found, "stat_prefix needs no report: {}", imported.stderr);
        } else {
            assert!(found, "missing {expected:?} in:\n{}", imported.stderr);
        }
    }
    check(&out);

    let config = Config::from_file(&out)?;
    let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["add_header", "deny"]);
    let deny = config.plugin("deny").expect("deny");
    assert_eq!(deny.configuration, br#"{"header": "x-api-key"}"#);
    assert_eq!(
        deny.failure_policy,
        wasmbridge_config::FailurePolicy::FailOpen
    );
    let add = config.plugin("add_header").expect("add_header");
    assert_eq!(add.vm_id, "headers");
    assert_eq!(
        add.environment_variables.key_values,
        [("MODE".to_string(), "edge".to_string())]
    );
    let route = |name: &str| {
        config
            .routes
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no route {name}"))
    };
    assert_eq!(
        route("versioned").hosts,
        ["api.example.com", "*.api.example.com"]
    );
    assert_eq!(route("versioned").plugins, ["add_header", "deny"]);
    // typed_per_filter_config turned `deny` off on this route.
    assert_eq!(route("health").plugins, ["add_header"]);
    assert_eq!(
        config
            .cluster("backend")
            .map(|c| c.connect_timeout.as_millis()),
        Some(250)
    );

    // The imported file serves: the health route answers without the key, the API needs it.
    let text = std::fs::read_to_string(&out)?;
    let gw = Gateway::start(
        "import-serve",
        &text
            .replace("0.0.0.0:10000", "{listen}")
            .replace("127.0.0.1:9901", "{admin}"),
        Some(upstream.addr),
    )
    .await?;
    let port = gw.addr.port();
    let api = |path: &str| format!("http://api.example.com:{port}{path}");
    let host = format!("api.example.com:{port}");
    let health = send(
        gw.addr,
        Proto::H1,
        get(&api("/healthz"), &[("host", &host)]),
    )
    .await?;
    assert_eq!(health.status, 200, "{}", gw.log_text());
    assert_eq!(health.header("x-imported"), "yes");
    let denied = send(
        gw.addr,
        Proto::H1,
        get(&api("/v1/items"), &[("host", &host), ("x-tenant", "t-1")]),
    )
    .await?;
    assert_eq!(denied.status, 403);
    let allowed = send(
        gw.addr,
        Proto::H1,
        get(
            &api("/v1/items"),
            &[("host", &host), ("x-tenant", "t-1"), ("x-api-key", "k")],
        ),
    )
    .await?;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("x-upstream"), "echo");
    Ok(())
}

#[test]
fn istio_wasmplugins_import_with_a_default_listener_and_route() {
    let (dir, file) = example("wasmplugin.yaml", 0);
    let out = dir.join("gateway.yaml");
    let imported = import(&file, &out);
    assert_eq!(imported.code, Some(0), "{}", imported.stderr);
    for expected in [
        "documents[0].spec.selector: no workloads to select",
        "documents[0].spec.imagePullPolicy: ",
        "documents[1].spec.match: traffic selectors",
        "listeners: no listener was imported: added 0.0.0.0:8080",
        "routes: no route was imported: added `/` to the placeholder cluster `upstream`",
    ] {
        assert!(
            imported.stderr.contains(expected),
            "missing {expected:?} in:\n{}",
            imported.stderr
        );
    }
    check(&out);
    let config = Config::from_file(&out).expect("config");
    // AUTHN runs before STATS, whatever the document order.
    assert_eq!(config.routes[0].plugins, ["api-key", "stamp"]);
    let stamp = config.plugin("stamp").expect("stamp");
    assert_eq!(stamp.root_id, "add_header");
    assert_eq!(stamp.configuration, br#"{"headers":{"x-stamp":"istio"}}"#);
    assert_eq!(stamp.priority, 10);
    assert_eq!(stamp.environment_variables.host_env_keys, ["POD_NAME"]);
    assert_eq!(
        stamp.environment_variables.key_values,
        [("TIER".to_string(), "edge".to_string())]
    );
    assert_eq!(
        stamp.failure_policy,
        wasmbridge_config::FailurePolicy::FailOpen
    );
}

#[test]
fn remote_code_becomes_a_module_url_with_its_sha256() {
    let (dir, file) = example("remote.yaml", 0);
    let imported = import(&file, &dir.join("gateway.yaml"));
    // `module: https://...` with `sha256` is read by the module sources of issue 8; the
    // shape is what this test pins, whatever that branch's check says.
    assert!(
        imported
            .yaml
            .contains("module: https://filters.example.com/add_header.wasm\n"),
        "{}",
        imported.yaml
    );
    assert!(
        imported
            .yaml
            .contains("sha256: 5f2bd1c2b6cfc2e3d4f2b0cbd6f9c6ea3c2b4f6f1d0e8a7b6c5d4e3f2a1b0c9d\n"),
        "{}",
        imported.yaml
    );
    assert!(imported.code.is_some(), "{}", imported.stderr);
}

/// What must survive `envoy-config` then `import-envoy`.
fn essentials(config: &Config) -> (Vec<String>, Vec<String>) {
    let plugin = |p: &PluginConfig| {
        format!(
            "{} module={} root_id={} vm_id={} configuration={} vm_configuration={} policy={}",
            p.name,
            p.module.display(),
            p.root_id,
            p.vm_id,
            String::from_utf8_lossy(&p.configuration),
            String::from_utf8_lossy(&p.vm_configuration),
            p.failure_policy
        )
    };
    let route = |r: &RouteConfig| {
        format!(
            "{} {:?} hosts={:?} headers={:?} {:?} plugins={:?}",
            r.name, r.matcher, r.hosts, r.headers, r.action, r.plugins
        )
    };
    let mut plugins: Vec<String> = config.plugins.iter().map(plugin).collect();
    plugins.sort();
    (plugins, config.routes.iter().map(route).collect())
}

const MANY: &str = r#"
listeners: [{address: 127.0.0.1:18080}, {address: 127.0.0.1:18081, http2: false}]
admin: {address: 127.0.0.1:19901}
clusters:
  - {name: backend, endpoints: ["127.0.0.1:9000", "localhost:9001"], connect_timeout_ms: 300}
  - {name: grpc, endpoints: ["127.0.0.1:9002"], http2: true, lb_policy: random, read_timeout_ms: 5000}
  - name: sticky
    endpoints: ["127.0.0.1:9003", "127.0.0.1:9004"]
    lb_policy: consistent_hash
    hash_on: {header: x-user}
    retries: 2
    total_timeout_ms: 1500
    health_check: {path: /healthz, interval_ms: 2000, timeout_ms: 500, healthy_threshold: 2, unhealthy_threshold: 3}
plugins:
  - name: add_header
    root_id: add_header
    vm_id: shared
    module: "{filters}/add_header.wasm"
    configuration: {headers: {x-base: "1"}}
    vm_configuration: vm text
    environment_variables: {key_values: {A: b}}
  - {name: deny, module: "{filters}/deny.wasm", root_id: deny, failure_policy: fail_open, phase: AUTHN}
  - {name: stats, module: "{filters}/add_header.wasm", phase: STATS, failure_policy: fail_reload}
routes:
  - name: api
    match:
      regex: "/api/v[0-9]+/.*"
      hosts: ["api.example.com"]
      headers:
        - {name: x-tenant, regex: "t-[a-z]+"}
        - {name: x-debug, present: false}
        - {name: x-env, suffix: -prod, invert: true}
    cluster: backend
    plugins: [add_header, deny]
  - name: site
    match: {prefix: /, hosts: ["*.example.com"], headers: [{name: host, contains: shop}]}
    direct_response: {status: 200, body: "shop\n", headers: {x-site: shop}}
    plugins: [{name: add_header, configuration: {headers: {x-site-header: "1"}}}, stats]
  - name: grpc
    match: {path: /grpc.Health/Check}
    cluster: grpc
  - name: sticky
    match: {prefix: /sticky}
    cluster: sticky
  - name: rest
    match: {prefix: /}
    cluster: backend
    plugins: [stats, deny]
"#;

#[test]
fn envoy_config_then_import_envoy_keeps_plugins_and_routes() {
    let gateway = std::fs::read_to_string(repo_root().join("conf/gateway.yaml"))
        .expect("gateway.yaml")
        .replace(
            "../filters/target/wasm32-wasip1/release",
            &filters_dir().display().to_string(),
        );
    let many = MANY.replace("{filters}", &filters_dir().display().to_string());
    for (name, text) in [("gateway", gateway.as_str()), ("many", many.as_str())] {
        let dir = scratch(&format!("roundtrip-{name}"));
        let original = dir.join("original.yaml");
        std::fs::write(&original, text).expect("write");
        let envoy = wasmbridge(&["envoy-config", &original.display().to_string()]);
        assert!(
            envoy.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&envoy.stderr)
        );
        let bootstrap = dir.join("envoy.yaml");
        std::fs::write(&bootstrap, &envoy.stdout).expect("write");
        let back = dir.join("imported.yaml");
        let imported = import(&bootstrap, &back);
        assert_eq!(imported.code, Some(0), "{name}: {}", imported.stderr);
        assert_eq!(
            imported.stderr, "",
            "{name}: nothing of envoy-config's output is lost"
        );
        check(&back);
        let before = Config::from_file(&original).expect("original");
        let after = Config::from_file(&back).expect("imported");
        assert_eq!(essentials(&after), essentials(&before), "{name}");
        assert_eq!(after.listeners, before.listeners, "{name}");
        assert_eq!(after.admin, before.admin, "{name}");
        assert_eq!(after.clusters, before.clusters, "{name}");
    }
}

#[test]
fn the_example_bootstraps_are_valid_envoy_configurations() {
    let Some(envoy) = wasmbridge_e2e::envoy_or_skip("the_example_bootstraps_are_valid") else {
        return;
    };
    for name in ["bootstrap.yaml", "remote.yaml"] {
        let (_dir, file) = example(name, 9000);
        let out = std::process::Command::new(&envoy)
            .args(["--mode", "validate", "--log-level", "error", "-c"])
            .arg(&file)
            .output()
            .expect("run envoy --mode validate");
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
