//! Module sources through the real gateway: a module fetched over HTTPS from a server with
//! a self-signed certificate (trusted through `server.module_ca_file`) and checked against
//! its sha256, refused on a wrong digest, served from the module cache once the server is
//! gone; modules pushed with `wasmbridge push` (and with a hand-made Istio-style image) to a
//! real registry (Debian's `docker-registry`) and loaded from `oci://` references.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use wasmbridge_e2e::{
    Gateway, Proto, Upstream, filter, free_port, get, render, scratch, send, wasmbridge,
};

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn add_header() -> (PathBuf, Vec<u8>) {
    let path = PathBuf::from(filter("add_header"));
    let bytes = std::fs::read(&path).expect("read add_header.wasm");
    (path, bytes)
}

// ---- HTTPS -------------------------------------------------------------------------------

/// An HTTPS server on loopback with a fresh self-signed certificate for 127.0.0.1, serving
/// one file; it counts the requests it answers.
struct HttpsServer {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HttpsServer {
    async fn start(path: &'static str, body: Vec<u8>) -> Result<HttpsServer> {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&requests);
        let body = Bytes::from(body);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, body) = (acceptor.clone(), seen.clone(), body.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        let found = req.uri().path() == path;
                        let body = body.clone();
                        async move {
                            let (status, body) = if found {
                                (200, body)
                            } else {
                                (404, Bytes::from_static(b"not found\n"))
                            };
                            Response::builder().status(status).body(Full::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(HttpsServer {
            addr,
            ca_pem: cert.pem(),
            requests,
            task,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// Stops accepting connections (the listener is closed when this returns).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn https_yaml(cache: &Path, ca: &Path, url: &str, sha256: &str) -> String {
    format!(
        r#"
server: {{threads: 1, module_cache: "{}", module_ca_file: "{}"}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: remote
    root_id: add_header
    module: {url}
    sha256: {sha256}
    configuration: {{headers: {{x-hello: from-https}}}}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [remote]
"#,
        cache.display(),
        ca.display(),
    )
}

async fn serves(gw: &Gateway, header: &str, value: &str) -> Result<()> {
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    ensure!(reply.status == 200, "{}: {}", reply.status, gw.log_text());
    ensure!(
        reply.header(header) == value,
        "{header}: {:?}\n{}",
        reply.headers,
        gw.log_text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_module_is_checked_cached_and_served_from_the_cache() -> Result<()> {
    let (_, module) = add_header();
    let digest = hex(&module);
    let server = HttpsServer::start("/filters/add_header.wasm", module).await?;
    let upstream = Upstream::start().await;
    let dir = scratch("modules-https");
    let (cache, ca) = (dir.join("cache"), dir.join("ca.pem"));
    std::fs::write(&ca, &server.ca_pem)?;
    let yaml = https_yaml(
        &cache,
        &ca,
        &server.url("/filters/add_header.wasm"),
        &digest,
    );

    // Fetched, checked, cached, and the plugin serves.
    let gw = Gateway::start("modules-https-1", &yaml, Some(upstream.addr)).await?;
    serves(&gw, "x-hello", "from-https").await?;
    let log = gw.log_text();
    assert!(log.contains("module fetched"), "{log}");
    assert!(log.contains("cached=false"), "{log}");
    drop(gw);
    let cached = cache.join(format!("sha256/{digest}.wasm"));
    assert!(cached.is_file(), "{} missing", cached.display());
    let asked = server.requests.load(Ordering::SeqCst);
    assert_eq!(asked, 1);

    // With the server gone, the next start takes the module from the cache.
    server.stop().await;
    let gw = Gateway::start("modules-https-2", &yaml, Some(upstream.addr)).await?;
    serves(&gw, "x-hello", "from-https").await?;
    let log = gw.log_text();
    assert!(log.contains("cached=true"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_module_with_the_wrong_sha256_is_refused_and_not_cached() -> Result<()> {
    let (_, module) = add_header();
    let actual = hex(&module);
    let wrong = hex(b"some other module");
    let server = HttpsServer::start("/add_header.wasm", module).await?;
    let dir = scratch("modules-https-wrong");
    let (cache, ca) = (dir.join("cache"), dir.join("ca.pem"));
    std::fs::write(&ca, &server.ca_pem)?;
    let url = server.url("/add_header.wasm");
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        render(
            &https_yaml(&cache, &ca, &url, &wrong),
            "127.0.0.1:0".parse()?,
            "127.0.0.1:1".parse()?,
            None,
        ),
    )?;
    let out = wasmbridge(&["check", &file.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("plugins[0].sha256 (plugin `remote`)"),
        "{stderr}"
    );
    assert!(stderr.contains(&url), "{stderr}");
    assert!(
        stderr.contains(&format!("expected {wrong}, got {actual}")),
        "{stderr}"
    );
    assert!(!cache.join(format!("sha256/{actual}.wasm")).exists());
    assert!(!cache.join(format!("sha256/{wrong}.wasm")).exists());

    // Without the CA the certificate is refused at once (no retries), saying how to trust it.
    let text = std::fs::read_to_string(&file)?
        .replace(&format!(", module_ca_file: \"{}\"", ca.display()), "");
    std::fs::write(&file, text)?;
    let out = wasmbridge(&["check", &file.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("plugins[0].module (plugin `remote`)"),
        "{stderr}"
    );
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("module_ca_file"), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");

    // `wasmbridge pull` refuses it the same way, and takes it with the right digest.
    let pull = |sha256: &str| {
        wasmbridge(&[
            "pull",
            &url,
            "--sha256",
            sha256,
            "--cache-dir",
            &cache.display().to_string(),
            "--ca-file",
            &ca.display().to_string(),
        ])
    };
    let out = pull(&wrong);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256 mismatch"));
    let out = pull(&actual);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("digest: {actual}")), "{stdout}");
    assert!(cache.join(format!("sha256/{actual}.wasm")).is_file());
    Ok(())
}

// ---- OCI ---------------------------------------------------------------------------------

/// Debian's `docker-registry` (the CNCF distribution registry), on a loopback port with
/// its storage in a scratch directory; killed on drop.
struct Registry {
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    async fn start(name: &str) -> Result<Registry> {
        let bin = std::env::var_os("DOCKER_REGISTRY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
        if !bin.is_file() {
            bail!(
                "{} is missing: run `make test`, which installs Debian's docker-registry \
                 package (or set DOCKER_REGISTRY_BIN)",
                bin.display()
            );
        }
        let dir = scratch(name);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: \"{}\"}}\n  delete: {{enabled: true}}\nhttp: {{addr: \"{addr}\"}}\n",
                dir.join("storage").display()
            ),
        )?;
        let log = dir.join("registry.log");
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("registry.out"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut registry = Registry { addr, child, log };
        registry.wait_ready().await?;
        Ok(registry)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited with {status}:\n{}", self.log_text());
            }
            if let Ok(reply) = send(
                self.addr,
                Proto::H1,
                self.request("GET", "/v2/", "", Vec::new()),
            )
            .await
                && reply.status == 200
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "docker-registry did not answer GET /v2/ in time:\n{}",
                self.log_text()
            );
            // Polling the API root for readiness, not waiting for a result.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn reference(&self, repository_and_tag: &str) -> String {
        format!("oci://{}/{repository_and_tag}", self.addr)
    }

    fn request(
        &self,
        method: &str,
        target: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(target)
            .header("host", self.addr.to_string());
        if !content_type.is_empty() {
            b = b.header("content-type", content_type);
        }
        b.body(Full::new(Bytes::from(body))).expect("request")
    }

    /// Uploads a blob by hand (POST, then PUT with the digest), as another client would.
    async fn put_blob(&self, repository: &str, blob: &[u8]) -> Result<String> {
        let digest = format!("sha256:{}", hex(blob));
        let reply = send(
            self.addr,
            Proto::H1,
            self.request(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/"),
                "",
                Vec::new(),
            ),
        )
        .await?;
        ensure!(reply.status == 202, "POST upload: {}", reply.status);
        let location = reply.header("location").to_string();
        let target = location
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or(&location);
        let separator = if target.contains('?') { '&' } else { '?' };
        let reply = send(
            self.addr,
            Proto::H1,
            self.request(
                "PUT",
                &format!("{target}{separator}digest={digest}"),
                "application/octet-stream",
                blob.to_vec(),
            ),
        )
        .await?;
        ensure!(
            reply.status == 201,
            "PUT blob: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(digest)
    }

    /// Pushes Istio's standard image format the way `docker build` of a
    /// `FROM scratch / ADD plugin.wasm` would: a Docker v2 manifest whose one layer is a
    /// gzipped tar (made by the system's `tar`) holding `plugin.wasm`.
    async fn push_docker_image(&self, repository: &str, tag: &str, module: &[u8]) -> Result<()> {
        let dir = scratch("modules-layer");
        std::fs::write(dir.join("plugin.wasm"), module)?;
        let status = Command::new("tar")
            .args(["-cf", "layer.tar", "plugin.wasm"])
            .current_dir(&dir)
            .status()?;
        ensure!(status.success(), "tar failed");
        let tar = std::fs::read(dir.join("layer.tar"))?;
        let status = Command::new("gzip")
            .args(["-n", "layer.tar"])
            .current_dir(&dir)
            .status()?;
        ensure!(status.success(), "gzip failed");
        let layer = std::fs::read(dir.join("layer.tar.gz"))?;
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip1",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", hex(&tar))]},
        })
        .to_string()
        .into_bytes();
        let config_digest = self.put_blob(repository, &config).await?;
        let layer_digest = self.put_blob(repository, &layer).await?;
        let media_type = "application/vnd.docker.distribution.manifest.v2+json";
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        })
        .to_string()
        .into_bytes();
        let reply = send(
            self.addr,
            Proto::H1,
            self.request(
                "PUT",
                &format!("/v2/{repository}/manifests/{tag}"),
                media_type,
                manifest,
            ),
        )
        .await?;
        ensure!(
            reply.status == 201,
            "PUT manifest: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(())
    }
}

/// `wasmbridge push`, returning the manifest digest it printed.
fn push(args: &[&str]) -> Result<String> {
    let mut all = vec!["push"];
    all.extend_from_slice(args);
    let out = wasmbridge(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "push {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("manifest: "))
        .map(str::to_string)
        .with_context(|| format!("no manifest digest in {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_pushed_to_a_real_registry_load_from_oci_references() -> Result<()> {
    let registry = Registry::start("modules-registry").await?;
    let (path, module) = add_header();
    let digest = hex(&module);
    let wasm = path.display().to_string();

    // The Wasm OCI artifact, pushed by `wasmbridge push`.
    let artifact = registry.reference("filters/add_header:v1");
    let manifest = push(&[&wasm, &artifact])?;
    assert!(manifest.starts_with("sha256:"), "{manifest}");
    // Istio's standard image, pushed by `wasmbridge push --format image`...
    push(&[
        "--format",
        "image",
        &wasm,
        &registry.reference("filters/add_header:image"),
    ])?;
    // ... and as another tool would build it (Docker media types, the system's tar).
    registry
        .push_docker_image("istio/add_header", "1.0", &module)
        .await?;

    let dir = scratch("modules-oci");
    let cache = dir.join("cache");
    let by_digest = registry.reference(&format!("filters/add_header@{manifest}"));
    let yaml = format!(
        r#"
server: {{threads: 1, module_cache: "{cache}"}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: artifact
    root_id: add_header
    vm_id: a
    module: {artifact}
    sha256: {digest}
    configuration: {{headers: {{x-artifact: "1"}}}}
  - name: image
    root_id: add_header
    vm_id: b
    module: {image}
    configuration: {{headers: {{x-image: "1"}}}}
  - name: docker
    root_id: add_header
    vm_id: c
    module: {docker}
    configuration: {{headers: {{x-docker: "1"}}}}
  - name: by_digest
    root_id: add_header
    vm_id: d
    module: {by_digest}
    configuration: {{headers: {{x-by-digest: "1"}}}}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [artifact, image, docker, by_digest]
"#,
        cache = cache.display(),
        image = registry.reference("filters/add_header:image"),
        docker = registry.reference("istio/add_header:1.0"),
    );
    let upstream = Upstream::start().await;
    let gw = Gateway::start("modules-oci", &yaml, Some(upstream.addr)).await?;
    for header in ["x-artifact", "x-image", "x-docker", "x-by-digest"] {
        serves(&gw, header, "1").await?;
    }
    assert!(cache.join(format!("sha256/{digest}.wasm")).is_file());
    drop(gw);

    // `wasmbridge pull` gives the module's digest and a copy.
    let copy = dir.join("copy.wasm");
    let out = wasmbridge(&[
        "pull",
        &registry.reference("istio/add_header:1.0"),
        "--cache-dir",
        &cache.display().to_string(),
        "-o",
        &copy.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("digest: {digest}")), "{stdout}");
    assert_eq!(std::fs::read(&copy)?, module);

    // A missing tag, and a wrong digest, are refused naming plugin, key and reference.
    let check = |module: &str, sha256: Option<&str>| -> Result<String> {
        let file = dir.join("check.yaml");
        let sha256 = sha256.map_or(String::new(), |s| format!("\n    sha256: {s}"));
        std::fs::write(
            &file,
            format!(
                "server: {{threads: 1, module_cache: \"{}\"}}\nlisteners: [{{address: 127.0.0.1:0}}]\nplugins:\n  - name: p\n    root_id: add_header\n    module: {module}{sha256}\nroutes:\n  - match: {{prefix: /}}\n    direct_response: {{status: 200}}\n    plugins: [p]\n",
                cache.display()
            ),
        )?;
        let out = wasmbridge(&["check", &file.display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(
            out.status.code() == Some(2),
            "exit {:?}: {stderr}",
            out.status
        );
        Ok(stderr)
    };
    let missing = registry.reference("filters/add_header:missing");
    let stderr = check(&missing, None)?;
    assert!(
        stderr.contains("plugins[0].module (plugin `p`)"),
        "{stderr}"
    );
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(
        stderr.contains("not found: the registry has no manifest `missing`"),
        "{stderr}"
    );
    let wrong = hex(b"another module");
    let stderr = check(&artifact, Some(&wrong))?;
    assert!(
        stderr.contains("plugins[0].sha256 (plugin `p`)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("expected {wrong}, got {digest}")),
        "{stderr}"
    );

    // With the registry gone: a reference by digest comes from the cache without asking,
    // a tag falls back to the module it gave last, with a warning.
    drop(registry);
    let pull = |reference: &str| {
        wasmbridge(&[
            "pull",
            reference,
            "--cache-dir",
            &cache.display().to_string(),
        ])
    };
    let out = pull(&by_digest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
    assert!(!stderr.contains("retrying"), "{stderr}");
    let out = pull(&artifact);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
    assert!(
        stderr.contains("the registry cannot be reached"),
        "{stderr}"
    );
    Ok(())
}
