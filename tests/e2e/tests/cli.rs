//! The `wasmbridge` command line: `check`, `--version`, and the example configuration.

use std::net::SocketAddr;

use wasmbridge_e2e::{
    Gateway, Proto, filter, filters_dir, free_port, get, repo_root, scratch, send, wasmbridge,
};

#[test]
fn version_prints_the_package_version() {
    let out = wasmbridge(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_reports_each_plugin() {
    let dir = scratch("check-ok");
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        format!(
            "listeners: [{{address: 127.0.0.1:0}}]\nplugins:\n  - name: deny\n    module: {}\nroutes:\n  - match: {{prefix: /}}\n    direct_response: {{status: 200}}\n    plugins: [deny]\n",
            filter("deny")
        ),
    )
    .expect("write");
    let out = wasmbridge(&["check", &file.display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plugin deny"), "{stdout}");
    assert!(stdout.contains("abi: 0.2.1"), "{stdout}");
    assert!(stdout.contains("entry: _initialize"), "{stdout}");
    assert!(stdout.contains("unknown imports: none"), "{stdout}");
}

#[test]
fn check_on_a_malformed_config_exits_2_and_names_the_key_path() {
    let dir = scratch("check-bad");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "listeners: [{address: 127.0.0.1:0}]\nplugins:\n  - name: p\n    module: x.wasm\n    failure_policy: sometimes\nroutes:\n  - match: {prefix: /}\n    direct_response: {status: 200}\n",
    )
    .expect("write");
    let out = wasmbridge(&["check", &file.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("plugins[0].failure_policy"), "{stderr}");
    assert!(stderr.contains("bad.yaml"), "{stderr}");
}

#[test]
fn a_file_that_is_not_wasm_is_refused_with_plugin_and_file() {
    let dir = scratch("not-wasm");
    let module = dir.join("notes.wasm");
    std::fs::write(&module, "this is not wasm").expect("write");
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        "listeners: [{address: 127.0.0.1:0}]\nplugins:\n  - name: imposter\n    module: notes.wasm\nroutes:\n  - match: {prefix: /}\n    direct_response: {status: 200}\n    plugins: [imposter]\n",
    )
    .expect("write");
    for args in [
        vec!["check", file.to_str().unwrap_or_default()],
        vec!["run", "-c", file.to_str().unwrap_or_default()],
    ] {
        let out = wasmbridge(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("plugin `imposter`"), "{stderr}");
        assert!(stderr.contains("notes.wasm"), "{stderr}");
        assert!(stderr.contains("not a WebAssembly module"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_answers_with_x_hello() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(repo_root().join("conf/gateway.yaml"))?;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    assert!(text.contains("0.0.0.0:8080") && text.contains("127.0.0.1:9901"));
    let text = text
        .replace("0.0.0.0:8080", &listen.to_string())
        .replace("127.0.0.1:9901", &admin.to_string())
        .replace(
            "../filters/target/wasm32-wasip1/release",
            &filters_dir().display().to_string(),
        );
    let dir = scratch("example");
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, text)?;
    let gw = Gateway::spawn(&file, listen, admin, &dir).await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-hello"), "wasmbridge");
    assert_eq!(&reply.body[..], b"hello from wasmbridge\n");
    Ok(())
}
