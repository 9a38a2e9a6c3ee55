//! Module sources as written: paths, `file://`, `https://` with its required `sha256`,
//! `oci://` references; parsing stays offline. Fetching is shown end to end in
//! `tests/e2e/tests/modules.rs`.

use std::path::{Path, PathBuf};

use wasmbridge_config::{Config, ConfigError, Digest, ModuleSource, build};

const HEX: &str = "3b1f4f5e8bb2f3b0c1a2d3e4f5061728394a5b6c7d8e9f00112233445566778f";

fn yaml(plugin: &str) -> String {
    format!(
        "listeners: [{{address: 127.0.0.1:0}}]\nplugins:\n  - name: p\n{plugin}\nroutes:\n  - match: {{prefix: /}}\n    direct_response: {{status: 200}}\n    plugins: [p]\n"
    )
}

fn parse(plugin: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_str(&yaml(plugin), Path::new("gw.yaml"), Path::new("/etc/gw"))
}

fn source(plugin: &str) -> ModuleSource {
    match parse(plugin) {
        Ok(config) => config.plugins[0].source.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn reject(plugin: &str) -> ConfigError {
    match parse(plugin) {
        Ok(_) => panic!("accepted:\n{plugin}"),
        Err(e) => e,
    }
}

fn digest() -> Digest {
    HEX.parse().expect("digest")
}

#[test]
fn a_path_is_a_local_file_with_an_optional_digest() {
    assert_eq!(
        source("    module: f/a.wasm"),
        ModuleSource::File {
            path: PathBuf::from("/etc/gw/f/a.wasm"),
            sha256: None
        }
    );
    let config = parse(&format!("    module: a.wasm\n    sha256: {HEX}")).expect("config");
    assert_eq!(config.plugins[0].module, Path::new("/etc/gw/a.wasm"));
    assert_eq!(
        config.plugins[0].source,
        ModuleSource::File {
            path: PathBuf::from("/etc/gw/a.wasm"),
            sha256: Some(digest())
        }
    );
    assert!(!config.plugins[0].source.is_remote());
}

#[test]
fn file_urls_take_absolute_paths() {
    assert_eq!(
        source("    module: file:///opt/filters/a.wasm"),
        ModuleSource::File {
            path: PathBuf::from("/opt/filters/a.wasm"),
            sha256: None
        }
    );
    let err = reject("    module: file://a.wasm");
    assert_eq!(err.key_path(), "plugins[0].module");
    assert!(err.message().contains("absolute path"), "{err}");
}

#[test]
fn https_needs_a_sha256() {
    let url = "https://example.com/filters/add_header.wasm";
    let config = parse(&format!("    module: {url}\n    sha256: {HEX}")).expect("config");
    assert_eq!(
        config.plugins[0].source,
        ModuleSource::Https {
            url: url.into(),
            sha256: digest()
        }
    );
    assert_eq!(config.plugins[0].module, Path::new(url));
    assert!(config.plugins[0].source.is_remote());

    let err = reject(&format!("    module: {url}"));
    assert_eq!(err.key_path(), "plugins[0].sha256");
    assert!(
        err.to_string()
            .starts_with("gw.yaml: plugins[0].sha256: is required for a module fetched over HTTP"),
        "{err}"
    );
}

#[test]
fn a_sha256_is_64_lowercase_hex_digits() {
    for bad in [
        "abc",
        &HEX.to_uppercase(),
        &format!("sha256:{HEX}"),
        &HEX[2..],
    ] {
        let err = reject(&format!(
            "    module: https://example.com/a.wasm\n    sha256: \"{bad}\""
        ));
        assert_eq!(err.key_path(), "plugins[0].sha256", "{bad}");
        assert!(err.message().contains("64 lowercase hex digits"), "{err}");
    }
}

#[test]
fn cleartext_http_only_for_loopback() {
    let err = reject(&format!(
        "    module: http://example.com/a.wasm\n    sha256: {HEX}"
    ));
    assert_eq!(err.key_path(), "plugins[0].module");
    assert!(err.message().contains("only for loopback"), "{err}");
    for ok in [
        "http://127.0.0.1:8000/a.wasm",
        "http://localhost/a.wasm",
        "http://[::1]:1/a",
    ] {
        assert!(
            matches!(
                source(&format!("    module: {ok}\n    sha256: {HEX}")),
                ModuleSource::Https { .. }
            ),
            "{ok}"
        );
    }
}

#[test]
fn oci_references() {
    let ModuleSource::Oci { reference, sha256 } =
        source("    module: oci://127.0.0.1:5000/filters/add_header:v1")
    else {
        panic!("not oci");
    };
    assert_eq!(reference.registry, "127.0.0.1:5000");
    assert_eq!(reference.repository, "filters/add_header");
    assert_eq!(reference.tag.as_deref(), Some("v1"));
    assert_eq!(sha256, None);

    let ModuleSource::Oci { reference, sha256 } = source(&format!(
        "    module: oci://ghcr.io/acme/f@sha256:{HEX}\n    sha256: {HEX}"
    )) else {
        panic!("not oci");
    };
    assert_eq!(reference.digest, Some(digest()));
    assert_eq!(sha256, Some(digest()));

    let err = reject("    module: oci://registry-without-repository");
    assert_eq!(err.key_path(), "plugins[0].module");
    assert!(err.message().contains("invalid OCI reference"), "{err}");
}

#[test]
fn other_schemes_are_refused() {
    let err = reject("    module: ftp://example.com/a.wasm");
    assert_eq!(err.key_path(), "plugins[0].module");
    assert!(
        err.message().contains("unsupported scheme `ftp://`"),
        "{err}"
    );
}

#[test]
fn module_cache_and_ca_file_resolve_against_the_file() {
    let text = yaml("    module: a.wasm").replace(
        "listeners:",
        "server: {module_cache: cache/modules, module_ca_file: /etc/ca.pem}\nlisteners:",
    );
    let config =
        Config::from_yaml_str(&text, Path::new("gw.yaml"), Path::new("/etc/gw")).expect("config");
    assert_eq!(
        config.server.module_cache.as_deref(),
        Some(Path::new("/etc/gw/cache/modules"))
    );
    assert_eq!(
        config.server.module_ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    let options = build::fetch_options(&config);
    assert_eq!(options.cache_dir, Path::new("/etc/gw/cache/modules"));
    assert_eq!(options.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
}

#[test]
fn a_local_file_with_the_wrong_digest_is_refused_when_built() {
    let dir =
        std::env::temp_dir().join(format!("wasmbridge-config-sources-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // An empty module: the digest is checked before anything is compiled.
    std::fs::write(dir.join("a.wasm"), b"\0asm\x01\0\0\0").expect("write");
    let config = Config::from_yaml_str(
        &yaml(&format!("    module: a.wasm\n    sha256: {HEX}")),
        Path::new("gw.yaml"),
        &dir,
    )
    .expect("config");
    let (runtime, _, _) = build::runtime(&config).expect("runtime");
    let err = build::load_plugins(&config, &runtime, None, 1, |_| {
        wasmbridge_host::Callouts::default()
    })
    .expect_err("wrong digest");
    assert!(err.is_hash_mismatch(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("gw.yaml: plugins[0].sha256 (plugin `p`): "),
        "{text}"
    );
    assert!(text.contains(&format!("expected {HEX}")), "{text}");
    assert!(
        text.contains(&Digest::of(b"\0asm\x01\0\0\0").hex()),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
